//! The attempt's score log: append-only JSON lines, one record per line, chained and
//! authenticated.
//!
//! # Records
//!
//! Each line is one JSON object: a [`ScoreEntry`] (one scoring call), or a [`Seal`] (tagged
//! `"record":"seal"`) that `finish` appends last. Every record also carries
//!
//! - `seq`: 1, 2, 3… in file order;
//! - `prev`: the `mac` of the record before it (64 zeros for the first);
//! - `mac`: hex HMAC-SHA256, under the log's key, of the exact bytes of the record's JSON
//!   without `mac`. The writer serializes the record once, MACs those bytes, and splices
//!   `,"mac":"…"}` over the closing brace; the reader cuts that fixed-length suffix off and
//!   MACs the same bytes. Nothing is re-serialized to check a MAC, so key order, float
//!   formatting and unicode escapes cannot make a reader and a writer disagree.
//!
//! The log's key is HMAC(`InstallationKey::derive("score-log/v1")`, log id), the log id being
//! the attempt id, so a record (or a whole log) copied from another attempt does not verify.
//!
//! # What the chain detects
//!
//! [`ScoreLog::read_verified`] walks the records and reports the first one that does not follow:
//! a bad MAC (an edited record, or one forged without the key), a missing MAC (written before
//! logs were chained, or by hand), a `seq` out of order (a line deleted, inserted, duplicated or
//! moved), a `prev` that is not the previous record's MAC (a record spliced in from a log with
//! the same key), or a damaged line that no crash produces. Entries after the break are still
//! returned, marked untrusted, and never count ([`select_final`]).
//!
//! # Crashes and concurrent scorers
//!
//! Every append takes an exclusive `flock` on the log, reads it, chains from the last record
//! whose MAC verifies, writes one whole line with a single `write` on an `O_APPEND` descriptor
//! and `fsync`s it. A writer killed mid-write leaves a torn last line: a proper prefix of a
//! record, without its newline. It is reported as a warning, not as tampering; the next append
//! fences it off with a newline and chains from the record before it, so the chain stays intact.
//!
//! # Deadline and seal
//!
//! An entry logged after the attempt's deadline carries `late: true` (the caller sets it from
//! [`Attempt::is_late`](crate::attempt::Attempt::is_late)). [`ScoreLog::seal`] appends the
//! seal under the same lock as appends; any entry appended after a seal is forced late by the
//! log itself, so a scorer racing `finish` cannot add an entry that counts. Late entries are
//! shown by `log` and never selected.
//!
//! # What it does not detect
//!
//! - Truncation of the tail before a seal: deleting the last records (or cutting the last line
//!   short, which looks like a torn write) leaves a valid shorter chain. After a seal, removing
//!   the seal or anything before it shows; `finish` should also compare the attempt record's
//!   `finished_at` with the presence of a seal.
//! - Replacing the whole log with an older copy of itself (a rollback), for the same reason.
//! - Anything done by someone who can read the installation key. In the protected deployment
//!   the home belongs to a scoring user the agent cannot read, and the chain shows tampering.
//!   In same-user mode the agent can read the key, so the chain there only detects accidents
//!   (a stray edit, a bad merge, a disk fault), not a forger.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs2::FileExt;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::outcome::InvalidKind;
use crate::secret::{hmac_sha256, HmacSha256, InstallationKey};
use crate::task::Direction;
use crate::{Error, Result};

/// The label of the score log's key, derived from the installation key.
pub const LOG_KEY_LABEL: &str = "score-log/v1";

/// The `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the writer splices over a record's closing brace: `,"mac":"<64 hex>"}`.
const MAC_OPEN: &[u8] = b",\"mac\":\"";
const MAC_CLOSE: &[u8] = b"\"}";
const MAC_HEX_LEN: usize = 64;
const MAC_SUFFIX_LEN: usize = MAC_OPEN.len() + MAC_HEX_LEN + MAC_CLOSE.len();

/// Keys the log adds to a record; a record's own fields must not use them.
const RESERVED_KEYS: [&str; 4] = ["seq", "prev", "mac", "record"];

/// One scoring call, valid or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreEntry {
    pub timestamp: DateTime<Utc>,
    pub task: String,
    pub profile: String,
    /// False when the submission was invalid; `raw` and `normalized` are then absent (NaN).
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f64>,
    /// Why the submission is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The class of an invalid submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<InvalidKind>,
    /// The task's one-line summary of a valid run (e.g. the median and its noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Correct where it ran, but not measured (the CPU emulator): never a score.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unscored: bool,
    /// SHA-256 of the submission files the scorer read.
    pub submission_sha256: String,
    /// Device fingerprint id the score was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Calibration used to normalize: (start, reference) raw scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<[f64; 2]>,
    /// Wall time of the whole scoring call, seconds.
    pub wall_s: f64,
    /// Task-specific measurements.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Summary of the GPU (or /proc) monitor during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<serde_json::Value>,
    /// Raw samples file, relative to the attempt's private folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_file: Option<String>,
    /// Monitor timeline file, relative to the attempt's private folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_file: Option<String>,
    /// Logged after the attempt's deadline or after it was finished: shown, never counted.
    /// The log sets it itself on any entry appended after a seal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// The caller's idempotency key (`score --key`): a second call with a key already logged
    /// for the attempt gets this entry back instead of a second run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ScoreKey>,
}

/// An idempotency key of a scoring call: 1 to [`ScoreKey::MAX_CHARS`] characters, none a
/// control character. A platform whose tool call may be retried (a timeout, a scaffold that
/// runs a tool twice) sends one fresh key per call, so the retry is answered from the log
/// rather than scored, and logged, twice. Checked wherever one is made: the command line and
/// the service's wire alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScoreKey(String);

impl ScoreKey {
    /// The longest key, in characters.
    pub const MAX_CHARS: usize = 128;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ScoreKey {
    type Error = String;
    fn try_from(key: String) -> std::result::Result<Self, String> {
        if crate::template::is_short_label(&key, Self::MAX_CHARS) {
            Ok(ScoreKey(key))
        } else {
            Err(format!(
                "a scoring key is 1 to {} printable characters",
                Self::MAX_CHARS
            ))
        }
    }
}

impl std::str::FromStr for ScoreKey {
    type Err = String;
    fn from_str(key: &str) -> std::result::Result<Self, String> {
        ScoreKey::try_from(key.to_string())
    }
}

impl From<ScoreKey> for String {
    fn from(key: ScoreKey) -> String {
        key.0
    }
}

/// The final record of a finished attempt. Appending after it is still possible, but every
/// entry appended after it is late.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seal {
    /// When `finish` sealed the log.
    pub finished_at: DateTime<Utc>,
    /// The `seq` of the last record before the seal (0 for an empty log).
    pub last_seq: u64,
    /// How many entries counted (trusted, not late) when the log was sealed.
    pub counted: usize,
    /// How the final entry was chosen.
    pub selection: Selection,
    /// The `seq` of the entry chosen as the final score, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_seq: Option<u64>,
}

