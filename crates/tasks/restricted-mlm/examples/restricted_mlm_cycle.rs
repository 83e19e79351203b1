//! Start and reference through the `Task` interface on a fresh cache (a new secret), with
//! times: `cargo run --example restricted_mlm_cycle -- tiny [cache folder]`.
use std::time::Instant;

use rdbench_core::task::{profile_of, ScoreOutcome, ScoreRequest, Solution, Task};

fn main() {
    let profile = std::env::args().nth(1).unwrap_or_else(|| "tiny".into());
    let tmp = tempfile::tempdir().unwrap();
    let cache = std::env::args()
        .nth(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("cache"));
    let task = rdbench_task_restricted_mlm::task(rdbench_reference_restricted_mlm::REFERENCE);
    let profile = profile_of(&task, &profile).unwrap();
    let mut raws = Vec::new();
    for sol in [Solution::Starting, Solution::Reference] {
        let dir = tmp.path().join(sol.as_str());
        let t = Instant::now();
        task.install_solution(sol, &profile, &cache, &dir).unwrap();
        let installed = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let req = ScoreRequest {
            profile: profile.clone(),
            submission_dir: dir.clone(),
            private_dir: dir.join("private"),
            cache_dir: cache.clone(),
            samples_path: dir.join("private/samples.json"),
            seed: 1,
            execution: Default::default(),
        };
        match task.score(&req).unwrap() {
            ScoreOutcome::Valid { raw, headline, .. } => {
                println!(
                    "{}: raw {raw:.4}, {headline}; install (training) {installed:.1} s, scoring {:.1} s",
                    sol.as_str(),
                    t.elapsed().as_secs_f64()
                );
                raws.push(raw);
            }
            other => panic!("{other:?}"),
        }
    }
    println!("gap start - reference: {:.4}", raws[0] - raws[1]);
}
