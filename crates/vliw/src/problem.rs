//! The tree-traversal problem: parameters, inputs, the memory image and the CPU oracle.
//!
//! A perfect binary tree of height `h` has `n = 2^(h+1) - 1` nodes, each holding a value. A
//! batch of `b` walkers starts at the root (index 0) with values; for `rounds` rounds every
//! walker does
//!
//! ```text
//! value = hash(value ^ tree[index])
//! index = 2 * index + (1 if value is even else 2)
//! if index >= n: index = 0
//! ```
//!
//! where `hash` applies its stages in order, each `a = (a op1 c) op2 (a op3 k)` with `op1`,
//! `op2` in {+, ^}, `op3` in {<<, >>}, all modulo 2^32. The answer is the final values.
//!
//! The memory image is laid out as the original take-home lays it out, quirks kept so that
//! programs for the original run unchanged: a 7-word header (`rounds, n, b, h, tree_ptr,
//! indices_ptr, values_ptr`), then the tree from word 7, the indices, the values, and nothing
//! after them (the original's header names an eighth word, "extra room", that its own layout
//! overwrites with the tree's first value and whose room it then truncates away).

use rdbench_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// The first binary operation of a hash stage, or its combining one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    #[serde(rename = "+")]
    Add,
    #[serde(rename = "^")]
    Xor,
}

/// The shift of a hash stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shift {
    #[serde(rename = "<<")]
    Left,
    #[serde(rename = ">>")]
    Right,
}

/// One stage of the hash: `a = (a op1 constant) op2 (a op3 shift)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashStage {
    pub op1: Combine,
    pub constant: u32,
    pub op2: Combine,
    pub op3: Shift,
    /// Shift amount, 1..=31.
    pub shift: u32,
}

impl Combine {
    /// The machine's ALU operation that computes it.
    pub fn alu_op(self) -> crate::isa::AluOp {
        match self {
            Combine::Add => crate::isa::AluOp::Add,
            Combine::Xor => crate::isa::AluOp::Xor,
        }
    }

    fn apply(self, a: u32, b: u32) -> u32 {
        match self {
            Combine::Add => a.wrapping_add(b),
            Combine::Xor => a ^ b,
        }
    }
}

impl Shift {
    /// The machine's ALU operation that computes it.
    pub fn alu_op(self) -> crate::isa::AluOp {
        match self {
            Shift::Left => crate::isa::AluOp::Shl,
            Shift::Right => crate::isa::AluOp::Shr,
        }
    }
}

impl HashStage {
    pub const fn new(op1: Combine, constant: u32, op2: Combine, op3: Shift, shift: u32) -> Self {
        HashStage {
            op1,
            constant,
            op2,
            op3,
            shift,
        }
    }

    pub fn apply(&self, a: u32) -> u32 {
        let left = self.op1.apply(a, self.constant);
        let right = match self.op3 {
            Shift::Left => a.checked_shl(self.shift).unwrap_or(0),
            Shift::Right => a.checked_shr(self.shift).unwrap_or(0),
        };
        self.op2.apply(left, right)
    }
}

/// A size and hash of the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub height: u32,
    pub batch: u32,
    pub rounds: u32,
    pub stages: Vec<HashStage>,
}

/// Words of the memory header.
pub const HEADER_WORDS: usize = 7;

use Combine::{Add, Xor};
use Shift::{Left, Right};

/// The original take-home's hash.
pub const ORIGINAL_STAGES: [HashStage; 6] = [
    HashStage::new(Add, 0x7ED5_5D16, Add, Left, 12),
    HashStage::new(Xor, 0xC761_C23C, Xor, Right, 19),
    HashStage::new(Add, 0x1656_67B1, Add, Left, 5),
    HashStage::new(Add, 0xD3A2_646C, Xor, Left, 9),
    HashStage::new(Add, 0xFD70_46C5, Add, Left, 3),
    HashStage::new(Xor, 0xB55A_4F09, Xor, Right, 16),
];

/// rdbench's variant hash: the same shape of stages (three that fold into one
/// multiply-add, three that do not), constants and shifts drawn once with SplitMix64 from
/// seeds 0x7AEE0000 + i (constant: the low 32 bits) and 0x7AEE0100 + i (shift: 1 + value
/// mod 20), so that no published program for the original computes it.
pub const VARIANT_STAGES: [HashStage; 6] = [
    HashStage::new(Add, 0xCB6E_9027, Add, Left, 5),
    HashStage::new(Xor, 0xEFC2_7FB9, Xor, Right, 16),
    HashStage::new(Add, 0x75BE_28BE, Xor, Left, 11),
    HashStage::new(Add, 0x8960_BDB2, Add, Left, 9),
    HashStage::new(Xor, 0xFF5C_A8BC, Add, Right, 12),
    HashStage::new(Add, 0x00A6_2ED7, Add, Left, 7),
];

impl Params {
    /// The original take-home: height 10, batch 256, 16 rounds, its hash.
    pub fn original() -> Params {
        Params {
            height: 10,
            batch: 256,
            rounds: 16,
            stages: ORIGINAL_STAGES.to_vec(),
        }
    }

    /// The scored variant: height 9, batch 224, 18 rounds (4,032 walker-steps against the
    /// original's 4,096; the walk wraps to the root once, as the original's does), its hash.
    pub fn variant() -> Params {
        Params {
            height: 9,
            batch: 224,
            rounds: 18,
            stages: VARIANT_STAGES.to_vec(),
        }
    }

