//! `monitor`: an NVML (or /proc) timeline for a whole attempt, until Ctrl-C or `--duration`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdbench_core::attempt::Attempt;
use rdbench_core::{Error, Result};
use rdbench_gpu::monitor::{self, MonitorConfig};

use super::Context;
use crate::output;

pub fn monitor(ctx: &Context, dir: &Path, interval_ms: u64, duration: Option<f64>) -> Result<i32> {
    if interval_ms == 0 {
        return Err(Error::Usage("--interval-ms must be at least 1".into()));
    }
    if let Some(d) = duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::Usage(format!(
                "--duration must be a positive number of seconds, not {d}"
            )));
        }
    }
    let attempt = Attempt::open(&ctx.home, dir)?;
    let path = attempt
        .timelines_dir()
        .join(format!("attempt-{}.jsonl", super::attempt::run_stamp()));
    let handle = monitor::start(
        MonitorConfig {
            interval: Duration::from_millis(interval_ms),
            gpu_indices: None,
            processes: None,
        },
        &path,
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let stop = handle.stop_flag();
    let ctrlc = stop.clone();
    // Ctrl-C or SIGTERM ends the recording cleanly, with the summary printed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let started = Instant::now();
    if !ctx.json {
        eprintln!(
            "monitoring ({}) into {}; Ctrl-C to stop",
            handle.source().kind(),
            path.display()
        );
        if let Some(note) = handle.source().note() {
            eprintln!("note: {note}");
        }
    }
    runtime.block_on(async {
        let deadline = duration.map(Duration::from_secs_f64);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if deadline.is_some_and(|d| started.elapsed() >= d) || ctrlc.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
    });
    let summary = handle.stop().map_err(|e| Error::Internal(e.to_string()))?;
    if ctx.json {
        output::json(&serde_json::json!({ "timeline": path, "summary": summary }));
    } else {
        println!(
            "{} samples over {:.1} s written to {}",
            summary.samples,
            summary.duration_s,
            path.display()
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    }
    Ok(0)
}
