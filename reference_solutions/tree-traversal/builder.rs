//! rdbench's own programs for the tree-traversal task: the reference and the fastest, built
//! for the variant's parameters (and the tiny profile's) by one generator.
//!
//! How they get their cycles (the task's docs record the numbers):
//!
//! 1. **Everything in scratch, vectorized.** The batch is 8-word vectors; each keeps its
//!    index, value, two temporaries and a node vector in scratch for the whole run, so memory
//!    is read once (the values), gathered from (the tree) and written once (the values; the
//!    indices are not part of the answer).
//! 2. **The walk is in lock-step.** Every walker starts at the root, so in round `r` all of
//!    them are at depth `r mod (height + 1)`: depth 0 needs no gather (the root's value is one
//!    broadcast vector) and no wrap test is ever needed (the generator knows the round where
//!    the walk leaves the tree). Indices are kept as memory addresses, so a gather is 8 plain
//!    `load`s and the update is `idx = 2 * idx + (1 - tree_ptr) + (value & 1)`.
//! 3. **Hash stages fold.** A stage `(a + c) + (a << k)` is one `multiply_add` by `1 + 2^k`;
//!    the others take three vector operations.
//! 4. **A list scheduler packs the slots.** Operations are emitted in program order and each
//!    is placed in the earliest cycle its operands allow (a read sees writes of earlier
//!    cycles only; a write may share the cycle of the last read of the old value) that still
//!    has a free slot on its engine. The load engine (2 per cycle) is the bottleneck: 8 loads
//!    per vector per round.
//!
//! The fastest program adds: depth 1 from the previous round's branch bit (one
//! `multiply_add` between the two depth-1 node values instead of 8 loads), depth 2 from the
//! two branch bits for as many vectors as balance the load and vector engines (6 vector
//! operations instead of 8 loads), constants made on the otherwise idle flow engine, a
//! cycle-by-cycle list scheduler (longest path first, each vector skewed ahead of the next so
//! that vectors are at different depths at once and both engines stay busy), and the best of
//! the candidates by simulated cycles.
//!
//! It refuses the original take-home's hash: its licence asks that solutions for it not be
//! published, and rdbench ships none.

use rdbench_vliw::isa::{AluOp, Engine, Slot, SCRATCH_SIZE, SLOT_LIMITS, VLEN};
use rdbench_vliw::problem::{Combine, HashStage, Input, Params, Shift, ORIGINAL_STAGES};
use rdbench_vliw::program::Program;

/// Choices of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Depth 1 selected arithmetically from the previous branch bit instead of gathered.
    pub select_depth_one: bool,
    /// How many vectors (the first ones) select depth 2 arithmetically from their two branch
    /// bits instead of gathering: trades 8 loads for 6 vector operations, so the best number
    /// balances the load and vector engines.
    pub depth_two_vectors: usize,
    /// Scalar constants made by `add_imm` on the flow engine (else `const` on the load engine).
    pub constants_on_flow: bool,
    /// Scheduled cycle by cycle, longest path to the end first (else each slot as soon as
    /// possible, in program order).
    pub critical_path: bool,
    /// With `critical_path`: how much earlier each vector's slots go than the next vector's.
    pub skew: usize,
    /// Vectors emitted in groups of this many per round (a whole round at once when it is the
    /// number of vectors): changes which operations the scheduler sees first.
    pub group: usize,
}

impl Options {
    /// The reference: gathers at every depth but 0, constants on the load engine, round by
    /// round.
    pub const REFERENCE: Options = Options {
        select_depth_one: false,
        depth_two_vectors: 0,
        critical_path: false,
        skew: 0,
        constants_on_flow: false,
        group: usize::MAX,
    };
}

/// The reference program for `params`.
pub fn reference(params: &Params) -> Result<Program, String> {
    build(params, &Options::REFERENCE)
}

