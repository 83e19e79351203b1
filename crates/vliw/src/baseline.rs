//! The starting program: the problem done one walker at a time with scalar ALU operations,
//! one slot per bundle. At the original's size it takes 147,734 cycles, the original's
//! published baseline (14 header loads, 262 constants, 2 pauses and 36 bundles for each of the
//! 4,096 walker-steps).
//!
//! The attempt folder carries the same program's builder in Python (`build_program.py`),
//! which writes an identical `program.json` (a test checks it), so an agent can start from
//! either.

use std::collections::HashMap;

use crate::isa::{AluOp, Slot, SCRATCH_SIZE};
use crate::problem::Params;
use crate::program::Program;

/// Builds the scalar baseline program for `params`, or says why it does not fit in scratch.
pub fn baseline(params: &Params) -> Result<Program, String> {
    let mut b = Scalar::default();
    let tmp1 = b.alloc();
    let tmp2 = b.alloc();
    let tmp3 = b.alloc();
    // The header's seven words, loaded from memory as the original does.
    let header: Vec<u16> = (0..7).map(|_| b.alloc()).collect();
    for (i, &var) in header.iter().enumerate() {
        b.emit(Slot::Const {
            dest: tmp1,
            value: i as u32,
        });
        b.emit(Slot::Load {
            dest: var,
            addr: tmp1,
        });
    }
    let [_, n_nodes, _, _, tree_ptr, indices_ptr, values_ptr] =
        <[u16; 7]>::try_from(header).expect("seven header words");
    let zero = b.constant(0)?;
    let one = b.constant(1)?;
    let two = b.constant(2)?;
    b.emit(Slot::Nop); // a `pause`, free of effect when scoring, as in the original
    let idx = b.alloc();
    let val = b.alloc();
    let node = b.alloc();
    let addr = b.alloc();
    let alu = |op, dest, a, b| Slot::Alu { op, dest, a, b };
    let mut body = Vec::new();
    for _round in 0..params.rounds {
        for i in 0..params.batch {
            let ic = b.constant(i)?;
            body.push(alu(AluOp::Add, addr, indices_ptr, ic));
            body.push(Slot::Load { dest: idx, addr });
            body.push(alu(AluOp::Add, addr, values_ptr, ic));
            body.push(Slot::Load { dest: val, addr });
            body.push(alu(AluOp::Add, addr, tree_ptr, idx));
            body.push(Slot::Load { dest: node, addr });
            body.push(alu(AluOp::Xor, val, val, node));
            for stage in &params.stages {
                let c = b.constant(stage.constant)?;
                let k = b.constant(stage.shift)?;
                body.push(alu(stage.op1.alu_op(), tmp1, val, c));
                body.push(alu(stage.op3.alu_op(), tmp2, val, k));
                body.push(alu(stage.op2.alu_op(), val, tmp1, tmp2));
            }
            body.push(alu(AluOp::Mod, tmp1, val, two));
            body.push(alu(AluOp::Eq, tmp1, tmp1, zero));
            body.push(Slot::Select {
                dest: tmp3,
                cond: tmp1,
                a: one,
                b: two,
            });
            body.push(alu(AluOp::Mul, idx, idx, two));
            body.push(alu(AluOp::Add, idx, idx, tmp3));
            body.push(alu(AluOp::Lt, tmp1, idx, n_nodes));
            body.push(Slot::Select {
                dest: idx,
                cond: tmp1,
                a: idx,
                b: zero,
            });
            body.push(alu(AluOp::Add, addr, indices_ptr, ic));
            body.push(Slot::Store { addr, src: idx });
            body.push(alu(AluOp::Add, addr, values_ptr, ic));
            body.push(Slot::Store { addr, src: val });
        }
    }
    b.slots.extend(body);
    b.emit(Slot::Nop);
    let bundles: Vec<Vec<Slot>> = b.slots.into_iter().map(|s| vec![s]).collect();
    Ok(Program::from_bundles(&bundles))
}

/// Scratch allocation and constants loaded on first use (their loads go where they are
/// first asked for, before the loop body).
#[derive(Default)]
struct Scalar {
    next: usize,
    slots: Vec<Slot>,
    constants: HashMap<u32, u16>,
    overflow: bool,
}

impl Scalar {
    fn alloc(&mut self) -> u16 {
        let at = self.next;
        self.next += 1;
        self.overflow |= self.next > SCRATCH_SIZE;
        at.min(SCRATCH_SIZE - 1) as u16
    }

    fn emit(&mut self, slot: Slot) {
        self.slots.push(slot);
    }

    fn constant(&mut self, value: u32) -> Result<u16, String> {
        if let Some(&at) = self.constants.get(&value) {
            return Ok(at);
        }
        let at = self.alloc();
        if self.overflow {
            return Err(format!(
                "the scalar baseline needs more than {SCRATCH_SIZE} words of scratch for these parameters"
            ));
        }
        self.emit(Slot::Const { dest: at, value });
        self.constants.insert(value, at);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{output_values, Input};

    #[test]
    fn the_original_baseline_takes_the_published_147734_cycles_and_is_right() {
        let p = Params::original();
        let program = baseline(&p).unwrap();
        for seed in [1, 2] {
            let inp = Input::generate(&p, seed);
            let mut mem = inp.memory_image(&p);
            let stats = crate::machine::run(&program, &mut mem, 10_000_000).unwrap();
            assert_eq!(stats.cycles, 147_734);
            assert_eq!(output_values(&p, &mem), inp.solve(&p).0.as_slice());
            // The baseline also writes the indices back.
            let ip = p.indices_ptr();
            assert_eq!(&mem[ip..ip + 256], inp.solve(&p).1.as_slice());
        }
    }

    #[test]
    fn the_baseline_survives_its_own_file_format() {
        let p = Params::tiny();
        let program = baseline(&p).unwrap();
        let again = Program::parse(program.to_json().as_bytes()).unwrap();
        assert_eq!(again, program);
    }
}
