//! What several of this crate's test files share.

use std::time::{Duration, Instant};

/// A named way of running one thing, for [`interleaved_medians`].
pub type Variant<'v> = (&'static str, Box<dyn Fn() + 'v>);

/// Runs every variant `n` times after one warm-up round, interleaved (so that a busy machine
/// slows all alike), prints each one's median and p90, and returns the medians in order.
pub fn interleaved_medians(variants: &[Variant], n: usize) -> Vec<Duration> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..=n {
        for (i, (_, f)) in variants.iter().enumerate() {
            let start = Instant::now();
            f();
            // Round 0 warms up.
            if round > 0 {
                times[i].push(start.elapsed());
            }
        }
    }
    let mut medians = Vec::new();
    for ((name, _), mut t) in variants.iter().zip(times) {
        t.sort();
        let median = t[t.len() / 2];
        println!(
            "{name}: median {median:?}, p90 {:?} ({n} runs)",
            t[t.len() * 9 / 10]
        );
        medians.push(median);
    }
    medians
}