/// The fastest program rdbench has for `params`: the best of the generator's options,
/// measured by simulation (each candidate is also checked against the oracle).
pub fn fastest(params: &Params) -> Result<Program, String> {
    let input = Input::generate(params, 0xFA57);
    let (want, _) = input.solve(params);
    let mut best: Option<(u64, Program)> = None;
    let vectors = params.batch as usize / VLEN;
    let mut candidates = vec![Options::REFERENCE];
    for constants_on_flow in [false, true] {
        for eighths in [0, 4, 5, 6, 7, 8] {
            let base = Options {
                select_depth_one: true,
                depth_two_vectors: vectors * eighths / 8,
                constants_on_flow,
                ..Options::REFERENCE
            };
            for group in [1, 2, 4, usize::MAX] {
                candidates.push(Options { group, ..base });
            }
            for skew in [8, 12, 16, 24, 32] {
                candidates.push(Options {
                    critical_path: true,
                    skew,
                    ..base
                });
            }
        }
    }
    for options in candidates {
        let program = build(params, &options)?;
        let mut mem = input.memory_image(params);
        let stats = rdbench_vliw::machine::run(&program, &mut mem, 1 << 22)
            .map_err(|f| format!("candidate {options:?} faults: {f}"))?;
        if rdbench_vliw::problem::output_values(params, &mem) != want.as_slice() {
            return Err(format!("candidate {options:?} computes wrong values"));
        }
        if best.as_ref().is_none_or(|(c, _)| stats.cycles < *c) {
            best = Some((stats.cycles, program));
        }
    }
    Ok(best.expect("at least one candidate").1)
}

/// Builds the program for `params` with `options`.
pub fn build(params: &Params, options: &Options) -> Result<Program, String> {
    params.validate()?;
    if params.stages == ORIGINAL_STAGES {
        return Err(
            "rdbench ships no optimized program for the original take-home's hash (its licence \
             asks that solutions not be published)"
                .into(),
        );
    }
    if !(params.batch as usize).is_multiple_of(VLEN) {
        return Err(format!(
            "the batch ({}) is not a multiple of {VLEN}",
            params.batch
        ));
    }
    let mut g = Generator::new(params, options)?;
    g.emit_all();
    Ok(g.sched.finish(options))
}

/// Scratch allocation (bump allocator; nothing is ever freed).
struct Scratch {
    next: usize,
}

impl Scratch {
    fn take(&mut self, words: usize) -> Result<u16, String> {
        let at = self.next;
        self.next += words;
        if self.next > SCRATCH_SIZE {
            return Err(format!(
                "the program needs more than {SCRATCH_SIZE} words of scratch for these parameters"
            ));
        }
        Ok(at as u16)
    }
}

/// One hash stage's constant vectors.
enum StageVectors {
    /// `a = a * mul + c`.
    Fused { mul: u16, c: u16 },
    /// `a = (a op1 c) op2 (a op3 k)`.
    Plain { c: u16, k: u16 },
}

/// The scratch words of one batch vector.
struct Lane {
    idx: u16,
    val: u16,
    t1: u16,
    t2: u16,
    node: u16,
    /// Scalar: the memory address of this vector's values.
    addr: u16,
}

struct Generator<'a> {
    params: &'a Params,
    options: &'a Options,
    sched: Scheduler,
    stages: Vec<StageVectors>,
    lanes: Vec<Lane>,
    two: u16,
    one: u16,
    /// `1 - tree_ptr`: the index update's offset for indices kept as addresses.
    offset: u16,
    /// `tree_ptr + 1`: the address of depth 1's first node.
    first_child: u16,
    root: u16,
    /// Depth 1: the first node's value, and the second's minus the first's.
    child_base: u16,
    child_step: u16,
    /// Depth 2: the first and third nodes' values, the steps to the second and fourth, and
    /// the address of the first.
    grand: [u16; 5],
}

/// A scratch word that is never written: zero for the whole run (scratch starts zeroed).
const ZERO: u16 = 0;

