//! The simulator: runs a [`Program`] on a memory image and counts cycles.
//!
//! Semantics, as in the original take-home's machine with scoring settings (`pause` and
//! `debug` off, one core):
//!
//! - Bundles run in order from bundle 0; the program stops after a `halt` or when the next
//!   bundle index is past the end.
//! - Every slot of a bundle reads scratch and memory as they were when the bundle began; all
//!   writes land at its end, scratch first, then memory; when two slots write one word the
//!   later slot (in file order) wins.
//! - A bundle costs one cycle when it names any engine but `debug`.
//! - Words are 32 bits, arithmetic is modulo 2^32, shifts by 32 or more give 0, and a
//!   division or remainder by zero is a [`Fault`], as is a memory address outside the image,
//!   a jump to a negative bundle index, or a run past one of its [`Bounds`].
//! - The work of a run is bounded twice: by cycles, and by bundles executed, free ones
//!   included. Bundles that name no engine (or only `debug`) cost no cycle, so a loop through
//!   a long run of them spends time without spending cycles; only the second bound stops it.
//!
//! The loop is the inner loop of every score and of an agent's search, so it decodes nothing
//! and allocates nothing: writes go to two fixed buffers sized for the most a bundle can write.

use std::fmt;

use crate::isa::{Slot, SCRATCH_SIZE, VLEN};
use crate::program::{Program, MAX_BUNDLES};

/// Why a run ended early. `cycle` is the cycle the faulting bundle would have been (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A load or store outside memory.
    MemoryOutOfBounds {
        bundle: usize,
        cycle: u64,
        address: u64,
        len: usize,
    },
    /// `//`, `cdiv` or `%` by zero.
    DivisionByZero { bundle: usize, cycle: u64 },
    /// A relative jump to before bundle 0.
    NegativeJump { bundle: usize, cycle: u64 },
    /// Still running after `limit` cycles.
    CycleLimit { limit: u64 },
    /// Still running after executing `limit` bundles (free ones included), `cycles` cycles in.
    BundleLimit { limit: u64, cycles: u64 },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::MemoryOutOfBounds { bundle, cycle, address, len } => write!(
                f,
                "bundle {bundle} (cycle {cycle}) addresses memory word {address}, outside the image of {len} words"
            ),
            Fault::DivisionByZero { bundle, cycle } => {
                write!(f, "bundle {bundle} (cycle {cycle}) divides by zero")
            }
            Fault::NegativeJump { bundle, cycle } => {
                write!(f, "bundle {bundle} (cycle {cycle}) jumps before the first bundle")
            }
            Fault::CycleLimit { limit } => {
                write!(f, "the program did not halt within {limit} cycles")
            }
            Fault::BundleLimit { limit, cycles } => write!(
                f,
                "the program did not halt within {limit} executed bundles (the bound on bundles, \
                 free ones included; {cycles} cycles had run)"
            ),
        }
    }
}

impl std::error::Error for Fault {}

/// What a finished run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    pub cycles: u64,
    /// Bundles executed (including free debug-only ones).
    pub bundles: u64,
}

/// The machine's state after a run, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    pub scratch: Vec<u32>,
}

/// Most scratch words one bundle can write: 12 alu + 6 x 8 valu + 2 x 8 load + 8 flow.
const MAX_SCRATCH_WRITES: usize = 12 + 6 * VLEN + 2 * VLEN + VLEN;
/// Most memory words one bundle can write: 2 x 8 store.
const MAX_MEM_WRITES: usize = 2 * VLEN;

/// The most work a run may do: cycles, and bundles executed (free ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub cycles: u64,
    pub bundles: u64,
}

/// Free bundles per cycle that [`Bounds::for_cycles`] allows on top of [`MAX_BUNDLES`].
pub const DEFAULT_BUNDLES_PER_CYCLE: u64 = 16;

impl Bounds {
    /// `max_cycles` cycles, and `16 x max_cycles + MAX_BUNDLES` bundles: any program that fits
    /// the file caps can run through once, and a loop may carry up to 16 free (`debug`-only or
    /// empty) bundles per cycle it spends, far more than any useful program.
    pub fn for_cycles(max_cycles: u64) -> Bounds {
        Bounds {
            cycles: max_cycles,
            bundles: max_cycles
                .saturating_mul(DEFAULT_BUNDLES_PER_CYCLE)
                .saturating_add(MAX_BUNDLES as u64),
        }
    }
}

