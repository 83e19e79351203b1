//! The host side of a sample, from /proc: CPU busy share (a difference of /proc/stat counters),
//! memory in use, and the resident memory of watched processes. The parsers take text, so they
//! are tested without a /proc.

use super::model::CpuSample;

/// CPU time counters from the first line of /proc/stat: (busy, total) in jiffies.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (used, total) bytes from /proc/meminfo; used = MemTotal - MemAvailable.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| {
        // Kernels before 3.14 have no MemAvailable.
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    })?;
    Some((total.saturating_sub(available), total))
}

/// VmRSS in bytes from a `/proc/<pid>/status` text.
pub fn parse_status_rss(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Host sampler over /proc. CPU busy is a difference of counters, so it keeps the last reading.
#[derive(Debug, Clone)]
pub struct ProcSampler {
    pids: Option<Vec<u32>>,
    prev_stat: Option<(u64, u64)>,
    last_busy_pct: f64,
}

impl ProcSampler {
    pub fn new(pids: Option<Vec<u32>>) -> Self {
        let prev_stat = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t));
        Self {
            pids,
            prev_stat,
            last_busy_pct: 0.0,
        }
    }

    /// One host sample; `None` where /proc is not there (not Linux).
    pub fn sample(&mut self) -> Option<CpuSample> {
        let (mem_used, mem_total) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo(&t))?;
        if let Some((busy, total)) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))
        {
            if let Some((b0, t0)) = self.prev_stat {
                let dt = total.saturating_sub(t0);
                // Counters tick at USER_HZ (100 Hz); over a short interval nothing may have
                // ticked, and then the previous value is the best estimate.
                if dt > 0 {
                    let db = busy.saturating_sub(b0).min(dt);
                    self.last_busy_pct = 100.0 * db as f64 / dt as f64;
                }
            }
            self.prev_stat = Some((busy, total));
        }
        let process_rss_bytes = self.pids.as_ref().map(|pids| {
            pids.iter()
                .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
                .filter_map(|t| parse_status_rss(&t))
                .sum()
        });
        Some(CpuSample {
            cpu_busy_pct: self.last_busy_pct,
            mem_used_bytes: mem_used,
            mem_total_bytes: mem_total,
            process_rss_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn proc_parsers() {
        let stat = "cpu  100 5 50 800 20 1 2 3 7 0\ncpu0 1 2 3 4\n";
        // total = 100+5+50+800+20+1+2+3 = 981; idle = 820.
        assert_eq!(parse_proc_stat(stat), Some((161, 981)));
        let mi = "MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:    512 kB\n";
        assert_eq!(parse_meminfo(mi), Some((1536 * 1024, 2048 * 1024)));
        let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 5 kB\n";
        assert_eq!(parse_meminfo(old), Some((80 * 1024, 100 * 1024)));
        assert_eq!(
            parse_status_rss("Name: x\nVmRSS:\t  12 kB\n"),
            Some(12 * 1024)
        );
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn proc_sampler_plausible_here() {
        let mut p = ProcSampler::new(Some(vec![std::process::id()]));
        // Burn a little CPU so the counters move.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let c = p.sample().expect("this machine has /proc");
        assert!(c.mem_total_bytes > 0);
        assert!(c.mem_used_bytes > 0 && c.mem_used_bytes <= c.mem_total_bytes);
        assert!(
            (0.0..=100.0).contains(&c.cpu_busy_pct),
            "{}",
            c.cpu_busy_pct
        );
        let rss = c.process_rss_bytes.expect("our own pid");
        assert!(rss > 1 << 20, "rss {rss}");
        assert_eq!(
            ProcSampler::new(None).sample().unwrap().process_rss_bytes,
            None
        );
    }
}
