//! The start and the reference over several installations' secrets: their raw scores, win
//! rates and qualities, with the time each step took. What `docs/finetune-qa.md` reports.
//!
//! ```text
//! cargo run --release -p rdbench-task-finetune-qa --example instances -- [N] [FIRST_SEED]
//! ```

use rdbench_core::task_secret::TaskSecret;
use rdbench_reference_finetune_qa as reference;
use rdbench_task_finetune_qa::{evaluate, policy, prep, profile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u8 = args.next().map_or(Ok(3), |s| s.parse())?;
    let first: u8 = args.next().map_or(Ok(1), |s| s.parse())?;
    let spec = profile::tiny();
    let (mut starts, mut refs) = (Vec::new(), Vec::new());
    for s in first..first + n {
        let cache = tempfile::tempdir()?;
        std::fs::create_dir_all(cache.path().join("finetune-qa"))?;
        let hex: String = std::iter::repeat_n(format!("{s:02x}"), 32).collect();
        std::fs::write(TaskSecret::path(cache.path(), "finetune-qa"), hex)?;
        let t = std::time::Instant::now();
        let (at, inst) = prep::ensure_prepared(&spec, cache.path())?;
        let report = at.report()?;
        let prep_s = t.elapsed().as_secs_f64();
        let world = inst.world();
        let heldout = at.heldout()?;
        let score = |path: &std::path::Path| -> Result<_, Box<dyn std::error::Error>> {
            let gpt = prep::load_policy(&spec, path)?;
            let responses = policy::generate(
                &policy::engine(&gpt)?,
                &world,
                &heldout.prompts,
                &policy::GenerationConfig::greedy(spec.max_new_tokens),
                inst.scoring,
            )?;
            Ok(evaluate(&world, &heldout, &responses))
        };
        let start = score(&at.base())?;
        let t = std::time::Instant::now();
        let ref_path = reference::ensure(&spec, &at, &inst)?;
        let ref_s = t.elapsed().as_secs_f64();
        let reference = score(&ref_path)?;
        println!(
            "secret {s}: prep {prep_s:.0} s (base loss {:.3}, sft {:.3}; quality base {:.3} sft {:.3}); \
             start raw {:.4} (vs base {:.3}, vs sft {:.3}, q {:.3}); reference {ref_s:.0} s raw {:.4} \
             (vs base {:.3}, vs sft {:.3}, q {:.3}, words {:.2})",
            report.base_loss, report.sft_loss, report.base_quality, report.sft_quality,
            start.raw, start.win_rate_vs_base, start.win_rate_vs_sft, start.mean_quality,
            reference.raw, reference.win_rate_vs_base, reference.win_rate_vs_sft,
            reference.mean_quality, reference.mean_words,
        );
        starts.push(start.raw);
        refs.push(reference.raw);
    }
    let stats = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0))
            .sqrt();
        (m, sd)
    };
    let ((sm, ssd), (rm, rsd)) = (stats(&starts), stats(&refs));
    println!(
        "start {sm:.4} ± {ssd:.4} (sd), reference {rm:.4} ± {rsd:.4}, gap {:.4}",
        rm - sm
    );
    Ok(())
}