/// A problem found while reading the log that is not tampering: a torn line that was skipped,
/// or an authenticated record this version cannot use.
#[derive(Debug, Clone, PartialEq)]
pub struct LogWarning {
    pub line: usize,
    pub message: String,
}

/// Why a record breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakReason {
    /// The MAC does not match the record: edited, or forged without the key.
    BadMac,
    /// No MAC: written before logs were chained, or not by rdbench.
    MissingMac,
    /// The record's `seq` is not the one after the previous record's: a line was deleted,
    /// inserted, duplicated or moved.
    UnexpectedSeq { expected: u64, found: u64 },
    /// `prev` is not the previous record's MAC: a record from another log with the same key.
    PrevMismatch,
    /// An authenticated record of a kind this version does not know.
    UnknownRecord(String),
    /// The line is not JSON and not what a crash mid-write leaves.
    Damaged(String),
}

impl std::fmt::Display for BreakReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BreakReason::BadMac => write!(f, "bad MAC (the record was edited or forged)"),
            BreakReason::MissingMac => write!(
                f,
                "no MAC (written before score logs were chained, or not by rdbench)"
            ),
            BreakReason::UnexpectedSeq { expected, found } => write!(
                f,
                "seq {found} where {expected} was expected (a record was deleted, inserted or moved)"
            ),
            BreakReason::PrevMismatch => write!(
                f,
                "prev is not the previous record's MAC (a record spliced in from another log)"
            ),
            BreakReason::UnknownRecord(kind) => {
                write!(f, "a record of unknown kind {kind:?} (a newer rdbench?)")
            }
            BreakReason::Damaged(why) => write!(f, "damaged line: {why}"),
        }
    }
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// 1-based line number in the file.
    pub line: usize,
    /// The record's `seq`, when it has a readable one.
    pub seq: Option<u64>,
    pub reason: BreakReason,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// One entry as read from the log, with what the chain says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEntry {
    pub entry: ScoreEntry,
    /// 1-based line number in the file.
    pub line: usize,
    /// The record's `seq`, when it has a readable one.
    pub seq: Option<u64>,
    /// In the intact part of the chain, before any break.
    pub trusted: bool,
    /// Appended after the log's seal (the writer also marks it late).
    pub after_seal: bool,
}

impl LoggedEntry {
    /// Whether this entry may become the final score: trusted, not late, not after the seal.
    pub fn counts(&self) -> bool {
        self.trusted && !self.after_seal && !self.entry.late
    }
}

/// The log's seal as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SealInfo {
    pub seal: Seal,
    pub line: usize,
    pub seq: u64,
    /// In the intact part of the chain.
    pub trusted: bool,
}

/// Everything [`ScoreLog::read_verified`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRead {
    /// Every entry that could be read, in file order, trusted or not.
    pub entries: Vec<LoggedEntry>,
    /// Torn lines skipped, and authenticated records that could not be used.
    pub warnings: Vec<LogWarning>,
    /// The first record that breaks the chain; `None` when the chain is intact.
    pub broken: Option<ChainBreak>,
    /// The first authenticated seal, if the log was sealed.
    pub seal: Option<SealInfo>,
}

impl LogRead {
    /// No record breaks the chain.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    /// The entries that may count.
    pub fn counted(&self) -> impl Iterator<Item = &LoggedEntry> {
        self.entries.iter().filter(|e| e.counts())
    }

    /// The entry that counts, never a late or untrusted one.
    pub fn select_final(&self, selection: Selection, direction: Direction) -> Option<&LoggedEntry> {
        select_final(&self.entries, selection, direction)
    }
}

/// What [`ScoreLog::append_once`] did with an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Appended as a new record.
    Appended(Appended),
    /// Not appended: a trusted entry with the same key was already logged (this one).
    AlreadyLogged(ScoreEntry),
}

/// What [`ScoreLog::append`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The entry was written late: the caller said so, or the log was already sealed.
    pub late: bool,
}

/// Handle on one score log file and its key. `Debug` never prints the key.
#[derive(Clone)]
pub struct ScoreLog {
    path: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for ScoreLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How one line of the file reads, before the chain is checked.
enum Line {
    /// A proper prefix of a JSON value: what a writer killed mid-write leaves.
    Torn,
    /// The MAC verifies; `body` is the record without it.
    Authentic {
        mac: String,
        body: Map<String, Value>,
    },
    /// Not authenticated; `value` is the object when the line is one.
    Unauthentic {
        reason: BreakReason,
        value: Option<Map<String, Value>>,
    },
}

/// What an append needs from the log as it is: the chain's tip and whether it is sealed.
struct Scan {
    read: LogRead,
    /// The last record whose MAC verifies, as (seq, mac): the next record chains from it.
    tip: Option<(u64, String)>,
}

impl Scan {
    /// The `seq` and `prev` of the next record.
    fn next(&self) -> (u64, String) {
        match &self.tip {
            Some((seq, mac)) => (seq + 1, mac.clone()),
            None => (1, GENESIS_PREV.to_string()),
        }
    }
}

fn seq_of(map: &Map<String, Value>) -> Option<u64> {
    map.get("seq").and_then(Value::as_u64)
}

/// Splits a line into the bytes its MAC covers and the MAC's hex, when it ends the way the
/// writer ends a record.
fn split_mac(line: &[u8]) -> Option<(Vec<u8>, &str)> {
    let n = line.len();
    if n < MAC_SUFFIX_LEN + 1 || !line.ends_with(MAC_CLOSE) {
        return None;
    }
    let start = n - MAC_SUFFIX_LEN;
    if &line[start..start + MAC_OPEN.len()] != MAC_OPEN {
        return None;
    }
    let hex = &line[start + MAC_OPEN.len()..n - MAC_CLOSE.len()];
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut body = line[..start].to_vec();
    body.push(b'}');
    Some((body, std::str::from_utf8(hex).expect("checked ASCII hex")))
}

impl ScoreLog {
    /// The log at `path`, keyed for the log `log_id` (the attempt id) of this installation.
    pub fn new(path: impl Into<PathBuf>, key: &InstallationKey, log_id: &str) -> Self {
        ScoreLog {
            path: path.into(),
            key: hmac_sha256(&key.derive(LOG_KEY_LABEL), log_id.as_bytes()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many lines the log holds (entries, the seal, torn lines): a cheap bound for
    /// callers that cap a log's growth, read without parsing or verifying anything.
    pub fn entry_count(&self) -> Result<usize> {
        use std::io::Read;
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let (mut count, mut buf) = (0, vec![0u8; 64 << 10]);
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                return Ok(count);
            }
            count += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
    }

    fn mac_hex(&self, body: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.key, body))
    }