impl<'a> Generator<'a> {
    fn new(params: &'a Params, options: &'a Options) -> Result<Self, String> {
        let mut s = Scratch { next: 1 };
        let mut sched = Scheduler::default();
        let vectors = params.batch as usize / VLEN;
        let tree_ptr = params.tree_ptr() as u32;
        // Scalars first, then their broadcasts.
        let scalar = |sched: &mut Scheduler, s: &mut Scratch, value: u32| -> Result<u16, String> {
            let at = s.take(1)?;
            sched.place(if options.constants_on_flow {
                Slot::AddImm {
                    dest: at,
                    a: ZERO,
                    imm: value,
                }
            } else {
                Slot::Const { dest: at, value }
            });
            Ok(at)
        };
        let vector = |sched: &mut Scheduler, s: &mut Scratch, value: u32| -> Result<u16, String> {
            let word = scalar(sched, s, value)?;
            let at = s.take(VLEN)?;
            sched.place(Slot::VBroadcast {
                dest: at,
                src: word,
            });
            Ok(at)
        };
        // The values' addresses and their loads come first: everything waits on them.
        let mut lanes = Vec::with_capacity(vectors);
        for v in 0..vectors {
            let addr = scalar(&mut sched, &mut s, (params.values_ptr() + v * VLEN) as u32)?;
            let val = s.take(VLEN)?;
            sched.place(Slot::VLoad { dest: val, addr });
            lanes.push(Lane {
                idx: s.take(VLEN)?,
                val,
                t1: s.take(VLEN)?,
                t2: s.take(VLEN)?,
                node: s.take(VLEN)?,
                addr,
            });
        }
        // The root's value.
        let root_addr = scalar(&mut sched, &mut s, tree_ptr)?;
        let root_word = s.take(1)?;
        sched.place(Slot::Load {
            dest: root_word,
            addr: root_addr,
        });
        let root = s.take(VLEN)?;
        sched.place(Slot::VBroadcast {
            dest: root,
            src: root_word,
        });
        let mut stages = Vec::new();
        for stage in &params.stages {
            stages.push(match fused_multiplier(stage) {
                Some(mul) => StageVectors::Fused {
                    mul: vector(&mut sched, &mut s, mul)?,
                    c: vector(&mut sched, &mut s, stage.constant)?,
                },
                None => StageVectors::Plain {
                    c: vector(&mut sched, &mut s, stage.constant)?,
                    k: vector(&mut sched, &mut s, stage.shift)?,
                },
            });
        }
        let one = vector(&mut sched, &mut s, 1)?;
        let two = vector(&mut sched, &mut s, 2)?;
        let offset = vector(&mut sched, &mut s, 1u32.wrapping_sub(tree_ptr))?;
        let first_child = vector(&mut sched, &mut s, tree_ptr + 1)?;
        let (child_base, child_step) = if options.select_depth_one && params.height >= 1 {
            let a_addr = scalar(&mut sched, &mut s, tree_ptr + 1)?;
            let b_addr = scalar(&mut sched, &mut s, tree_ptr + 2)?;
            let (a, b, step) = (s.take(1)?, s.take(1)?, s.take(1)?);
            sched.place(Slot::Load {
                dest: a,
                addr: a_addr,
            });
            sched.place(Slot::Load {
                dest: b,
                addr: b_addr,
            });
            sched.place(Slot::Alu {
                op: AluOp::Sub,
                dest: step,
                a: b,
                b: a,
            });
            let (base_v, step_v) = (s.take(VLEN)?, s.take(VLEN)?);
            sched.place(Slot::VBroadcast {
                dest: base_v,
                src: a,
            });
            sched.place(Slot::VBroadcast {
                dest: step_v,
                src: step,
            });
            (base_v, step_v)
        } else {
            (ZERO, ZERO)
        };
        let grand =
            if options.select_depth_one && options.depth_two_vectors > 0 && params.height >= 2 {
                let mut words = [0u16; 4];
                for (k, word) in words.iter_mut().enumerate() {
                    let addr = scalar(&mut sched, &mut s, tree_ptr + 3 + k as u32)?;
                    *word = s.take(1)?;
                    sched.place(Slot::Load { dest: *word, addr });
                }
                let (step_a, step_b) = (s.take(1)?, s.take(1)?);
                sched.place(Slot::Alu {
                    op: AluOp::Sub,
                    dest: step_a,
                    a: words[1],
                    b: words[0],
                });
                sched.place(Slot::Alu {
                    op: AluOp::Sub,
                    dest: step_b,
                    a: words[3],
                    b: words[2],
                });
                let mut out = [0u16; 5];
                for (k, src) in [words[0], step_a, words[2], step_b].into_iter().enumerate() {
                    out[k] = s.take(VLEN)?;
                    sched.place(Slot::VBroadcast { dest: out[k], src });
                }
                out[4] = vector(&mut sched, &mut s, tree_ptr + 3)?;
                out
            } else {
                [ZERO; 5]
            };
        Ok(Generator {
            params,
            options,
            sched,
            stages,
            lanes,
            two,
            one,
            offset,
            first_child,
            root,
            child_base,
            child_step,
            grand,
        })
    }

