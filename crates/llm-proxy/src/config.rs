//! The proxy's settings, validated once before anything is bound or opened.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ProxyError;

/// Where requests go: an OpenAI-style base URL (`…/v1`) or the Unix socket of a local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `http://` or `https://` base URL including its version path, e.g.
    /// `https://api.openai.com/v1`; the proxy posts to `{base}/chat/completions`.
    Http(String),
    /// A Unix socket of an OpenAI-compatible server (rdbench's `serve-llm`); its API is under
    /// `/v1`.
    Unix(PathBuf),
}

impl Upstream {
    /// Reads `http://…`, `https://…`, `unix:/path` or an absolute socket path.
    pub fn parse(raw: &str) -> Result<Upstream, ProxyError> {
        let scheme = ["http://", "https://"]
            .into_iter()
            .find(|scheme| raw.starts_with(scheme));
        if let Some(scheme) = scheme {
            let base = raw.trim_end_matches('/');
            if base.len() <= scheme.len() || base.contains(char::is_whitespace) {
                return Err(ProxyError::Config(format!("upstream `{raw}` has no host")));
            }
            return Ok(Upstream::Http(base.to_string()));
        }
        let path = raw.strip_prefix("unix:").unwrap_or(raw);
        if path.starts_with('/') {
            return Ok(Upstream::Unix(PathBuf::from(path)));
        }
        Err(ProxyError::Config(format!(
            "upstream `{raw}` is neither an http(s):// base URL nor an absolute Unix socket path"
        )))
    }

    /// The URL of the chat endpoint (for a socket, the host part is only a placeholder).
    pub(crate) fn chat_url(&self) -> String {
        match self {
            Upstream::Http(base) => format!("{base}/chat/completions"),
            Upstream::Unix(_) => "http://localhost/v1/chat/completions".to_string(),
        }
    }
}

/// The upstream's API key. Its `Debug` never shows it, and the proxy puts it only in the
/// upstream request's `Authorization` header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Reads a key file of the protected home: refused when other users may read it, when it
    /// is empty, or when it is not one line of visible ASCII (it must fit an HTTP header).
    /// Errors name the file, never its content.
    pub fn from_file(path: &Path) -> Result<ApiKey, ProxyError> {
        let io = |source| ProxyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(ProxyError::Config(format!(
                "{}: the key file is readable by other users (mode {:o}); make it 0600",
                path.display(),
                mode & 0o777
            )));
        }
        let raw = std::fs::read_to_string(path).map_err(io)?;
        let key = raw.trim();
        if !Self::well_formed(key) {
            return Err(ProxyError::Config(format!(
                "{}: the key file must hold one non-empty line of visible ASCII",
                path.display()
            )));
        }
        Ok(ApiKey(key.to_string()))
    }

    /// A key given directly (tests, or a caller that read it itself).
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    fn well_formed(key: &str) -> bool {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How the reservation bounds a request's prompt tokens before the upstream has counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptBound {
    /// The request body's length in bytes: every byte-level BPE token covers at least one
    /// byte of text, and the JSON around each message outweighs the chat template's tokens.
    RequestBytes,
    /// A fixed number of tokens per request (an operator's estimate for a tokenizer where the
    /// byte bound does not hold).
    Fixed(u64),
}