    /// A small variant for fast tests: height 4, batch 32, 6 rounds (wraps once).
    pub fn tiny() -> Params {
        Params {
            height: 4,
            batch: 32,
            rounds: 6,
            stages: VARIANT_STAGES.to_vec(),
        }
    }

    /// The parameters of a named preset (`tiny`, `full` = the variant, `original`).
    pub fn preset(name: &str) -> Option<Params> {
        match name {
            "tiny" => Some(Params::tiny()),
            "full" => Some(Params::variant()),
            "original" => Some(Params::original()),
            _ => None,
        }
    }

    /// Checks the parameters are ones the memory layout and the machine can hold.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=20).contains(&self.height) {
            return Err(format!("height {} is not in 1..=20", self.height));
        }
        if !(1..=1 << 16).contains(&self.batch) || !(1..=1024).contains(&self.rounds) {
            return Err("batch must be in 1..=65536 and rounds in 1..=1024".into());
        }
        if let Some(s) = self.stages.iter().find(|s| !(1..=31).contains(&s.shift)) {
            return Err(format!("a hash shift of {} is not in 1..=31", s.shift));
        }
        Ok(())
    }

    pub fn n_nodes(&self) -> usize {
        (1usize << (self.height + 1)) - 1
    }

    pub fn tree_ptr(&self) -> usize {
        HEADER_WORDS
    }

    pub fn indices_ptr(&self) -> usize {
        self.tree_ptr() + self.n_nodes()
    }

    pub fn values_ptr(&self) -> usize {
        self.indices_ptr() + self.batch as usize
    }

    pub fn memory_words(&self) -> usize {
        self.values_ptr() + self.batch as usize
    }

    pub fn hash(&self, mut a: u32) -> u32 {
        for s in &self.stages {
            a = s.apply(a);
        }
        a
    }
}

/// One input: the tree's values and the walkers' starting values (every walker starts at
/// the root). Values are below 2^30, as in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub tree: Vec<u32>,
    pub values: Vec<u32>,
}

impl Input {
    /// The input of `seed`: SplitMix64 from `seed`, the tree's values first, then the
    /// walkers', each the top 30 bits of one output.
    pub fn generate(params: &Params, seed: u64) -> Input {
        let mut rng = SplitMix64(seed);
        let mut draw = || (rng.next_u64() >> 34) as u32;
        let tree = (0..params.n_nodes()).map(|_| draw()).collect();
        let values = (0..params.batch).map(|_| draw()).collect();
        Input { tree, values }
    }

    /// The memory image a program starts from.
    pub fn memory_image(&self, params: &Params) -> Vec<u32> {
        let mut mem = Vec::with_capacity(params.memory_words());
        mem.extend_from_slice(&[
            params.rounds,
            params.n_nodes() as u32,
            params.batch,
            params.height,
            params.tree_ptr() as u32,
            params.indices_ptr() as u32,
            params.values_ptr() as u32,
        ]);
        mem.extend_from_slice(&self.tree);
        mem.extend(std::iter::repeat_n(0, params.batch as usize));
        mem.extend_from_slice(&self.values);
        debug_assert_eq!(mem.len(), params.memory_words());
        mem
    }

    /// The oracle: the final values and indices.
    pub fn solve(&self, params: &Params) -> (Vec<u32>, Vec<u32>) {
        let n = params.n_nodes();
        let mut values = self.values.clone();
        let mut indices = vec![0usize; values.len()];
        for _ in 0..params.rounds {
            for (v, i) in values.iter_mut().zip(indices.iter_mut()) {
                *v = params.hash(*v ^ self.tree[*i]);
                *i = 2 * *i + if *v % 2 == 0 { 1 } else { 2 };
                if *i >= n {
                    *i = 0;
                }
            }
        }
        (values, indices.into_iter().map(|i| i as u32).collect())
    }
}

/// The final values in a memory image after a run.
pub fn output_values<'a>(params: &Params, mem: &'a [u32]) -> &'a [u32] {
    &mem[params.values_ptr()..params.values_ptr() + params.batch as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_layout_and_hash() {
        let p = Params::original();
        assert_eq!(p.n_nodes(), 2047);
        assert_eq!(p.memory_words(), 2566);
        let inp = Input::generate(&p, 1);
        let mem = inp.memory_image(&p);
        assert_eq!(&mem[..7], &[16, 2047, 256, 10, 7, 2054, 2310]);
        assert_eq!(mem[7], inp.tree[0]);
        assert!(inp.tree.iter().chain(&inp.values).all(|&v| v < 1 << 30));
        // The hash's stages, each checked by hand: stage 0 of 0 is 0x7ED55D16 + 0.
        assert_eq!(ORIGINAL_STAGES[0].apply(0), 0x7ED5_5D16);
        assert_eq!(
            ORIGINAL_STAGES[1].apply(1 << 19),
            (1 << 19 ^ 0xC761_C23C) ^ 1
        );
    }

    #[test]
    fn the_walk_wraps_to_the_root_when_it_leaves_the_tree() {
        let p = Params {
            height: 1,
            batch: 1,
            rounds: 3,
            stages: vec![],
        };
        // With no hash stages the parity of value ^ node decides the branch.
        let inp = Input {
            tree: vec![0, 1, 1],
            values: vec![2],
        };
        // Round 1 at 0: 2 ^ 0 = 2 (even) -> 1. Round 2 at 1: 2 ^ 1 = 3 (odd) -> 4 -> wraps
        // to 0. Round 3 at 0: 3 ^ 0 = 3 -> 2.
        assert_eq!(inp.solve(&p), (vec![3], vec![2]));
    }
}