    fn verifies(&self, body: &[u8], mac_hex: &str) -> bool {
        let Ok(mac) = hex::decode(mac_hex) else {
            return false;
        };
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(body);
        // Constant time: a timing oracle must not help forge a MAC byte by byte.
        m.verify_slice(&mac).is_ok()
    }

    /// One line holding `fields` chained as record `seq` after `prev`, newline included.
    fn record_line(&self, mut fields: Map<String, Value>, seq: u64, prev: String) -> Vec<u8> {
        fields.insert("seq".into(), seq.into());
        fields.insert("prev".into(), prev.into());
        let mut line = serde_json::to_vec(&Value::Object(fields)).expect("a JSON map serializes");
        let mac = self.mac_hex(&line);
        debug_assert_eq!(line.last(), Some(&b'}'));
        line.pop();
        line.extend_from_slice(MAC_OPEN);
        line.extend_from_slice(mac.as_bytes());
        line.extend_from_slice(MAC_CLOSE);
        line.push(b'\n');
        line
    }

    fn classify(&self, raw: &[u8]) -> Line {
        if let Some((body, mac)) = split_mac(raw) {
            if self.verifies(&body, mac) {
                return match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Object(body)) => Line::Authentic {
                        mac: mac.to_string(),
                        body,
                    },
                    _ => Line::Unauthentic {
                        reason: BreakReason::Damaged("authenticated, but not a JSON object".into()),
                        value: None,
                    },
                };
            }
        }
        match serde_json::from_slice::<Value>(raw) {
            Err(e) if e.is_eof() => Line::Torn,
            Err(e) => Line::Unauthentic {
                reason: BreakReason::Damaged(format!("not JSON, and not a torn write: {e}")),
                value: None,
            },
            Ok(Value::Object(map)) => Line::Unauthentic {
                reason: if map.contains_key("mac") {
                    BreakReason::BadMac
                } else {
                    BreakReason::MissingMac
                },
                value: Some(map),
            },
            Ok(_) => Line::Unauthentic {
                reason: BreakReason::Damaged("not a JSON object".into()),
                value: None,
            },
        }
    }

    /// Reads the whole log's bytes: entries, warnings, the chain's verdict and its tip.
    fn scan(&self, bytes: &[u8]) -> Scan {
        let mut read = LogRead::default();
        let mut tip = None;
        let (mut next_seq, mut next_prev) = (1u64, GENESIS_PREV.to_string());
        let pieces: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let last = pieces.len() - 1;
        for (i, raw) in pieces.into_iter().enumerate() {
            let line = i + 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut fault = None;
            let mut seq = None;
            // The record's own fields, and whether it is a seal.
            let mut fields = None;
            let mut is_seal = false;
            match self.classify(raw) {
                Line::Torn => {
                    read.warnings.push(LogWarning {
                        line,
                        message: if i == last {
                            "skipped a torn last line (a write cut short)".into()
                        } else {
                            "skipped a torn line (a write cut short, fenced off by the next append)"
                                .into()
                        },
                    });
                    continue;
                }
                Line::Authentic { mac, mut body } => {
                    seq = seq_of(&body);
                    let prev = body.remove("prev");
                    match (seq, prev.as_ref().and_then(Value::as_str)) {
                        (Some(s), Some(prev)) => {
                            tip = Some((s, mac.clone()));
                            if s != next_seq {
                                fault = Some(BreakReason::UnexpectedSeq {
                                    expected: next_seq,
                                    found: s,
                                });
                            } else if prev != next_prev {
                                fault = Some(BreakReason::PrevMismatch);
                            } else {
                                (next_seq, next_prev) = (s + 1, mac);
                            }
                        }
                        _ => {
                            fault = Some(BreakReason::Damaged(
                                "authenticated, but without seq or prev".into(),
                            ))
                        }
                    }
                    match body.remove("record") {
                        None => {}
                        Some(Value::String(kind)) if kind == "seal" => is_seal = true,
                        Some(other) => {
                            let kind = other.as_str().map_or(other.to_string(), str::to_string);
                            fault = fault.or(Some(BreakReason::UnknownRecord(kind)));
                        }
                    }
                    body.remove("seq");
                    fields = Some(body);
                }
                Line::Unauthentic { reason, value } => {
                    fault = Some(reason);
                    if let Some(mut map) = value {
                        seq = seq_of(&map);
                        // An unauthenticated "seal" seals nothing; its entry fields, if any,
                        // are shown untrusted like any other.
                        for key in RESERVED_KEYS {
                            map.remove(key);
                        }
                        fields = Some(map);
                    }
                }
            }
            if read.broken.is_none() {
                if let Some(reason) = fault.clone() {
                    read.broken = Some(ChainBreak { line, seq, reason });
                }
            }
            let trusted = read.broken.is_none();
            let Some(fields) = fields else { continue };
            if is_seal {
                self.read_seal(&mut read, fields, line, seq, trusted);
            } else if !matches!(fault, Some(BreakReason::UnknownRecord(_))) {
                match ScoreEntry::deserialize(&Value::Object(fields)) {
                    Ok(entry) => read.entries.push(LoggedEntry {
                        entry,
                        line,
                        seq,
                        trusted,
                        after_seal: read.seal.is_some(),
                    }),
                    Err(e) if trusted => read.warnings.push(LogWarning {
                        line,
                        message: format!("an authenticated record that is not a score entry: {e}"),
                    }),
                    // Not authentic and not an entry: the break already reports it.
                    Err(_) => {}
                }
            }
        }
        Scan { read, tip }
    }

    fn read_seal(
        &self,
        read: &mut LogRead,
        fields: Map<String, Value>,
        line: usize,
        seq: Option<u64>,
        trusted: bool,
    ) {
        let warn =
            |read: &mut LogRead, message: String| read.warnings.push(LogWarning { line, message });
        if read.seal.is_some() {
            return warn(read, "a second seal, ignored".into());
        }
        match Seal::deserialize(&Value::Object(fields)) {
            Ok(seal) => {
                let counted = read.counted().count();
                if trusted && seal.counted != counted {
                    warn(
                        read,
                        format!(
                            "the seal says {} entries counted, but {counted} before it count now",
                            seal.counted
                        ),
                    );
                }
                read.seal = Some(SealInfo {
                    seal,
                    line,
                    seq: seq.unwrap_or(0),
                    trusted,
                });
            }
            Err(e) => warn(
                read,
                format!("an authenticated seal this version cannot read: {e}"),
            ),
        }
    }

    /// Under the log's exclusive lock: reads the log, lets `make` build the line to append from
    /// what it holds (or nothing), appends and syncs it.
    fn append_locked<T>(
        &self,
        make: impl FnOnce(&Scan) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<T> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_private_dir_all(dir)?;
        }
        let io = |e| Error::io(&self.path, e);
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(io)?;
        file.lock_exclusive().map_err(io)?;
        let result = (|| {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.read_to_end(&mut bytes).map_err(io)?;
            let scan = self.scan(&bytes);
            let (line, out) = make(&scan)?;
            if let Some(mut line) = line {
                // Fence off a line torn by a crash so this record starts on a line of its own.
                if bytes.last().is_some_and(|b| *b != b'\n') {
                    line.insert(0, b'\n');
                }
                file.write_all(&line).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
            Ok(out)
        })();
        let _ = FileExt::unlock(&file);
        result
    }

    /// Appends one entry as a single chained line; never rewrites earlier bytes. An entry
    /// appended after the seal is written late whatever `entry.late` says.
    pub fn append(&self, entry: &ScoreEntry) -> Result<Appended> {
        match self.append_entry(entry, false)? {
            Recorded::Appended(appended) => Ok(appended),
            Recorded::AlreadyLogged(_) => unreachable!("only append_once looks for its key"),
        }
    }

    /// As [`Self::append`], unless the entry has a key that a trusted entry of this log
    /// already has: then nothing is written and that entry comes back. The check is made under
    /// the lock the append takes, so two calls racing with one key log one entry.
    pub fn append_once(&self, entry: &ScoreEntry) -> Result<Recorded> {
        self.append_entry(entry, true)
    }

    /// The trusted entry logged with `key`, if any (read without the lock: a call that finds
    /// none still meets [`Self::append_once`]'s check).
    pub fn find_keyed(&self, key: &ScoreKey) -> Result<Option<ScoreEntry>> {
        Ok(keyed(&self.read_verified()?, key).cloned())
    }

    fn append_entry(&self, entry: &ScoreEntry, once: bool) -> Result<Recorded> {
        let internal =
            |e: serde_json::Error| Error::Internal(format!("serializing score entry: {e}"));
        let Value::Object(mut fields) = serde_json::to_value(entry).map_err(internal)? else {
            return Err(Error::Internal("a score entry is not a JSON object".into()));
        };
        if let Some(key) = RESERVED_KEYS.iter().find(|k| fields.contains_key(**k)) {
            return Err(Error::Internal(format!(
                "a score entry has a field {key:?} the log reserves"
            )));
        }
        // A non-finite wall time serializes as null and would never read back: refuse it here
        // rather than log a record no reader can use.
        ScoreEntry::deserialize(&Value::Object(fields.clone())).map_err(|e| {
            Error::Internal(format!(
                "this score entry would not read back from the log: {e}"
            ))
        })?;
        self.append_locked(|scan| {
            if let Some(logged) = entry
                .key
                .as_ref()
                .filter(|_| once)
                .and_then(|key| keyed(&scan.read, key))
            {
                return Ok((None, Recorded::AlreadyLogged(logged.clone())));
            }
            let late = entry.late || scan.read.seal.is_some();
            if late {
                fields.insert("late".into(), true.into());
            }
            let (seq, prev) = scan.next();
            Ok((
                Some(self.record_line(fields, seq, prev)),
                Recorded::Appended(Appended { seq, late }),
            ))
        })
    }

    /// Seals the log at `finished_at`: appends a [`Seal`] recording what counted and which
    /// entry `selection` chose, under the lock, so every entry appended afterwards is late.
    /// Sealing a sealed log changes nothing. Returns the log as read right after.
    pub fn seal(
        &self,
        finished_at: DateTime<Utc>,
        selection: Selection,
        direction: Direction,
    ) -> Result<LogRead> {
        self.append_locked(|scan| {
            if scan.read.seal.is_some() {
                return Ok((None, ()));
            }
            let (seq, prev) = scan.next();
            let seal = Seal {
                finished_at,
                last_seq: seq - 1,
                counted: scan.read.counted().count(),
                selection,
                chosen_seq: scan
                    .read
                    .select_final(selection, direction)
                    .and_then(|e| e.seq),
            };
            let Ok(Value::Object(mut fields)) = serde_json::to_value(&seal) else {
                return Err(Error::Internal("a seal is not a JSON object".into()));
            };
            fields.insert("record".into(), "seal".into());
            Ok((Some(self.record_line(fields, seq, prev)), ()))
        })?;
        self.read_verified()
    }

    /// Reads and verifies the whole log. A missing log reads as empty and intact.
    pub fn read_verified(&self) -> Result<LogRead> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        Ok(self.scan(&bytes).read)
    }

    /// Every readable entry, in order, trusted or not, with warnings for skipped lines and,
    /// when the chain is broken, one for the break. For what counts, use [`Self::read_verified`].
    pub fn read(&self) -> Result<(Vec<ScoreEntry>, Vec<LogWarning>)> {
        let read = self.read_verified()?;
        let mut warnings = read.warnings;
        if let Some(b) = &read.broken {
            warnings.push(LogWarning {
                line: b.line,
                message: format!(
                    "the chain is broken here: {}; this entry and all after it are untrusted",
                    b.reason
                ),
            });
            warnings.sort_by_key(|w| w.line);
        }
        Ok((
            read.entries.into_iter().map(|e| e.entry).collect(),
            warnings,
        ))
    }
}