/// Everything the proxy enforces. [`Config::new`] gives the defaults; [`Config::validate`]
/// is run by [`crate::Proxy::new`].
#[derive(Debug, Clone)]
pub struct Config {
    pub upstream: Upstream,
    pub api_key: Option<ApiKey>,
    /// The only model name accepted (and listed by `GET /v1/models`).
    pub model: String,
    /// Largest `n` (completions per request).
    pub max_n: u32,
    /// `max_tokens` when a request gives none, and the largest it may ask for.
    pub max_tokens: u32,
    /// Largest request body.
    pub max_body_bytes: usize,
    pub prompt_bound: PromptBound,
    /// Tokens for the whole attempt, kept in the ledger across proxy runs (needs `ledger`).
    pub attempt_budget: Option<u64>,
    /// Tokens for this proxy's run (one scoring run).
    pub run_budget: Option<u64>,
    /// The attempt's ledger (append-only JSONL, see [`crate::ledger`]).
    pub ledger: Option<PathBuf>,
    /// The call log (JSONL, created 0600).
    pub log: Option<PathBuf>,
    /// The log stops growing past this size (later lines are counted, not written), so a
    /// flood of refused calls cannot fill the disk.
    pub max_log_bytes: u64,
    /// Upstream requests at once.
    pub max_concurrent: usize,
    /// Requests per second (a token bucket refilled at this rate) ...
    pub requests_per_second: f64,
    /// ... holding at most this many.
    pub burst: u32,
    /// One upstream call, connection to last byte.
    pub upstream_timeout: Duration,
    /// Reading one downstream request body.
    pub body_timeout: Duration,
    /// Keep the text of every choice the upstream returns, up to this many bytes in all, for
    /// [`crate::RunningProxy::take_completions`] (a scorer checking that a program came from
    /// the model); 0 keeps nothing.
    pub record_completion_bytes: usize,
}

impl Config {
    /// The defaults: `n` ≤ 16, `max_tokens` ≤ 1024, 256 KiB bodies, 4 upstream calls at once,
    /// 10 requests/s (burst 20), 300 s upstream timeout, no budget, no ledger, no log.
    pub fn new(upstream: Upstream, model: impl Into<String>) -> Config {
        Config {
            upstream,
            api_key: None,
            model: model.into(),
            max_n: 16,
            max_tokens: 1024,
            max_body_bytes: 256 * 1024,
            prompt_bound: PromptBound::RequestBytes,
            attempt_budget: None,
            run_budget: None,
            ledger: None,
            log: None,
            max_log_bytes: 64 * 1024 * 1024,
            max_concurrent: 4,
            requests_per_second: 10.0,
            burst: 20,
            upstream_timeout: Duration::from_secs(300),
            body_timeout: Duration::from_secs(30),
            record_completion_bytes: 0,
        }
    }

    /// Refuses settings that would make a rule meaningless.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |m: &str| Err(ProxyError::Config(m.to_string()));
        if self.model.trim().is_empty() {
            return bad("the model name is empty");
        }
        if self.max_n == 0 || self.max_tokens == 0 || self.max_body_bytes == 0 {
            return bad("max-n, max-tokens and the body limit must be at least 1");
        }
        if self.max_concurrent == 0 || self.burst == 0 {
            return bad("the concurrency limit and the burst must be at least 1");
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return bad("requests per second must be a positive number");
        }
        if self.attempt_budget.is_some() && self.ledger.is_none() {
            return bad("a per-attempt budget needs a ledger file to survive restarts");
        }
        if self
            .api_key
            .as_ref()
            .is_some_and(|key| !ApiKey::well_formed(key.expose()))
        {
            return bad("the API key must be one non-empty line of visible ASCII");
        }
        if self.upstream_timeout.is_zero() || self.body_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        assert_eq!(
            Upstream::parse("https://api.example.com/v1/").unwrap(),
            Upstream::Http("https://api.example.com/v1".into())
        );
        assert_eq!(
            Upstream::parse("unix:/run/llm.sock").unwrap(),
            Upstream::Unix("/run/llm.sock".into())
        );
        assert_eq!(
            Upstream::parse("/run/llm.sock").unwrap(),
            Upstream::Unix("/run/llm.sock".into())
        );
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("relative.sock").is_err());
        assert!(Upstream::parse("http://").is_err());
        assert!(Upstream::parse("http://x").is_ok());
    }

    #[test]
    fn key_debug_is_redacted_and_loose_files_refused() {
        let key = ApiKey::new("sk-secret");
        assert!(!format!("{key:?}").contains("sk-secret"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ApiKey::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("readable by other users") && !err.contains("sk-secret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ApiKey::from_file(&path).unwrap().expose(), "sk-secret");
    }

    #[test]
    fn attempt_budget_needs_a_ledger() {
        let mut config = Config::new(Upstream::Unix("/x".into()), "m");
        config.attempt_budget = Some(10);
        assert!(config.validate().is_err());
        config.ledger = Some("/tmp/l".into());
        config.validate().unwrap();
        config.api_key = Some(ApiKey::new(""));
        assert!(config.validate().is_err());
    }
}