    fn emit_all(&mut self) {
        let vectors = self.lanes.len();
        let group = self.options.group.clamp(1, vectors);
        for first in (0..vectors).step_by(group) {
            let members = first..(first + group).min(vectors);
            for round in 0..self.params.rounds {
                for v in members.clone() {
                    self.emit_step(round, v);
                }
            }
        }
        for lane in &self.lanes {
            self.sched.place(Slot::VStore {
                addr: lane.addr,
                src: lane.val,
            });
        }
    }

    /// One round of one vector.
    fn emit_step(&mut self, round: u32, v: usize) {
        self.sched.tag = v + 1;
        let period = self.params.height + 1;
        let depth = round % period;
        let lane = &self.lanes[v];
        let (idx, val, t1, t2, node) = (lane.idx, lane.val, lane.t1, lane.t2, lane.node);
        let valu = |op, dest, a, b| Slot::Valu { op, dest, a, b };
        let source = if depth == 0 {
            self.root
        } else if depth == 1 && self.options.select_depth_one {
            // t2 holds the branch bit the previous (depth 0) round took.
            self.sched.place(Slot::MultiplyAdd {
                dest: node,
                a: t2,
                b: self.child_step,
                c: self.child_base,
            });
            node
        } else if depth == 2 && self.grand[4] != ZERO && v < self.options.depth_two_vectors {
            // t2 holds the depth-1 branch bit b0; the depth-0 bit b1 is in the index:
            // idx = tree_ptr + 3 + 2 * b1 + b0.
            let [first, step_a, third, step_b, first_addr] = self.grand;
            let madd = |dest, a, b, c| Slot::MultiplyAdd { dest, a, b, c };
            self.sched.place(madd(t1, t2, step_a, first)); // left pair
            self.sched.place(madd(t2, t2, step_b, third)); // right pair
            self.sched.place(valu(AluOp::Sub, t2, t2, t1));
            self.sched.place(valu(AluOp::Sub, node, idx, first_addr));
            self.sched.place(valu(AluOp::Shr, node, node, self.one));
            self.sched.place(madd(node, node, t2, t1));
            node
        } else {
            for i in 0..VLEN as u16 {
                self.sched.place(Slot::Load {
                    dest: node + i,
                    addr: idx + i,
                });
            }
            node
        };
        self.sched.place(valu(AluOp::Xor, val, val, source));
        for (stage, vectors) in self.params.stages.iter().zip(&self.stages) {
            match *vectors {
                StageVectors::Fused { mul, c } => self.sched.place(Slot::MultiplyAdd {
                    dest: val,
                    a: val,
                    b: mul,
                    c,
                }),
                StageVectors::Plain { c, k } => {
                    self.sched.place(valu(stage.op1.alu_op(), t1, val, c));
                    self.sched.place(valu(stage.op3.alu_op(), t2, val, k));
                    self.sched.place(valu(stage.op2.alu_op(), val, t1, t2));
                }
            }
        }
        let last = round + 1 == self.params.rounds;
        let wraps = (round + 1).is_multiple_of(period);
        if last || wraps {
            return; // the index is never read again before the walk restarts at the root
        }
        self.sched.place(valu(AluOp::And, t2, val, self.one));
        if depth == 0 {
            self.sched
                .place(valu(AluOp::Add, idx, t2, self.first_child));
        } else {
            self.sched.place(Slot::MultiplyAdd {
                dest: idx,
                a: idx,
                b: self.two,
                c: self.offset,
            });
            self.sched.place(valu(AluOp::Add, idx, idx, t2));
        }
    }
}

