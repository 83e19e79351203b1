//! Differential tests against the original take-home's Python simulator, where its copy is
//! present (`../shared/reference-data/perf-takehome-5452f74`, or `$RDBENCH_TAKEHOME_DIR`) and
//! `python3` runs; each test says it skipped otherwise (the suite must pass without the copy).
//!
//! The Python side is the original `Machine` with its scoring settings (pause and debug off),
//! driven by a small script that only feeds it programs and memory images and reports what
//! it ends with. Nothing of the original is copied here.

use std::io::Write;
use std::process::{Command, Stdio};

use rdbench_core::rng::SplitMix64;
use rdbench_vliw::isa::{AluOp, Slot, ALU_OPS};
use rdbench_vliw::machine::{run_with_core, Fault};
use rdbench_vliw::problem::{Input, Params};
use rdbench_vliw::program::Program;
use serde_json::Value;

mod common;
use common::takehome_dir;

const DRIVER: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
from problem import Machine, DebugInfo
out = []
for case in json.load(sys.stdin):
    m = Machine(case["mem"], case["program"]["bundles"], DebugInfo(scratch_map={}), n_cores=1)
    m.enable_pause = False
    m.enable_debug = False
    try:
        m.run()
        out.append({"cycles": m.cycle, "mem": m.mem, "scratch": m.cores[0].scratch})
    except Exception as e:
        out.append({"error": type(e).__name__})
print(json.dumps(out))
"#;

/// Runs the cases (program, memory image) on the original simulator.
fn run_python(cases: &[(Program, Vec<u32>)]) -> Option<Vec<Value>> {
    let dir = takehome_dir()?;
    // The program's own bytes, not a re-serialization: engine order within a bundle matters
    // when two engines write one word, and serde_json's maps would sort the keys.
    let parts: Vec<String> = cases
        .iter()
        .map(|(p, mem)| {
            format!(
                "{{\"program\": {}, \"mem\": {}}}",
                p.to_json(),
                serde_json::to_string(mem).unwrap()
            )
        })
        .collect();
    let input = format!("[{}]", parts.join(","));
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().ok()?;
    assert!(out.status.success(), "the Python driver failed");
    Some(serde_json::from_slice(&out.stdout).expect("driver output is JSON"))
}

fn compare(cases: &[(Program, Vec<u32>)], python: &[Value]) {
    for (i, ((program, mem), theirs)) in cases.iter().zip(python).enumerate() {
        let mut mem = mem.clone();
        let ours = run_with_core(program, &mut mem, 1 << 24);
        match (ours, theirs.get("error")) {
            (Ok((stats, core)), None) => {
                assert_eq!(
                    stats.cycles,
                    theirs["cycles"].as_u64().unwrap(),
                    "case {i}: cycles"
                );
                let their_mem: Vec<u32> = serde_json::from_value(theirs["mem"].clone()).unwrap();
                assert_eq!(mem, their_mem, "case {i}: memory");
                let their_scratch: Vec<u32> =
                    serde_json::from_value(theirs["scratch"].clone()).unwrap();
                assert_eq!(core.scratch, their_scratch, "case {i}: scratch");
            }
            (Err(fault), Some(kind)) => {
                let want = match fault {
                    Fault::DivisionByZero { .. } => "ZeroDivisionError",
                    Fault::MemoryOutOfBounds { .. } => "IndexError",
                    other => panic!("case {i}: unexpected fault {other}"),
                };
                assert_eq!(kind.as_str().unwrap(), want, "case {i}: {fault}");
            }
            (ours, theirs) => panic!("case {i}: ours {ours:?}, theirs {theirs:?}"),
        }
    }
}

#[test]
fn the_baseline_at_the_original_size_matches_the_original_simulator() {
    let p = Params::original();
    let program = rdbench_vliw::baseline::baseline(&p).unwrap();
    let cases = vec![(program, Input::generate(&p, 7).memory_image(&p))];
    let Some(python) = run_python(&cases) else {
        eprintln!("skipped: the original take-home's copy or python3 is not here");
        return;
    };
    assert_eq!(python[0]["cycles"], 147_734);
    compare(&cases, &python);
}

/// Registers of the random programs: 0..64 general (vectors at 0..=56), 64..72 shift amounts
/// (set once, small, so that Python never shifts by billions), 72..80 memory addresses.
const GENERAL: u64 = 64;
const SHIFTS: u16 = 64;
const ADDRS: u16 = 72;

/// Draws for the random programs.
struct Draw<'a>(&'a mut SplitMix64);

impl Draw<'_> {
    fn n(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }

    /// A general register; few of them, so that slots of one bundle often write one word.
    fn g(&mut self) -> u16 {
        (self.n(12) * 5 % GENERAL) as u16
    }
}

