//! Prints the cycle counts of the shipped programs (start, reference, fastest) per profile,
//! simulated on one input and checked: `cargo run --release --example tree_traversal_programs`.

use rdbench_core::task::Solution;
use rdbench_task_tree_traversal::{judge, solution_program, Verdict};
use rdbench_vliw::problem::Params;

fn main() {
    for (profile, params) in [("tiny", Params::tiny()), ("full", Params::variant())] {
        let start = solution_program(Solution::Starting, profile).expect("baseline builds");
        let start_cycles = start.cycle_bundles() as u64;
        for solution in [Solution::Starting, Solution::Reference, Solution::Fastest] {
            let t = std::time::Instant::now();
            let program = solution_program(solution, profile).expect("builds");
            let built = t.elapsed().as_secs_f64();
            let verdict = judge(&program, &params, start_cycles, 0x5eed);
            // What each engine's slot count alone would take: the program's lower bounds.
            let bounds: Vec<String> = rdbench_vliw::isa::SLOT_LIMITS
                .iter()
                .map(|(engine, limit)| {
                    let n = program
                        .slots
                        .iter()
                        .filter(|s| s.engine() == *engine)
                        .count();
                    format!("{} {}", engine.name(), n.div_ceil(*limit))
                })
                .collect();
            println!(
                "{profile:>8} {:>10}: engine bounds: {}",
                solution.as_str(),
                bounds.join(", ")
            );
            match verdict {
                Verdict::Correct(c) => println!(
                    "{profile:>8} {:>10}: {:>8} cycles on every input: {:?} (built in {built:.2} s)",
                    solution.as_str(),
                    c.iter().max().unwrap(),
                    c.iter().all(|&x| x == c[0])
                ),
                Verdict::Invalid(kind, why) => {
                    println!("{profile:>8} {:>10}: INVALID {kind}: {why}", solution.as_str())
                }
            }
        }
    }
}
