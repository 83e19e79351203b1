//! The host side of a sample, from /proc: CPU busy share (a difference of /proc/stat counters),
//! memory in use, the watched processes (a process tree found again at each sample) and their
//! resident memory. The parsers take text, so they are tested without a /proc.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{CpuSample, Watched};

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

/// (pid, parent pid, process group) from a `/proc/<pid>/stat` text. The command name in
/// parentheses may itself hold spaces and parentheses, so the fields are counted from the
/// last `)`.
pub fn parse_stat_ids(text: &str) -> Option<(u32, u32, u32)> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pid, ppid, pgrp))
}

/// The processes of a tree: `root`, its descendants by parent and the members of its process
/// group, from (pid, parent, group) triples.
pub fn tree_of(root: u32, table: &[(u32, u32, u32)]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(pid, ppid, _) in table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = BTreeSet::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        if found.insert(pid) {
            next.extend(children.get(&pid).into_iter().flatten());
        }
    }
    found.extend(
        table
            .iter()
            .filter(|&&(_, _, pgrp)| pgrp == root)
            .map(|&(pid, _, _)| pid),
    );
    found.into_iter().collect()
}

/// Every process's (pid, parent, group) now. A process that exits during the scan is skipped.
fn process_table() -> Vec<(u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat_ids(&t))
        .collect()
}

impl Watched {
    /// The pids this stands for now.
    pub fn resolve(&self) -> Vec<u32> {
        match self {
            Watched::Pids { pids } => pids.clone(),
            Watched::TreeOf { root } => tree_of(*root, &process_table()),
        }
    }
}

/// Host sampler over /proc. CPU busy is a difference of counters, so it keeps the last reading.
#[derive(Debug, Clone)]
pub struct ProcSampler {
    prev_stat: Option<(u64, u64)>,
    last_busy_pct: f64,
}

impl Default for ProcSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcSampler {
    pub fn new() -> Self {
        let prev_stat = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t));
        Self {
            prev_stat,
            last_busy_pct: 0.0,
        }
    }

    /// One host sample, with the summed resident memory of `pids` when given; `None` where
    /// /proc is not there (not Linux).
    pub fn sample(&mut self, pids: Option<&[u32]>) -> Option<CpuSample> {
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
        let process_rss_bytes = pids.map(|pids| {
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
    fn stat_ids_are_read_past_an_awkward_command_name() {
        let stat = "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat_ids(stat), Some((4242, 17, 4242)));
        assert_eq!(parse_stat_ids("garbage"), None);
    }

    #[test]
    fn a_tree_is_descendants_and_the_group() {
        // 10 is the root (a group leader); 11 its child; 12 a grandchild that left the group
        // (setsid); 13 a group member reparented elsewhere; 20 unrelated.
        let table = [
            (10, 1, 10),
            (11, 10, 10),
            (12, 11, 12),
            (13, 1, 10),
            (20, 1, 20),
        ];
        assert_eq!(tree_of(10, &table), vec![10, 11, 12, 13]);
    }

    #[test]
    fn the_tree_of_a_real_process_holds_its_children() {
        let child = rdbench_runner::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let tree = Watched::TreeOf {
            root: std::process::id(),
        }
        .resolve();
        let pid = child.pid();
        drop(child); // killed and reaped
        assert!(tree.contains(&std::process::id()), "{tree:?}");
        assert!(tree.contains(&pid), "{tree:?}");
    }

    #[test]
    fn proc_sampler_plausible_here() {
        let mut p = ProcSampler::new();
        // Burn a little CPU so the counters move.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let c = p
            .sample(Some(&[std::process::id()]))
            .expect("this machine has /proc");
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
            ProcSampler::new().sample(None).unwrap().process_rss_bytes,
            None
        );
    }
}
