//! The token ledger: what an attempt has spent, kept across proxy runs and crashes.
//!
//! The file is append-only JSONL, one record a line, each line written whole and fsynced
//! before the proxy acts on it:
//!
//! ```text
//! {"op":"reserve","id":7,"tokens":4400}   before the request is forwarded
//! {"op":"settle","id":7,"tokens":912}     after the reply: what it really cost
//! ```
//!
//! Spent = the sum of settled tokens + every reservation not (yet) settled, so a proxy killed
//! between forwarding and settling charges the whole reservation, never less than was used.
//! On open, such open reservations are closed with a `settle` record of their full amount.
//!
//! A crash can leave only the last line torn (a write is cut short; no later line exists
//! because each write waits for the previous fsync). A last line without its newline is
//! therefore dropped and the file truncated before it: if it was a reservation, the request
//! was never forwarded; if it was a settlement, its reservation is charged in full. Any other
//! line that does not parse, or a settlement of an unknown or settled id, is corruption the
//! proxy cannot account for: opening fails with [`ProxyError::LedgerCorrupt`] naming the line.
//!
//! The file is locked (`flock`, exclusive) while a proxy uses it: two proxies on one ledger
//! would each think the budget was theirs.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::ProxyError;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    Reserve { id: u64, tokens: u64 },
    Settle { id: u64, tokens: u64 },
}

/// An open, locked ledger file.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    path: PathBuf,
    next_id: u64,
    /// Settled tokens, this run and all earlier ones.
    settled: u64,
    /// Reservations of this run not settled yet: id -> tokens.
    open: HashMap<u64, u64>,
}

impl Ledger {
    /// Opens (or creates, mode 0600) and locks the ledger, reads what was spent, drops a torn
    /// last line and closes reservations a killed proxy left open.
    pub fn open(path: &Path) -> Result<Ledger, ProxyError> {
        let io = |source| ProxyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        if created {
            // The new file's name must survive a crash too.
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        file.try_lock_exclusive()
            .map_err(|_| ProxyError::LedgerLocked(path.to_path_buf()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(
                ledger = %path.display(),
                bytes = text.len() - whole,
                "dropping a torn last ledger line"
            );
            file.set_len(whole as u64).map_err(io)?;
            // Appends go to the new end: the file is in append mode.
            file.sync_all().map_err(io)?;
        }
        let mut reserved: HashMap<u64, u64> = HashMap::new();
        let mut settled = 0u64;
        let mut next_id = 0u64;
        let lines = text[..whole]
            .strip_suffix(b"\n")
            .map(|body| body.split(|&b| b == b'\n'));
        for (index, line) in lines.into_iter().flatten().enumerate() {
            let corrupt = |message: String| ProxyError::LedgerCorrupt {
                path: path.to_path_buf(),
                line: index + 1,
                message,
            };
            let record: Record =
                serde_json::from_slice(line).map_err(|e| corrupt(format!("not a record: {e}")))?;
            match record {
                Record::Reserve { id, tokens } => {
                    if reserved.insert(id, tokens).is_some() {
                        return Err(corrupt(format!("reservation {id} appears twice")));
                    }
                    next_id = next_id.max(id + 1);
                }
                Record::Settle { id, tokens } => {
                    if reserved.remove(&id).is_none() {
                        return Err(corrupt(format!(
                            "settles {id}, which is not an open reservation"
                        )));
                    }
                    settled = settled.saturating_add(tokens);
                }
            }
        }
        let mut ledger = Ledger {
            file,
            path: path.to_path_buf(),
            next_id,
            settled,
            open: HashMap::new(),
        };
        // Reservations a killed proxy never settled: charged in full, and closed so the next
        // open does not count them again.
        let mut left: Vec<_> = reserved.into_iter().collect();
        left.sort_unstable();
        for (id, tokens) in left {
            ledger.append(&Record::Settle { id, tokens })?;
            ledger.settled = ledger.settled.saturating_add(tokens);
        }
        Ok(ledger)
    }

    /// Tokens spent: settled plus reserved and not settled.
    pub fn spent(&self) -> u64 {
        self.open
            .values()
            .fold(self.settled, |sum, &t| sum.saturating_add(t))
    }

    /// Records a reservation (durably) and returns its id.
    pub fn reserve(&mut self, tokens: u64) -> Result<u64, ProxyError> {
        let id = self.next_id;
        self.append(&Record::Reserve { id, tokens })?;
        self.next_id += 1;
        self.open.insert(id, tokens);
        Ok(id)
    }

    /// Replaces a reservation by what the call cost. In memory the charge holds even when the
    /// write fails: the file then still shows the open reservation, charged in full on reopen.
    pub fn settle(&mut self, id: u64, tokens: u64) -> Result<(), ProxyError> {
        if self.open.remove(&id).is_none() {
            return Ok(());
        }
        self.settled = self.settled.saturating_add(tokens);
        self.append(&Record::Settle { id, tokens })
    }

    /// One whole line per write, fsynced before returning.
    fn append(&mut self, record: &Record) -> Result<(), ProxyError> {
        let mut line = serde_json::to_vec(record).expect("a record serializes");
        line.push(b'\n');
        let io = |source| ProxyError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_survives_reopen_and_open_reservations_are_charged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        {
            let mut ledger = Ledger::open(&path).unwrap();
            let a = ledger.reserve(100).unwrap();
            ledger.settle(a, 30).unwrap();
            let _killed = ledger.reserve(50).unwrap();
            assert_eq!(ledger.spent(), 80);
        }
        let mut ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.spent(), 80);
        let b = ledger.reserve(10).unwrap();
        assert_eq!(b, 2, "ids continue after the reopened file's");
        ledger.settle(b, 10).unwrap();
        drop(ledger);
        assert_eq!(Ledger::open(&path).unwrap().spent(), 90);
    }

    #[test]
    fn torn_last_line_is_dropped_and_bad_lines_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(
            &path,
            "{\"op\":\"reserve\",\"id\":0,\"tokens\":40}\n{\"op\":\"settle\",\"id\":0,\"tok",
        )
        .unwrap();
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger.spent(),
            40,
            "the torn settlement charges the reservation"
        );
        drop(ledger);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("\"tok\n"));

        std::fs::write(
            &path,
            "garbage\n{\"op\":\"reserve\",\"id\":0,\"tokens\":1}\n",
        )
        .unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(
            matches!(err, ProxyError::LedgerCorrupt { line: 1, .. }),
            "{err}"
        );

        std::fs::write(&path, "{\"op\":\"settle\",\"id\":3,\"tokens\":1}\n").unwrap();
        assert!(matches!(
            Ledger::open(&path).unwrap_err(),
            ProxyError::LedgerCorrupt { line: 1, .. }
        ));
    }

    #[test]
    fn a_second_proxy_cannot_share_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let _first = Ledger::open(&path).unwrap();
        assert!(matches!(
            Ledger::open(&path).unwrap_err(),
            ProxyError::LedgerLocked(_)
        ));
    }
}
