//! The call log: one JSON line per call, into a file of the scorer's choosing (created 0600,
//! so an agent of another uid cannot read it). It holds counts and reasons, never the
//! request's messages, the upstream's address or the key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::ProxyError;

/// One call.
#[derive(Debug, Default, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub time: String,
    pub method: String,
    /// The request path, cut short (the caller chooses it).
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Tokens charged to the budgets.
    pub charged: u64,
    pub latency_ms: u64,
    /// Why the proxy refused or failed the call (the error's `code`); absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'static str>,
}

/// The open log, or none.
#[derive(Debug)]
pub struct CallLog {
    inner: Option<Mutex<Sink>>,
}

#[derive(Debug)]
struct Sink {
    file: File,
    written: u64,
    max_bytes: u64,
    dropped: u64,
}

impl CallLog {
    pub fn open(path: Option<&Path>, max_bytes: u64) -> Result<CallLog, ProxyError> {
        let Some(path) = path else {
            return Ok(CallLog { inner: None });
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| ProxyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(CallLog {
            inner: Some(Mutex::new(Sink {
                file,
                written,
                max_bytes,
                dropped: 0,
            })),
        })
    }

    /// Appends one line (one write, so lines never interleave). Past the size cap the line is
    /// counted as dropped; one last line says so.
    pub fn write(&self, entry: &Entry) {
        let Some(sink) = &self.inner else { return };
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_vec(entry).expect("an entry serializes");
        line.push(b'\n');
        if sink.written + line.len() as u64 > sink.max_bytes {
            if sink.dropped == 0 {
                let note = b"{\"note\":\"log size cap reached; later calls are not logged\"}\n";
                let _ = sink.file.write_all(note);
            }
            sink.dropped += 1;
            return;
        }
        match sink.file.write_all(&line) {
            Ok(()) => sink.written += line.len() as u64,
            Err(e) => tracing::warn!("llm-proxy: cannot write the call log: {e}"),
        }
    }
}