/// `1 + 2^k` when the stage is `(a + c) + (a << k)`, which is `a * (1 + 2^k) + c`.
fn fused_multiplier(stage: &HashStage) -> Option<u32> {
    (stage.op1 == Combine::Add && stage.op2 == Combine::Add && stage.op3 == Shift::Left)
        .then(|| 1u32.wrapping_add(1u32 << stage.shift))
}

/// The operations in program order, scheduled into bundles by [`Scheduler::finish`].
#[derive(Default)]
struct Scheduler {
    ops: Vec<Slot>,
    /// Per slot: 0 for the prologue, 1 + the vector's index for a vector's slots.
    tags: Vec<usize>,
    tag: usize,
}

impl Scheduler {
    fn place(&mut self, slot: Slot) {
        self.ops.push(slot);
        self.tags.push(self.tag);
    }

    fn finish(self, options: &Options) -> Program {
        let bundles = if options.critical_path {
            // Earlier vectors first by `skew` cycles of path per vector: a pipeline in which
            // vectors are at different depths at once, so the load and vector engines are
            // busy together (in lock-step every vector gathers, or hashes, at the same time).
            let top = self.tags.iter().copied().max().unwrap_or(0);
            let boost: Vec<usize> = self
                .tags
                .iter()
                .map(|&t| (top + 1 - t) * options.skew)
                .collect();
            by_critical_path_first(&self.ops, &boost)
        } else {
            as_soon_as_possible(&self.ops)
        };
        let bundles: Vec<Vec<Slot>> = bundles.into_iter().filter(|b| !b.is_empty()).collect();
        Program::from_bundles(&bundles)
    }
}

/// Each slot, in program order, goes into the earliest cycle its operands and its engine
/// allow: a read sees writes of earlier cycles only; a write may share the cycle of the last
/// read of the old value but not of another write.
fn as_soon_as_possible(ops: &[Slot]) -> Vec<Vec<Slot>> {
    let mut bundles: Vec<Vec<Slot>> = Vec::new();
    let mut last_write: Vec<Option<usize>> = vec![None; SCRATCH_SIZE];
    let mut last_read: Vec<Option<usize>> = vec![None; SCRATCH_SIZE];
    for slot in ops {
        let (reads, writes) = footprint(slot);
        let mut earliest = 0;
        for &r in &reads {
            if let Some(c) = last_write[r] {
                earliest = earliest.max(c + 1);
            }
        }
        for &w in &writes {
            if let Some(c) = last_write[w] {
                earliest = earliest.max(c + 1);
            }
            if let Some(c) = last_read[w] {
                earliest = earliest.max(c);
            }
        }
        let engine = slot.engine();
        let limit = engine_limit(engine);
        let mut cycle = earliest;
        loop {
            if cycle == bundles.len() {
                bundles.push(Vec::new());
            }
            if bundles[cycle]
                .iter()
                .filter(|s| s.engine() == engine)
                .count()
                < limit
            {
                break;
            }
            cycle += 1;
        }
        bundles[cycle].push(*slot);
        for r in reads {
            last_read[r] = Some(last_read[r].map_or(cycle, |c| c.max(cycle)));
        }
        for w in writes {
            last_write[w] = Some(cycle);
        }
    }
    bundles
}