fn random_program(rng: &mut SplitMix64, mem_len: usize) -> Program {
    let mut r = Draw(rng);
    // A quarter of the programs may divide (by registers that are often zero), a quarter
    // may address past memory's end; the rest should mostly finish.
    let may_divide = r.n(4) == 0;
    let may_overrun = r.n(4) == 0;
    let pick_op = |r: &mut Draw| {
        let (op, _) = ALU_OPS[r.n(13) as usize];
        match op {
            AluOp::Div | AluOp::Cdiv | AluOp::Mod if !may_divide => AluOp::Add,
            op => op,
        }
    };
    let mut bundles = Vec::new();
    // Setup: shift amounts 0..40 and addresses inside memory (some near its end).
    let mut setup = Vec::new();
    for k in 0..8 {
        setup.push(Slot::Const {
            dest: SHIFTS + k,
            value: r.n(40) as u32,
        });
        let top = if k < 2 && may_overrun {
            mem_len as u64 + 4
        } else {
            mem_len as u64 - 8
        };
        setup.push(Slot::Const {
            dest: ADDRS + k,
            value: r.n(top) as u32,
        });
    }
    for chunk in setup.chunks(2) {
        bundles.push(chunk.to_vec());
    }
    let n = 20 + r.n(40) as usize;
    for b in 0..n {
        let mut slots = Vec::new();
        // Few destinations, so that slots of one bundle often write the same word.
        let v = |x: u16| x.min(56);
        let engines = 1 + r.n(4);
        for _ in 0..engines {
            match r.n(6) {
                0 => {
                    for _ in 0..1 + r.n(4) {
                        let op = pick_op(&mut r);
                        let b_reg = if matches!(op, AluOp::Shl | AluOp::Shr) {
                            SHIFTS + r.n(8) as u16
                        } else {
                            r.g()
                        };
                        slots.push(Slot::Alu {
                            op,
                            dest: r.g(),
                            a: r.g(),
                            b: b_reg,
                        });
                    }
                }
                1 => match r.n(3) {
                    0 => slots.push(Slot::VBroadcast {
                        dest: v(r.g()),
                        src: r.g(),
                    }),
                    1 => slots.push(Slot::MultiplyAdd {
                        dest: v(r.g()),
                        a: v(r.g()),
                        b: v(r.g()),
                        c: v(r.g()),
                    }),
                    _ => {
                        let op = pick_op(&mut r);
                        let b_reg = if matches!(op, AluOp::Shl | AluOp::Shr) {
                            SHIFTS
                        } else {
                            v(r.g())
                        };
                        slots.push(Slot::Valu {
                            op,
                            dest: v(r.g()),
                            a: v(r.g()),
                            b: b_reg,
                        });
                    }
                },
                2 => match r.n(3) {
                    0 => slots.push(Slot::Load {
                        dest: r.g(),
                        addr: ADDRS + r.n(8) as u16,
                    }),
                    1 => slots.push(Slot::VLoad {
                        dest: v(r.g()),
                        addr: ADDRS + r.n(8) as u16,
                    }),
                    _ => slots.push(Slot::Const {
                        dest: r.g(),
                        value: r.n(1 << 32) as u32,
                    }),
                },
                3 => match r.n(2) {
                    0 => slots.push(Slot::Store {
                        addr: ADDRS + r.n(8) as u16,
                        src: r.g(),
                    }),
                    _ => slots.push(Slot::VStore {
                        addr: ADDRS + r.n(8) as u16,
                        src: v(r.g()),
                    }),
                },
                4 => match r.n(5) {
                    0 => slots.push(Slot::Select {
                        dest: r.g(),
                        cond: r.g(),
                        a: r.g(),
                        b: r.g(),
                    }),
                    1 => slots.push(Slot::AddImm {
                        dest: r.g(),
                        a: r.g(),
                        imm: r.n(1 << 32) as u32,
                    }),
                    2 => slots.push(Slot::VSelect {
                        dest: v(r.g()),
                        cond: v(r.g()),
                        a: v(r.g()),
                        b: v(r.g()),
                    }),
                    3 => slots.push(Slot::CondJump {
                        cond: r.g(),
                        target: (bundles.len() + 1 + r.n(4) as usize) as u32,
                    }),
                    _ => slots.push(Slot::CoreId { dest: r.g() }),
                },
                _ => {
                    if b + 1 == n && r.n(2) == 0 {
                        slots.push(Slot::Halt);
                    }
                }
            }
        }
        // Within every engine's slot limit, as the format requires.
        let mut used = std::collections::HashMap::new();
        slots.retain(|s| {
            let n = used.entry(s.engine()).or_insert(0usize);
            *n += 1;
            *n <= s.engine().slot_limit()
        });
        bundles.push(slots);
    }
    let program = Program::from_bundles(&bundles);
    // Through the file format, so that the same bytes drive both simulators.
    Program::parse(program.to_json().as_bytes()).expect("random programs are valid")
}

#[test]
fn random_programs_end_the_same_on_both_simulators() {
    let p = Params::tiny();
    let mut rng = SplitMix64(0xD1FF);
    let cases: Vec<(Program, Vec<u32>)> = (0..400)
        .map(|i| {
            let mem = Input::generate(&p, i).memory_image(&p);
            (random_program(&mut rng, mem.len()), mem)
        })
        .collect();
    let Some(python) = run_python(&cases) else {
        eprintln!("skipped: the original take-home's copy or python3 is not here");
        return;
    };
    let faults = python.iter().filter(|v| v.get("error").is_some()).count();
    eprintln!("{} random programs, {faults} of them fault", cases.len());
    // Both ends are exercised: most programs finish, some fault.
    assert!(faults > 10 && faults < 300, "{faults} faults of 400");
    compare(&cases, &python);
}