/// Runs `program` on `mem` (changed in place) from zeroed scratch, for at most `max_cycles`
/// (and the bundles of [`Bounds::for_cycles`]).
pub fn run(program: &Program, mem: &mut [u32], max_cycles: u64) -> Result<RunStats, Fault> {
    run_bounded(program, mem, Bounds::for_cycles(max_cycles))
}

/// [`run`] within explicit [`Bounds`].
pub fn run_bounded(program: &Program, mem: &mut [u32], bounds: Bounds) -> Result<RunStats, Fault> {
    let mut scratch = vec![0u32; SCRATCH_SIZE];
    execute(program, mem, &mut scratch, bounds)
}

/// [`run`], also returning the final scratch.
pub fn run_with_core(
    program: &Program,
    mem: &mut [u32],
    max_cycles: u64,
) -> Result<(RunStats, Core), Fault> {
    let mut scratch = vec![0u32; SCRATCH_SIZE];
    let stats = execute(program, mem, &mut scratch, Bounds::for_cycles(max_cycles))?;
    Ok((stats, Core { scratch }))
}

fn execute(
    program: &Program,
    mem: &mut [u32],
    scratch: &mut [u32],
    bounds: Bounds,
) -> Result<RunStats, Fault> {
    let max_cycles = bounds.cycles;
    let scratch: &mut [u32; SCRATCH_SIZE] =
        scratch.try_into().expect("scratch has SCRATCH_SIZE words");
    let mut sw_addr = [0u16; MAX_SCRATCH_WRITES];
    let mut sw_val = [0u32; MAX_SCRATCH_WRITES];
    let mut mw_addr = [0usize; MAX_MEM_WRITES];
    let mut mw_val = [0u32; MAX_MEM_WRITES];
    let n_bundles = program.bundles.len();
    let mem_len = mem.len();
    let mut pc: usize = 0;
    let mut cycles: u64 = 0;
    let mut executed: u64 = 0;
    while pc < n_bundles {
        let bundle = program.bundles[pc];
        let here = pc;
        pc += 1;
        if executed == bounds.bundles {
            return Err(Fault::BundleLimit {
                limit: bounds.bundles,
                cycles,
            });
        }
        executed += 1;
        if bundle.costs_cycle {
            if cycles == max_cycles {
                return Err(Fault::CycleLimit { limit: max_cycles });
            }
            cycles += 1;
        }
        let cycle = cycles;
        let oob = |address: u64| Fault::MemoryOutOfBounds {
            bundle: here,
            cycle,
            address,
            len: mem_len,
        };
        let div0 = || Fault::DivisionByZero {
            bundle: here,
            cycle,
        };
        let mut ns = 0usize;
        let mut nm = 0usize;
        let mut halted = false;
        macro_rules! sw {
            ($addr:expr, $val:expr) => {{
                sw_addr[ns] = $addr as u16;
                sw_val[ns] = $val;
                ns += 1;
            }};
        }
        let slots = &program.slots[bundle.start as usize..(bundle.start + bundle.len) as usize];
        for slot in slots {
            match *slot {
                Slot::Alu { op, dest, a, b } => {
                    let v = op
                        .apply(scratch[a as usize], scratch[b as usize])
                        .ok_or_else(div0)?;
                    sw!(dest, v);
                }
                Slot::Valu { op, dest, a, b } => {
                    for i in 0..VLEN {
                        let v = op
                            .apply(scratch[a as usize + i], scratch[b as usize + i])
                            .ok_or_else(div0)?;
                        sw!(dest as usize + i, v);
                    }
                }
                Slot::VBroadcast { dest, src } => {
                    let v = scratch[src as usize];
                    for i in 0..VLEN {
                        sw!(dest as usize + i, v);
                    }
                }
                Slot::MultiplyAdd { dest, a, b, c } => {
                    for i in 0..VLEN {
                        let v = scratch[a as usize + i]
                            .wrapping_mul(scratch[b as usize + i])
                            .wrapping_add(scratch[c as usize + i]);
                        sw!(dest as usize + i, v);
                    }
                }
                Slot::Load { dest, addr } => {
                    let at = scratch[addr as usize] as usize;
                    let v = *mem.get(at).ok_or_else(|| oob(at as u64))?;
                    sw!(dest, v);
                }
                Slot::VLoad { dest, addr } => {
                    let at = scratch[addr as usize] as usize;
                    let words = mem
                        .get(at..at + VLEN)
                        .ok_or_else(|| oob(at.max(mem_len) as u64))?;
                    for (i, &v) in words.iter().enumerate() {
                        sw!(dest as usize + i, v);
                    }
                }
                Slot::Const { dest, value } => sw!(dest, value),
                Slot::Store { addr, src } => {
                    let at = scratch[addr as usize] as usize;
                    if at >= mem_len {
                        return Err(oob(at as u64));
                    }
                    mw_addr[nm] = at;
                    mw_val[nm] = scratch[src as usize];
                    nm += 1;
                }
                Slot::VStore { addr, src } => {
                    let at = scratch[addr as usize] as usize;
                    if at + VLEN > mem_len {
                        return Err(oob(at.max(mem_len) as u64));
                    }
                    for i in 0..VLEN {
                        mw_addr[nm] = at + i;
                        mw_val[nm] = scratch[src as usize + i];
                        nm += 1;
                    }
                }
                Slot::Select { dest, cond, a, b } => {
                    let v = if scratch[cond as usize] != 0 {
                        scratch[a as usize]
                    } else {
                        scratch[b as usize]
                    };
                    sw!(dest, v);
                }
                Slot::AddImm { dest, a, imm } => sw!(dest, scratch[a as usize].wrapping_add(imm)),
                Slot::VSelect { dest, cond, a, b } => {
                    for i in 0..VLEN {
                        let v = if scratch[cond as usize + i] != 0 {
                            scratch[a as usize + i]
                        } else {
                            scratch[b as usize + i]
                        };
                        sw!(dest as usize + i, v);
                    }
                }
                Slot::Halt => halted = true,
                Slot::CondJump { cond, target } => {
                    if scratch[cond as usize] != 0 {
                        pc = target as usize;
                    }
                }
                Slot::CondJumpRel { cond, offset } => {
                    if scratch[cond as usize] != 0 {
                        let to = pc as i64 + offset as i64;
                        if to < 0 {
                            return Err(Fault::NegativeJump {
                                bundle: here,
                                cycle,
                            });
                        }
                        pc = to as usize;
                    }
                }
                Slot::Jump { target } => pc = target as usize,
                Slot::JumpIndirect { addr } => pc = scratch[addr as usize] as usize,
                Slot::CoreId { dest } => sw!(dest, 0),
                Slot::Nop => {}
            }
        }
        for i in 0..ns {
            scratch[sw_addr[i] as usize] = sw_val[i];
        }
        for i in 0..nm {
            mem[mw_addr[i]] = mw_val[i];
        }
        if halted {
            break;
        }
    }
    Ok(RunStats {
        cycles,
        bundles: executed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{AluOp, ALU_OPS};
    use proptest::prelude::*;

    /// The original's semantics with unbounded integers: the result taken modulo 2^32.
    fn python_alu(op: AluOp, a: u32, b: u32) -> Option<u32> {
        let (a, b) = (a as i128, b as i128);
        let r = match op {
            AluOp::Add => a + b,
            AluOp::Sub => a - b,
            AluOp::Mul => a * b,
            AluOp::Div => a.checked_div(b)?,
            AluOp::Cdiv => (a + b - 1).checked_div(b)?,
            AluOp::Xor => a ^ b,
            AluOp::And => a & b,
            AluOp::Or => a | b,
            // a << b for b >= 32 has no bit below 2^32 left; i128 cannot hold b up to 2^32.
            AluOp::Shl => {
                if b >= 32 {
                    0
                } else {
                    a << b
                }
            }
            AluOp::Shr => {
                if b >= 32 {
                    0
                } else {
                    a >> b
                }
            }
            AluOp::Mod => a.checked_rem(b)?,
            AluOp::Lt => (a < b) as i128,
            AluOp::Eq => (a == b) as i128,
        };
        Some(r.rem_euclid(1 << 32) as u32)
    }

    fn word() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), 0u32..40, Just(u32::MAX), Just(0)]
    }

    proptest! {
        #[test]
        fn alu_ops_match_unbounded_integer_semantics(op in 0usize..13, a in word(), b in word()) {
            let op = ALU_OPS[op].0;
            prop_assert_eq!(op.apply(a, b), python_alu(op, a, b));
        }

        #[test]
        fn vector_ops_are_the_scalar_op_in_every_lane(
            op in 0usize..13,
            xs in proptest::collection::vec(word(), 8),
            ys in proptest::collection::vec(word(), 8),
        ) {
            let op = ALU_OPS[op].0;
            if matches!(op, AluOp::Div | AluOp::Cdiv | AluOp::Mod) && ys.contains(&0) {
                return Ok(());
            }
            let mut setup: Vec<Vec<Slot>> = Vec::new();
            for (i, (&x, &y)) in xs.iter().zip(&ys).enumerate() {
                setup.push(vec![
                    Slot::Const { dest: i as u16, value: x },
                    Slot::Const { dest: 8 + i as u16, value: y },
                ]);
            }
            setup.push(vec![
                Slot::Valu { op, dest: 16, a: 0, b: 8 },
                Slot::MultiplyAdd { dest: 24, a: 0, b: 8, c: 8 },
            ]);
            let (_, core) = run_with_core(&Program::from_bundles(&setup), &mut [0; 8], 100).unwrap();
            for i in 0..8 {
                prop_assert_eq!(Some(core.scratch[16 + i]), python_alu(op, xs[i], ys[i]));
                let madd = (xs[i] as u64 * ys[i] as u64 + ys[i] as u64) % (1 << 32);
                prop_assert_eq!(core.scratch[24 + i] as u64, madd);
            }
        }

        #[test]
        fn vstore_then_vload_round_trips_and_touches_nothing_else(
            at in 0u32..24,
            xs in proptest::collection::vec(any::<u32>(), 8),
        ) {
            let mut bundles: Vec<Vec<Slot>> = xs
                .iter()
                .enumerate()
                .map(|(i, &x)| vec![Slot::Const { dest: i as u16, value: x }])
                .collect();
            bundles.push(vec![Slot::Const { dest: 100, value: at }]);
            bundles.push(vec![Slot::VStore { addr: 100, src: 0 }]);
            bundles.push(vec![Slot::VLoad { dest: 50, addr: 100 }]);
            let mut mem = vec![7u32; 32];
            let (_, core) = run_with_core(&Program::from_bundles(&bundles), &mut mem, 100).unwrap();
            prop_assert_eq!(&core.scratch[50..58], &xs[..]);
            for (i, &m) in mem.iter().enumerate() {
                let inside = (at as usize..at as usize + 8).contains(&i);
                prop_assert_eq!(m, if inside { xs[i - at as usize] } else { 7 });
            }
        }
    }

    fn prog(bundles: &[Vec<Slot>]) -> Program {
        Program::from_bundles(bundles)
    }

    #[test]
    fn reads_happen_before_writes_and_the_later_slot_wins() {
        let p = prog(&[
            vec![
                Slot::Const { dest: 0, value: 5 },
                Slot::Const { dest: 1, value: 7 },
            ],
            // Swap 0 and 1 in one cycle: each reads the old value of the other.
            vec![
                Slot::Alu {
                    op: AluOp::Add,
                    dest: 0,
                    a: 1,
                    b: 2,
                },
                Slot::Alu {
                    op: AluOp::Add,
                    dest: 1,
                    a: 0,
                    b: 2,
                },
                Slot::Alu {
                    op: AluOp::Add,
                    dest: 3,
                    a: 0,
                    b: 0,
                },
                Slot::Alu {
                    op: AluOp::Add,
                    dest: 3,
                    a: 1,
                    b: 1,
                },
            ],
        ]);
        let mut mem = vec![0u32; 4];
        let (stats, core) = run_with_core(&p, &mut mem, 100).unwrap();
        assert_eq!(stats.cycles, 2);
        assert_eq!(&core.scratch[..4], &[7, 5, 0, 14]);
    }

    #[test]
    fn faults_name_the_bundle() {
        let p = prog(&[
            vec![Slot::Const { dest: 0, value: 9 }],
            vec![Slot::Alu {
                op: AluOp::Div,
                dest: 1,
                a: 0,
                b: 2,
            }],
        ]);
        assert_eq!(
            run(&p, &mut [0; 4], 100),
            Err(Fault::DivisionByZero {
                bundle: 1,
                cycle: 2
            })
        );
        let p = prog(&[
            vec![Slot::Const { dest: 0, value: 4 }],
            vec![Slot::Load { dest: 1, addr: 0 }],
        ]);
        assert!(matches!(
            run(&p, &mut [0; 4], 100),
            Err(Fault::MemoryOutOfBounds { address: 4, .. })
        ));
        let p = prog(&[vec![Slot::Jump { target: 0 }]]);
        assert_eq!(
            run(&p, &mut [0; 4], 50),
            Err(Fault::CycleLimit { limit: 50 })
        );
    }

    /// A loop through free bundles spends almost no cycles: the red team's 3 MB program of
    /// empty bundles and one jump ran for 120 s under a cycle bound alone. The bundle bound
    /// stops it, and says so.
    #[test]
    fn a_loop_of_free_bundles_stops_at_the_bundle_bound() {
        let json = format!(
            r#"{{"format": "rdbench-vliw/1", "bundles": [{}{{"flow": [["jump", 0]]}}]}}"#,
            "{}, ".repeat(10_000)
        );
        let p = Program::parse(json.as_bytes()).unwrap();
        assert_eq!(p.cycle_bundles(), 1, "only the jump costs a cycle");
        let bounds = Bounds {
            cycles: 1_000_000,
            bundles: 50_000,
        };
        let started = std::time::Instant::now();
        let err = run_bounded(&p, &mut [0; 4], bounds).unwrap_err();
        assert_eq!(
            err,
            Fault::BundleLimit {
                limit: 50_000,
                cycles: 4
            }
        );
        assert!(err.to_string().contains("50000 executed bundles"), "{err}");
        assert!(started.elapsed().as_secs() < 5);
        // The default bounds of `run` stop it too, long before the cycle bound.
        let err = run(&p, &mut [0; 4], 1_000).unwrap_err();
        assert!(
            matches!(err, Fault::BundleLimit { limit, .. } if limit == 1_000 * DEFAULT_BUNDLES_PER_CYCLE + MAX_BUNDLES as u64),
            "{err}"
        );
        // A cycle-costing loop still stops at the cycle bound first.
        let p = prog(&[vec![Slot::Jump { target: 0 }]]);
        let bounds = Bounds {
            cycles: 1_000,
            bundles: 50_000,
        };
        assert_eq!(
            run_bounded(&p, &mut [0; 4], bounds),
            Err(Fault::CycleLimit { limit: 1_000 })
        );
        // Exactly at the bound is still fine: 3 bundles with a bound of 3.
        let p = Program::parse(
            br#"{"format": "rdbench-vliw/1", "bundles": [{}, {}, {"flow": [["halt"]]}]}"#,
        )
        .unwrap();
        let stats = run_bounded(
            &p,
            &mut [0; 4],
            Bounds {
                cycles: 10,
                bundles: 3,
            },
        )
        .unwrap();
        assert_eq!((stats.cycles, stats.bundles), (1, 3));
        assert!(matches!(
            run_bounded(
                &p,
                &mut [0; 4],
                Bounds {
                    cycles: 10,
                    bundles: 2
                }
            ),
            Err(Fault::BundleLimit {
                limit: 2,
                cycles: 0
            })
        ));
    }

    #[test]
    fn halt_finishes_its_bundle_and_jumps_past_the_end_stop() {
        let p = prog(&[
            vec![
                Slot::Const { dest: 0, value: 3 },
                Slot::Const { dest: 1, value: 1 },
            ],
            vec![Slot::Store { addr: 1, src: 0 }, Slot::Halt],
            vec![Slot::Store { addr: 1, src: 1 }],
        ]);
        let mut mem = vec![0u32; 4];
        assert_eq!(run(&p, &mut mem, 10).unwrap().cycles, 2);
        assert_eq!(mem, vec![0, 3, 0, 0]);
        let p = prog(&[vec![Slot::Jump { target: 1_000_000 }], vec![Slot::Halt]]);
        assert_eq!(run(&p, &mut mem, 10).unwrap().cycles, 1);
    }
}