/// The first trusted entry of `read` carrying `key`.
fn keyed<'a>(read: &'a LogRead, key: &ScoreKey) -> Option<&'a ScoreEntry> {
    read.entries
        .iter()
        .find(|e| e.trusted && e.entry.key.as_ref() == Some(key))
        .map(|e| &e.entry)
}

/// How the final score of an attempt is chosen from its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The best valid normalized score (visible-score tasks); when no entry has one (an
    /// uncalibrated device), the best valid raw score in the task's direction.
    Best,
    /// The last valid entry, or the last entry when none is valid (tasks whose score is hidden
    /// from the agent: a later malformed answer must not throw away an earlier good one).
    Last,
}

/// Something [`select_final`] can choose from: a bare entry, or one read with its chain status.
pub trait Candidate {
    fn entry(&self) -> &ScoreEntry;
    /// Whether it may be chosen at all.
    fn counts(&self) -> bool;
}

impl Candidate for ScoreEntry {
    fn entry(&self) -> &ScoreEntry {
        self
    }
    fn counts(&self) -> bool {
        !self.late
    }
}

impl Candidate for LoggedEntry {
    fn entry(&self) -> &ScoreEntry {
        &self.entry
    }
    fn counts(&self) -> bool {
        LoggedEntry::counts(self)
    }
}