/// Cycle-by-cycle list scheduling: the dependence graph of the program-order slots (a read
/// after a write waits a cycle, a write after a read may share it, a write after a write
/// waits a cycle), then each cycle fills every engine with the ready slots that have the
/// longest path to the end of the program.
fn by_critical_path_first(ops: &[Slot], boost: &[usize]) -> Vec<Vec<Slot>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = ops.len();
    // (successor, latency) lists and predecessor counts.
    let mut succs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut preds = vec![0usize; n];
    let mut last_writer: Vec<Option<usize>> = vec![None; SCRATCH_SIZE];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); SCRATCH_SIZE];
    for (i, slot) in ops.iter().enumerate() {
        let (reads, writes) = footprint(slot);
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for &r in &reads {
            if let Some(w) = last_writer[r] {
                edges.push((w, 1));
            }
        }
        for &w in &writes {
            if let Some(p) = last_writer[w] {
                edges.push((p, 1));
            }
            edges.extend(readers[w].iter().filter(|&&k| k != i).map(|&k| (k, 0)));
        }
        // One edge per predecessor, with the larger latency.
        edges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        edges.dedup_by_key(|e| e.0);
        for (p, lat) in edges {
            succs[p].push((i, lat));
            preds[i] += 1;
        }
        for &r in &reads {
            readers[r].push(i);
        }
        for &w in &writes {
            last_writer[w] = Some(i);
            readers[w].clear();
        }
    }
    // Longest path to the end (program order is a topological order).
    let mut height = vec![0usize; n];
    for i in (0..n).rev() {
        height[i] = succs[i]
            .iter()
            .map(|&(s, lat)| height[s] + lat)
            .max()
            .unwrap_or(0)
            + 1;
    }
    let height: Vec<usize> = height.iter().zip(boost).map(|(h, b)| h + b).collect();
    let engines: Vec<Engine> = SLOT_LIMITS.iter().map(|(e, _)| *e).collect();
    let engine_index = |slot: &Slot| engines.iter().position(|e| *e == slot.engine()).unwrap();
    let mut heaps: Vec<BinaryHeap<(usize, Reverse<usize>)>> =
        vec![BinaryHeap::new(); engines.len()];
    let mut earliest = vec![0usize; n];
    let mut next_cycle: Vec<usize> = Vec::new();
    for i in 0..n {
        if preds[i] == 0 {
            heaps[engine_index(&ops[i])].push((height[i], Reverse(i)));
        }
    }
    let mut bundles: Vec<Vec<Slot>> = Vec::new();
    let mut done = 0;
    let mut cycle = 0;
    while done < n {
        for i in std::mem::take(&mut next_cycle) {
            heaps[engine_index(&ops[i])].push((height[i], Reverse(i)));
        }
        let mut bundle = Vec::new();
        let mut used = vec![0usize; engines.len()];
        loop {
            let mut progressed = false;
            for e in 0..engines.len() {
                while used[e] < SLOT_LIMITS[e].1 {
                    let Some((_, Reverse(i))) = heaps[e].pop() else {
                        break;
                    };
                    used[e] += 1;
                    done += 1;
                    progressed = true;
                    bundle.push(ops[i]);
                    for &(s, lat) in &succs[i] {
                        earliest[s] = earliest[s].max(cycle + lat);
                        preds[s] -= 1;
                        if preds[s] == 0 {
                            if earliest[s] <= cycle {
                                heaps[engine_index(&ops[s])].push((height[s], Reverse(s)));
                            } else {
                                next_cycle.push(s);
                            }
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        bundles.push(bundle);
        cycle += 1;
    }
    bundles
}

fn engine_limit(engine: Engine) -> usize {
    SLOT_LIMITS
        .iter()
        .find(|(e, _)| *e == engine)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

/// The scratch words a slot reads and writes (for the slots this generator emits).
fn footprint(slot: &Slot) -> (Vec<usize>, Vec<usize>) {
    let one = |a: u16| vec![a as usize];
    let vec8 = |a: u16| (a as usize..a as usize + VLEN).collect::<Vec<_>>();
    let cat = |parts: &[Vec<usize>]| parts.concat();
    match *slot {
        Slot::Alu { dest, a, b, .. } => (cat(&[one(a), one(b)]), one(dest)),
        Slot::Valu { dest, a, b, .. } => (cat(&[vec8(a), vec8(b)]), vec8(dest)),
        Slot::VBroadcast { dest, src } => (one(src), vec8(dest)),
        Slot::MultiplyAdd { dest, a, b, c } => (cat(&[vec8(a), vec8(b), vec8(c)]), vec8(dest)),
        Slot::Load { dest, addr } => (one(addr), one(dest)),
        Slot::VLoad { dest, addr } => (one(addr), vec8(dest)),
        Slot::Const { dest, .. } => (vec![], one(dest)),
        Slot::AddImm { dest, a, .. } => (one(a), one(dest)),
        Slot::VStore { addr, src } => (cat(&[one(addr), vec8(src)]), vec![]),
        Slot::Store { addr, src } => (cat(&[one(addr), one(src)]), vec![]),
        other => unreachable!("the generator never emits {other:?}"),
    }
}
