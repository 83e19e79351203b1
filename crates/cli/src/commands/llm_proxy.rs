//! `rdbench llm-proxy`: the budgeted model proxy in the foreground, for operators (scorers
//! start it through `rdbench_llm_proxy` directly). The flags become a
//! [`rdbench_llm_proxy::Config`] first; it serves until SIGINT or SIGTERM and prints the usage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdbench_core::{Error, Result};
use rdbench_llm_proxy::{ApiKey, Config, Proxy, ProxyError, Upstream};

use super::Context;

/// `rdbench llm-proxy` (see `docs/llm-proxy.md`).
#[derive(clap::Args, Debug)]
pub struct LlmProxyArgs {
    /// The upstream: an OpenAI-style base URL (`https://host/v1`) or a Unix socket path
    /// (`unix:/path` or `/path`, e.g. `rdbench serve-llm`'s).
    #[arg(long)]
    pub upstream: String,
    /// A file (mode 0600) holding the upstream's API key; sent only upstream.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The only model name served.
    #[arg(long)]
    pub model: String,
    /// Listen on this Unix socket (the sandbox's model socket).
    #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
    pub unix_socket: Option<PathBuf>,
    /// Listen on this TCP address instead (e.g. 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Tokens for the whole attempt, kept in `--ledger` across runs.
    #[arg(long, requires = "ledger")]
    pub budget_tokens: Option<u64>,
    /// Tokens for this run of the proxy.
    #[arg(long)]
    pub run_budget_tokens: Option<u64>,
    /// The attempt's ledger file (append-only JSONL).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// The call log (JSONL, created 0600).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Largest `n` per request.
    #[arg(long, default_value_t = 16)]
    pub max_n: u32,
    /// `max_tokens` cap (and default).
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Upstream calls at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Requests per second (burst: twice as many).
    #[arg(long, default_value_t = 10.0)]
    pub rps: f64,
    /// Seconds an upstream call may take.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

impl LlmProxyArgs {
    /// The flags as the proxy's config (validated again by `Proxy::new`).
    fn config(&self) -> Result<Config> {
        let mut config = Config::new(Upstream::parse(&self.upstream).map_err(error)?, &self.model);
        config.api_key = self
            .key_file
            .as_deref()
            .map(ApiKey::from_file)
            .transpose()
            .map_err(error)?;
        config.attempt_budget = self.budget_tokens;
        config.run_budget = self.run_budget_tokens;
        config.ledger = self.ledger.clone();
        config.log = self.log.clone();
        config.max_n = self.max_n;
        config.max_tokens = self.max_tokens;
        config.max_concurrent = self.max_concurrent;
        config.requests_per_second = self.rps;
        config.burst = (self.rps * 2.0).ceil().clamp(1.0, 10_000.0) as u32;
        config.upstream_timeout = Duration::from_secs(self.timeout_s);
        config.validate().map_err(error)?;
        Ok(config)
    }
}

pub fn llm_proxy(ctx: &Context, args: &LlmProxyArgs) -> Result<i32> {
    let config = args.config()?;
    let proxy = Proxy::new(config).map_err(error)?;
    let running = match (&args.unix_socket, args.listen) {
        (Some(path), _) => proxy.serve_unix(path),
        (None, Some(addr)) => proxy.serve_tcp(addr),
        (None, None) => unreachable!("clap requires --unix-socket or --listen"),
    }
    .map_err(error)?;
    eprintln!(
        "rdbench llm-proxy: serving model `{}` on {:?}; Ctrl-C to stop",
        args.model,
        running.address()
    );
    let usage = running.run_until_signal().map_err(error)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string(&usage).map_err(|e| Error::Internal(e.to_string()))?
        );
    } else {
        println!(
            "requests {}, refused {}, upstream errors {}, tokens {} (prompt {}, completion {}), attempt total {}",
            usage.requests,
            usage.refused,
            usage.upstream_errors,
            usage.total,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.attempt_total
        );
    }
    Ok(0)
}

/// The proxy's errors as the CLI's exit codes: bad settings are usage errors, the rest the
/// environment's.
fn error(e: ProxyError) -> Error {
    match e {
        ProxyError::Config(message) => Error::Usage(message),
        ProxyError::Io { path, source } => Error::io(path, source),
        ProxyError::LedgerCorrupt { ref path, .. } => Error::bad_input(path.clone(), e.to_string()),
        other => Error::Environment(other.to_string()),
    }
}