/// Picks the entry that counts, never a late one (nor, for [`LoggedEntry`], an untrusted one
/// or one after the seal). For [`Selection::Best`], entries without a finite normalized score
/// rank below any with one; among those, the best raw score in the task's `direction` wins
/// (normalized scores need no direction: the reference sits on the good side of the start).
/// Ties go to the later entry.
pub fn select_final<E: Candidate>(
    entries: &[E],
    selection: Selection,
    direction: Direction,
) -> Option<&E> {
    let counted = || entries.iter().filter(|e| e.counts());
    let scored = || counted().filter(|e| e.entry().valid && !e.entry().unscored);
    let finite = |x: Option<f64>| x.filter(|x| x.is_finite());
    match selection {
        Selection::Last => counted()
            .filter(|e| e.entry().valid)
            .last()
            .or_else(|| counted().last()),
        Selection::Best => scored()
            .filter_map(|e| finite(e.entry().normalized).map(|n| (e, n)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .or_else(|| {
                scored()
                    .filter_map(|e| finite(e.entry().raw).map(|r| (e, r)))
                    .max_by(|a, b| match direction {
                        Direction::HigherIsBetter => a.1.total_cmp(&b.1),
                        Direction::LowerIsBetter => b.1.total_cmp(&a.1),
                    })
            })
            .map(|(e, _)| e)
            .or_else(|| scored().last())
            .or_else(|| counted().last()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direction of [`entry`]'s scores: its raw score is minus the normalized one.
    const DIR: Direction = Direction::LowerIsBetter;

    fn key(byte: u8) -> InstallationKey {
        InstallationKey::from_bytes_for_tests([byte; 32])
    }

    fn log_at(path: &Path) -> ScoreLog {
        ScoreLog::new(path, &key(1), "attempt-1")
    }

    fn entry(valid: bool, normalized: Option<f64>) -> ScoreEntry {
        ScoreEntry {
            timestamp: Utc::now(),
            task: "t".into(),
            profile: "tiny".into(),
            valid,
            raw: normalized.map(|n| -n),
            normalized,
            reason: (!valid).then(|| "wrong".to_string()),
            kind: (!valid).then_some(InvalidKind::WrongOutput),
            headline: None,
            unscored: false,
            submission_sha256: "00".into(),
            device: None,
            calibration: None,
            wall_s: 1.0,
            details: serde_json::Value::Null,
            monitor: None,
            samples_file: None,
            timeline_file: None,
            late: false,
            key: None,
        }
    }

    /// A log of `n` valid entries scoring 0.1, 0.2, …, and its path.
    fn log_of(n: usize) -> (tempfile::TempDir, PathBuf, ScoreLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = log_at(&path);
        for i in 1..=n {
            log.append(&entry(true, Some(i as f64 / 10.0))).unwrap();
        }
        (dir, path, log)
    }

    fn lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn broken(log: &ScoreLog) -> ChainBreak {
        log.read_verified()
            .unwrap()
            .broken
            .expect("the chain is broken")
    }

    #[test]
    fn the_log_and_its_folder_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = log_at(&dir.path().join("a/b/log.jsonl"));
        log.append(&entry(true, Some(0.5))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(log.path()), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert!(!format!("{log:?}").contains("key"));
    }

    #[test]
    fn append_then_read_round_trips_and_chains() {
        let (_dir, path, log) = log_of(0);
        assert_eq!(log.append(&entry(true, Some(0.5))).unwrap().seq, 1);
        assert_eq!(log.append(&entry(false, None)).unwrap().seq, 2);
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert!(read.warnings.is_empty());
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.entries[0].entry.normalized, Some(0.5));
        assert_eq!(read.entries[0].seq, Some(1));
        assert!(read.entries.iter().all(|e| e.trusted && e.counts()));
        assert!(!read.entries[1].entry.valid);
        // The first record chains from the genesis, the second from the first's MAC.
        let first: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        let second: Value = serde_json::from_str(&lines(&path)[1]).unwrap();
        assert_eq!(first["prev"], GENESIS_PREV);
        assert_eq!(second["prev"], first["mac"]);
        // `late: false` is not written.
        assert!(!lines(&path)[0].contains("late"));
        // The legacy reader sees the same entries.
        let (entries, warnings) = log.read().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(warnings.is_empty());
    }

    #[test]
    fn an_edited_field_breaks_the_chain_at_that_line() {
        let (_dir, path, log) = log_of(5);
        let mut l = lines(&path);
        l[2] = l[2].replace("\"profile\":\"tiny\"", "\"profile\":\"huge\"");
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!((b.line, b.seq, b.reason), (3, Some(3), BreakReason::BadMac));
        let read = log.read_verified().unwrap();
        let trusted: Vec<bool> = read.entries.iter().map(|e| e.trusted).collect();
        assert_eq!(trusted, [true, true, false, false, false]);
        // The edited entry is still shown, untrusted.
        assert_eq!(read.entries[2].entry.profile, "huge");
        // Best would be 0.5 (line 5): untrusted entries never count.
        let best = read.select_final(Selection::Best, DIR).unwrap();
        assert_eq!(best.entry.normalized, Some(0.2));
        assert_eq!(
            read.select_final(Selection::Last, DIR).unwrap().seq,
            Some(2)
        );
        // The legacy reader reports the break as a warning.
        let (_, warnings) = log.read().unwrap();
        assert!(warnings[0].message.contains("bad MAC"), "{warnings:?}");
    }

    #[test]
    fn a_deleted_middle_line_breaks_the_chain() {
        let (_dir, path, log) = log_of(5);
        let mut l = lines(&path);
        l.remove(2);
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!(b.line, 3);
        assert_eq!(b.seq, Some(4));
        assert_eq!(
            b.reason,
            BreakReason::UnexpectedSeq {
                expected: 3,
                found: 4
            }
        );
    }

    #[test]
    fn swapped_and_duplicated_lines_break_the_chain() {
        let (_dir, path, log) = log_of(4);
        let original = lines(&path);
        let mut l = original.clone();
        l.swap(1, 2);
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!((b.line, b.seq), (2, Some(3)));
        let mut l = original.clone();
        l.insert(2, original[1].clone());
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!((b.line, b.seq), (3, Some(2)));
    }

    #[test]
    fn a_record_from_another_log_with_the_same_key_breaks_prev() {
        let (_dir, path, log) = log_of(3);
        let other_path = path.with_file_name("other.jsonl");
        let other = log_at(&other_path);
        for _ in 0..3 {
            other.append(&entry(true, Some(0.99))).unwrap();
        }
        let mut l = lines(&path);
        l[1] = lines(&other_path)[1].clone();
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!(
            (b.line, b.seq, b.reason),
            (2, Some(2), BreakReason::PrevMismatch)
        );
    }

    #[test]
    fn a_log_of_another_attempt_or_installation_does_not_verify() {
        let (_dir, path, _log) = log_of(2);
        let other_attempt = ScoreLog::new(&path, &key(1), "attempt-2");
        assert_eq!(broken(&other_attempt).reason, BreakReason::BadMac);
        let other_install = ScoreLog::new(&path, &key(2), "attempt-1");
        assert_eq!(broken(&other_install).line, 1);
    }

    #[test]
    fn a_forged_line_with_a_wrong_key_breaks_the_chain_and_never_counts() {
        let (_dir, path, log) = log_of(3);
        let forger = ScoreLog::new(&path, &key(9), "attempt-1");
        forger.append(&entry(true, Some(100.0))).unwrap();
        let read = log.read_verified().unwrap();
        let b = read.broken.clone().unwrap();
        assert_eq!((b.line, b.reason), (4, BreakReason::BadMac));
        assert_eq!(read.entries.len(), 4);
        assert!(!read.entries[3].trusted);
        assert_eq!(
            read.select_final(Selection::Best, DIR)
                .unwrap()
                .entry
                .normalized,
            Some(0.3)
        );
        // The real writer chains past the forgery from its own last record.
        assert_eq!(log.append(&entry(true, Some(0.4))).unwrap().seq, 4);
    }

    #[test]
    fn a_hand_written_entry_without_mac_breaks_the_chain() {
        let (_dir, path, log) = log_of(2);
        let mut l = lines(&path);
        l.push(serde_json::to_string(&entry(true, Some(7.0))).unwrap());
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!(
            (b.line, b.seq, b.reason),
            (3, None, BreakReason::MissingMac)
        );
        // A log from before chaining breaks at its first line.
        std::fs::write(
            &path,
            serde_json::to_string(&entry(true, Some(0.1))).unwrap() + "\n",
        )
        .unwrap();
        assert_eq!(broken(&log).line, 1);
    }

    #[test]
    fn garbage_that_is_not_a_torn_write_breaks_the_chain() {
        let (_dir, path, log) = log_of(2);
        let mut l = lines(&path);
        l.push("not json at all".into());
        write_lines(&path, &l);
        let b = broken(&log);
        assert_eq!(b.line, 3);
        assert!(matches!(b.reason, BreakReason::Damaged(_)), "{b}");
    }

    #[test]
    fn torn_line_is_fenced_off_and_reported() {
        let (_dir, path, log) = log_of(1);
        // A crash mid-write leaves half a line without its newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"timestamp\":\"2026-").unwrap();
        drop(f);
        log.append(&entry(true, Some(0.9))).unwrap();
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert_eq!(
            read.entries.len(),
            2,
            "both whole entries survive the torn one"
        );
        assert_eq!(read.entries[1].entry.normalized, Some(0.9));
        assert_eq!(read.entries[1].seq, Some(2));
        assert_eq!(read.warnings.len(), 1);
        assert_eq!(read.warnings[0].line, 2);
    }

    #[test]
    fn a_last_line_cut_mid_way_is_a_warning_and_the_next_append_chains() {
        let (_dir, path, log) = log_of(3);
        let bytes = std::fs::read(&path).unwrap();
        let third = lines(&path)[2].len();
        std::fs::write(&path, &bytes[..bytes.len() - 1 - third / 2]).unwrap();
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.warnings.len(), 1);
        assert!(read.warnings[0].message.contains("torn"));
        assert_eq!(log.append(&entry(true, Some(0.7))).unwrap().seq, 3);
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert_eq!(read.entries.len(), 3);
        assert_eq!(read.entries[2].line, 4);
        assert_eq!(read.entries[2].entry.normalized, Some(0.7));
    }

    #[test]
    fn eight_threads_appending_keep_the_chain_intact() {
        let (_dir, path, _log) = log_of(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = path.clone();
                s.spawn(move || {
                    let log = log_at(&path);
                    for i in 0..50 {
                        log.append(&entry(true, Some((t * 100 + i) as f64)))
                            .unwrap();
                    }
                });
            }
        });
        let read = log_at(&path).read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert!(read.warnings.is_empty());
        let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq.unwrap()).collect();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        let mut scores: Vec<i64> = read
            .entries
            .iter()
            .map(|e| e.entry.normalized.unwrap() as i64)
            .collect();
        scores.sort();
        let expected: Vec<i64> = (0..8)
            .flat_map(|t| (0..50).map(move |i| t * 100 + i))
            .collect();
        assert_eq!(scores, expected);
    }

    #[test]
    fn an_entry_after_the_seal_is_late_and_never_selected() {
        let (_dir, path, log) = log_of(2);
        let mut late = entry(true, Some(0.05));
        late.late = true;
        log.append(&late).unwrap();
        let finished_at = Utc::now();
        let read = log.seal(finished_at, Selection::Best, DIR).unwrap();
        let seal = read.seal.clone().unwrap();
        assert_eq!(seal.line, 4);
        assert_eq!(seal.seq, 4);
        assert!(seal.trusted);
        assert_eq!(
            seal.seal,
            Seal {
                finished_at,
                last_seq: 3,
                counted: 2,
                selection: Selection::Best,
                chosen_seq: Some(2),
            }
        );
        // A scorer that lost the race with finish: its entry is forced late.
        let appended = log.append(&entry(true, Some(0.99))).unwrap();
        assert_eq!(appended, Appended { seq: 5, late: true });
        assert!(lines(&path)[4].contains("\"late\":true"));
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        let after = &read.entries[3];
        assert!(after.entry.late && after.after_seal && after.trusted && !after.counts());
        assert_eq!(read.counted().count(), 2);
        assert_eq!(
            read.select_final(Selection::Best, DIR).unwrap().seq,
            Some(2)
        );
        assert_eq!(
            read.select_final(Selection::Last, DIR).unwrap().seq,
            Some(2)
        );
        // The bare-entry selection skips late entries too.
        let bare: Vec<ScoreEntry> = read.entries.iter().map(|e| e.entry.clone()).collect();
        assert_eq!(
            select_final(&bare, Selection::Best, DIR)
                .unwrap()
                .normalized,
            Some(0.2)
        );
        // Sealing again changes nothing.
        let before = std::fs::read(&path).unwrap();
        let again = log.seal(Utc::now(), Selection::Last, DIR).unwrap();
        assert_eq!(again.seal.unwrap().seal.finished_at, finished_at);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Deleting the seal breaks the chain at the entry after it.
        let mut l = lines(&path);
        l.remove(3);
        write_lines(&path, &l);
        assert_eq!(broken(&log).line, 4);
    }

    #[test]
    fn a_racing_scorer_never_counts_after_the_seal() {
        // Scorers race finish: whatever lands after the seal is late.
        let (_dir, path, log) = log_of(1);
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = path.clone();
                s.spawn(move || {
                    let log = log_at(&path);
                    for i in 0..20 {
                        log.append(&entry(true, Some(1.0 + (t * 20 + i) as f64)))
                            .unwrap();
                    }
                });
            }
            s.spawn(|| log.seal(Utc::now(), Selection::Best, DIR).unwrap());
        });
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        let seal = read.seal.clone().unwrap();
        for e in &read.entries {
            assert_eq!(e.entry.late, e.line > seal.line, "line {}", e.line);
            assert_eq!(e.counts(), e.line < seal.line);
        }
        assert_eq!(seal.seal.counted, read.counted().count());
        assert_eq!(
            read.select_final(Selection::Best, DIR).and_then(|e| e.seq),
            seal.seal.chosen_seq
        );
    }

    #[test]
    fn an_empty_or_missing_log_reads_intact_and_seals() {
        let (_dir, _path, log) = log_of(0);
        let read = log.read_verified().unwrap();
        assert!(read.is_intact() && read.entries.is_empty() && read.seal.is_none());
        let read = log.seal(Utc::now(), Selection::Best, DIR).unwrap();
        let seal = read.seal.unwrap();
        assert_eq!((seal.seq, seal.seal.last_seq, seal.seal.counted), (1, 0, 0));
        assert_eq!(seal.seal.chosen_seq, None);
    }

    #[test]
    fn an_entry_that_would_not_read_back_is_refused() {
        let (_dir, path, log) = log_of(0);
        let mut bad = entry(true, Some(0.5));
        bad.wall_s = f64::NAN;
        let err = log.append(&bad).unwrap_err().to_string();
        assert!(err.contains("would not read back"), "{err}");
        assert!(!path.exists() || std::fs::read(&path).unwrap().is_empty());
    }

    #[test]
    fn best_ignores_invalid_and_last_takes_last_valid() {
        let entries = vec![
            entry(true, Some(0.3)),
            entry(true, Some(0.8)),
            entry(true, Some(0.5)),
            entry(false, None),
        ];
        assert_eq!(
            select_final(&entries, Selection::Best, DIR)
                .unwrap()
                .normalized,
            Some(0.8)
        );
        // A malformed answer after a good one does not replace it.
        let last = select_final(&entries, Selection::Last, DIR).unwrap();
        assert!(last.valid);
        assert_eq!(last.normalized, Some(0.5));
        // With nothing valid, the last entry still stands (so the attempt has a reason to show).
        let invalid = vec![entry(false, None), entry(false, None)];
        assert!(std::ptr::eq(
            select_final(&invalid, Selection::Last, DIR).unwrap(),
            &invalid[1]
        ));
        assert!(select_final::<ScoreEntry>(&[], Selection::Best, DIR).is_none());
    }

    /// Without a calibration, entries carry a raw score only: the best one in the task's
    /// direction counts, not the last; a normalized score still outranks any raw-only one.
    #[test]
    fn best_without_normalized_scores_takes_the_best_raw_in_the_tasks_direction() {
        let raw_only = |raw: f64| {
            let mut e = entry(true, None);
            e.raw = Some(raw);
            e
        };
        let unscored = || ScoreEntry {
            unscored: true,
            ..entry(true, None)
        };
        let mut late = raw_only(0.5);
        late.late = true;
        let entries = vec![
            raw_only(3.0),
            raw_only(1.0),
            entry(false, None),
            raw_only(2.0),
            unscored(),
            late,
        ];
        let pick = |direction| {
            select_final(&entries, Selection::Best, direction).map(|e| e.raw.unwrap_or(f64::NAN))
        };
        assert_eq!(pick(Direction::LowerIsBetter), Some(1.0));
        assert_eq!(pick(Direction::HigherIsBetter), Some(3.0));

        let mut calibrated = entries.clone();
        calibrated.push(entry(true, Some(0.1)));
        for direction in [Direction::LowerIsBetter, Direction::HigherIsBetter] {
            let best = select_final(&calibrated, Selection::Best, direction).unwrap();
            assert_eq!(best.normalized, Some(0.1));
        }
        // A non-finite normalized score (a degenerate calibration) ranks as none.
        let mut degenerate = entries.clone();
        degenerate[3].normalized = Some(f64::NAN);
        assert_eq!(
            select_final(&degenerate, Selection::Best, Direction::LowerIsBetter)
                .unwrap()
                .raw,
            Some(1.0)
        );
        // Nothing scored: the last counted entry stands, as before.
        let nothing = [entry(false, None), unscored(), entry(false, None)];
        assert!(std::ptr::eq(
            select_final(&nothing, Selection::Best, DIR).unwrap(),
            &nothing[2]
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn awkward_f64() -> impl Strategy<Value = f64> {
            prop_oneof![
                Just(0.1),
                Just(1e308),
                Just(-0.0),
                Just(f64::MIN_POSITIVE),
                Just(f64::MIN_POSITIVE / 3.0),
                Just(5e-324),
                Just(f64::MAX),
                Just(-f64::MAX),
                Just(1.0 / 3.0),
                any::<f64>().prop_filter("finite", |f| f.is_finite()),
            ]
        }

        fn details() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                awkward_f64().prop_map(Value::from),
                ".*".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                    prop::collection::btree_map(".*", inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn any_entry() -> impl Strategy<Value = ScoreEntry> {
            (
                (
                    any::<bool>(),
                    proptest::option::of(awkward_f64()),
                    proptest::option::of(awkward_f64()),
                ),
                (".*", "\\PC*", proptest::option::of(".*")),
                (
                    awkward_f64().prop_filter("finite", |f| f.is_finite()),
                    details(),
                    any::<bool>(),
                ),
                proptest::option::of(prop::collection::vec(
                    any::<f64>().prop_filter("finite", |f| f.is_finite()),
                    2000..3000,
                )),
            )
                .prop_map(
                    |(
                        (valid, raw, normalized),
                        (task, headline, reason),
                        (wall_s, details, late),
                        big,
                    )| {
                        let mut e = entry(valid, normalized);
                        e.raw = raw;
                        e.task = task;
                        e.headline = Some(headline);
                        e.reason = reason;
                        e.wall_s = wall_s;
                        e.details = details;
                        e.late = late;
                        e.monitor = big.map(Value::from);
                        e
                    },
                )
        }

        fn bits(e: &ScoreEntry) -> (Option<u64>, Option<u64>, u64) {
            (
                e.raw.map(f64::to_bits),
                e.normalized.map(f64::to_bits),
                e.wall_s.to_bits(),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// What the writer MACs is what the reader checks, whatever the entry holds; and
            /// the entry reads back bit for bit.
            #[test]
            fn awkward_entries_round_trip_intact(entries in prop::collection::vec(any_entry(), 1..5)) {
                let (_dir, _path, log) = log_of(0);
                for e in &entries {
                    log.append(e).unwrap();
                }
                let read = log.read_verified().unwrap();
                prop_assert!(read.is_intact(), "{:?}", read.broken);
                prop_assert!(read.warnings.is_empty(), "{:?}", read.warnings);
                prop_assert_eq!(read.entries.len(), entries.len());
                for (got, want) in read.entries.iter().zip(&entries) {
                    prop_assert_eq!(&got.entry, want);
                    prop_assert_eq!(bits(&got.entry), bits(want));
                }
            }

            /// A writer killed anywhere in a line leaves a warning, never a break.
            #[test]
            fn every_prefix_of_the_last_record_is_a_torn_write(cut in 1usize..10_000, e in any_entry()) {
                let (_dir, path, log) = log_of(2);
                log.append(&e).unwrap();
                let bytes = std::fs::read(&path).unwrap();
                let third = lines(&path)[2].len();
                let keep = bytes.len() - 1 - third + cut % third;
                std::fs::write(&path, &bytes[..keep]).unwrap();
                let read = log.read_verified().unwrap();
                prop_assert!(read.is_intact(), "cut at {}: {:?}", keep, read.broken);
                prop_assert_eq!(read.entries.len(), 2);
                let expected = if cut % third == 0 { 0 } else { 1 };
                prop_assert_eq!(read.warnings.len(), expected);
            }

            /// Any one changed byte: trusted entries stay a prefix of the originals, unaltered,
            /// and a change before the last line always breaks the chain.
            #[test]
            fn one_changed_byte_is_caught(pos in any::<usize>(), byte in any::<u8>()) {
                let (_dir, path, log) = log_of(4);
                let original = log.read_verified().unwrap().entries;
                let mut bytes = std::fs::read(&path).unwrap();
                let pos = pos % bytes.len();
                prop_assume!(bytes[pos] != byte);
                bytes[pos] = byte;
                std::fs::write(&path, &bytes).unwrap();
                let read = log.read_verified().unwrap();
                let trusted: Vec<&LoggedEntry> = read.entries.iter().filter(|e| e.trusted).collect();
                prop_assert!(trusted.len() <= original.len());
                for (got, want) in trusted.iter().zip(&original) {
                    prop_assert_eq!(&got.entry, &want.entry);
                }
                let last_line_start = bytes[..bytes.len() - 1]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .unwrap() + 1;
                if pos < last_line_start {
                    prop_assert!(!read.is_intact(), "byte {} changed to {}: still intact", pos, byte);
                }
            }
        }
    }

    /// A keyed entry is logged once: the same key again (one after the other, or from eight
    /// threads at once) gets the first entry back and writes nothing; another key, or none,
    /// appends as usual.
    #[test]
    fn a_key_already_logged_appends_nothing_and_returns_the_logged_entry() {
        let (_dir, path, log) = log_of(1);
        let keyed = |key: &str, normalized: f64| ScoreEntry {
            key: Some(key.parse().unwrap()),
            ..entry(true, Some(normalized))
        };
        let first = log.append_once(&keyed("call-1", 0.3)).unwrap();
        assert_eq!(
            first,
            Recorded::Appended(Appended {
                seq: 2,
                late: false
            })
        );
        match log.append_once(&keyed("call-1", 0.9)).unwrap() {
            Recorded::AlreadyLogged(e) => assert_eq!(e.normalized, Some(0.3)),
            other => panic!("logged twice: {other:?}"),
        }
        let found = log.find_keyed(&"call-1".parse().unwrap()).unwrap();
        assert_eq!(found.and_then(|e| e.normalized), Some(0.3));
        assert!(log
            .find_keyed(&"call-2".parse().unwrap())
            .unwrap()
            .is_none());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| log.append_once(&keyed("call-2", 0.5)).unwrap());
            }
        });
        log.append_once(&entry(true, Some(0.6))).unwrap();
        let read = log.read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        let keys: Vec<Option<&str>> = read
            .entries
            .iter()
            .map(|e| e.entry.key.as_ref().map(ScoreKey::as_str))
            .collect();
        assert_eq!(
            keys,
            [None, Some("call-1"), Some("call-2"), None],
            "{}",
            std::fs::read_to_string(&path).unwrap()
        );
    }

    /// A key is 1 to 128 printable characters, from the command line and from the wire alike.
    #[test]
    fn a_key_is_short_and_printable() {
        assert!("toolu_01ABC-def".parse::<ScoreKey>().is_ok());
        assert!("k".repeat(ScoreKey::MAX_CHARS).parse::<ScoreKey>().is_ok());
        for bad in [
            String::new(),
            "k".repeat(129),
            "a\nb".into(),
            "\u{1b}[2J".into(),
        ] {
            assert!(bad.parse::<ScoreKey>().is_err(), "{bad:?}");
            let wire = serde_json::json!(bad);
            assert!(serde_json::from_value::<ScoreKey>(wire).is_err(), "{bad:?}");
        }
    }
}
