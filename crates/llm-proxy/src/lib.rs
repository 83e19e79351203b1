//! A budgeted proxy in front of an OpenAI-compatible endpoint (issue 28, part 2).
//!
//! The scorer runs it; the agent's program reaches it through the sandbox's model socket
//! (inside, `http://127.0.0.1:PORT` is bridged to the Unix socket the proxy listens on) and
//! reaches nothing else. The proxy holds what the agent must not: the upstream's address and
//! key, the budget and the log. It enforces, each refusal an OpenAI-shaped error
//! ([`rules::ApiError`]):
//!
//! - only `POST /v1/chat/completions` and `GET /v1/models` (answered by the proxy with the one
//!   model); anything else is 404;
//! - the task's model name only; any other is refused (404 `model_not_found`), never forwarded;
//! - `n` ≤ [`Config::max_n`], no streaming, `max_tokens` defaulted to and refused above
//!   [`Config::max_tokens`];
//! - request bodies ≤ [`Config::max_body_bytes`] (413), checked before reading beyond it;
//! - a token budget per attempt (kept in a crash-safe [`ledger`] across proxy runs) and per
//!   scoring run: each request reserves an upper bound first (prompt bound + n * max_tokens),
//!   so concurrent requests cannot overshoot, and is settled with the upstream's `usage`
//!   (429 `budget_exhausted` when a bound does not fit);
//! - requests per second (token bucket) and upstream calls at once; beyond, 429;
//! - an upstream timeout (504) and a generic 502 for upstream failures, never quoting the
//!   upstream's body, address or key; the caller's `Authorization` is not forwarded, the
//!   proxy's key is added;
//! - one JSONL line per call in a 0600 log ([`calllog`]).
//!
//! The upstream client is reqwest: it wraps hyper-util's pooled client and gives http,
//! https (rustls with the ring provider, no C toolchain beyond ring's) and a Unix socket path
//! (for rdbench's `serve-llm`) behind one API, with an overall per-request timeout. The proxy
//! is an axum server on its own tokio runtime and thread, so the synchronous scorer starts it
//! with [`Proxy::serve_unix`] and later reads [`RunningProxy::usage`] and calls
//! [`RunningProxy::shutdown`]. `docs/llm-proxy.md` gives the rules, the ledger format and the
//! threat cases.

pub mod bucket;
pub mod budget;
pub mod calllog;
pub mod config;
pub mod ledger;
pub mod rules;
mod server;
pub mod testing;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

pub use budget::Usage;
pub use config::{ApiKey, Config, PromptBound, Upstream};

/// Setting up or running the proxy failed (requests themselves fail as HTTP errors, not as
/// this).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A ledger line (not a torn last one) cannot be accounted for.
    #[error("{}: line {line}: {message}", path.display())]
    LedgerCorrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: another proxy is using this ledger", .0.display())]
    LedgerLocked(PathBuf),
    /// The HTTP client or the runtime could not be built.
    #[error("cannot start the proxy: {0}")]
    Start(String),
}

/// A configured proxy, not listening yet: the ledger and the log are open.
pub struct Proxy {
    shared: Arc<server::Shared>,
}

/// Where a running proxy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Proxy {
    /// Validates the config, opens and locks the ledger, opens the log, builds the client.
    pub fn new(config: Config) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let ledger = config
            .ledger
            .as_deref()
            .map(ledger::Ledger::open)
            .transpose()?;
        let log = calllog::CallLog::open(config.log.as_deref(), config.max_log_bytes)?;
        let client = client(&config)?;
        let shared = server::Shared {
            chat_url: config.upstream.chat_url(),
            accounts: Arc::new(Mutex::new(budget::Accounts::new(
                ledger,
                config.attempt_budget,
                config.run_budget,
            ))),
            bucket: bucket::TokenBucket::new(config.requests_per_second, config.burst),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            log,
            client,
            config,
            completions: Mutex::new(server::Completions::default()),
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }

    /// Listens on a new Unix socket at `path` (a stale socket file there is replaced; any
    /// other file is refused). Who may connect is decided by the folder's mode.
    pub fn serve_unix(self, path: &Path) -> Result<RunningProxy, ProxyError> {
        use std::os::unix::fs::FileTypeExt;
        let io = |source| ProxyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ProxyError::Config(format!(
                    "{}: exists and is not a socket",
                    path.display()
                )));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ProxyError::Config(format!(
                    "{}: something is listening there already",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        self.start(Listening::Unix(listener), Address::Unix(path.to_path_buf()))
    }

    /// Listens on a TCP address (tests and operators; port 0 picks one, see
    /// [`RunningProxy::address`]).
    pub fn serve_tcp(self, addr: SocketAddr) -> Result<RunningProxy, ProxyError> {
        let io = |source| ProxyError::Io {
            path: PathBuf::from(addr.to_string()),
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        self.start(Listening::Tcp(listener), Address::Tcp(local))
    }

    fn start(self, listening: Listening, address: Address) -> Result<RunningProxy, ProxyError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("llm-proxy")
            .enable_all()
            .build()
            .map_err(|e| ProxyError::Start(format!("tokio runtime: {e}")))?;
        let (stop, stopped) = watch::channel(false);
        let app = server::router(self.shared.clone());
        let served = std::thread::Builder::new()
            .name("llm-proxy".into())
            .spawn(move || runtime.block_on(serve(listening, app, stopped)))
            .map_err(|e| ProxyError::Start(format!("thread: {e}")))?;
        Ok(RunningProxy {
            shared: self.shared,
            address,
            stop,
            served: Some(served),
        })
    }
}

enum Listening {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// How long in-flight calls may finish after a shutdown; later ones are cut (their
/// reservations stay charged in full).
const GRACE: Duration = Duration::from_secs(10);

async fn serve(
    listening: Listening,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut signal = stopped.clone();
    let shutdown = async move {
        let _ = signal.wait_for(|s| *s).await;
    };
    let server = async {
        match listening {
            Listening::Unix(l) => {
                let listener = tokio::net::UnixListener::from_std(l)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Listening::Tcp(l) => {
                let listener = tokio::net::TcpListener::from_std(l)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    };
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(GRACE).await;
        } => Ok(()),
    }
}

/// A proxy serving on its own thread. Dropping it shuts it down too.
pub struct RunningProxy {
    shared: Arc<server::Shared>,
    address: Address,
    stop: watch::Sender<bool>,
    served: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl RunningProxy {
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// This run's usage so far.
    pub fn usage(&self) -> Usage {
        self.shared.accounts().usage()
    }

    /// The texts of the choices returned since the last call (when the config records them),
    /// and how many were not kept for the cap; the cap is counted afresh after each call.
    pub fn take_completions(&self) -> (Vec<String>, usize) {
        let mut kept = self
            .shared
            .completions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *kept);
        (taken.texts, taken.dropped)
    }

    /// One chat completion through this proxy as any client makes it (over its own socket, so
    /// every rule, the budget and the log apply): the HTTP status and the JSON reply. For a
    /// scorer that calls the model on an agent's behalf (an experiment tool).
    pub fn call_chat(
        &self,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), ProxyError> {
        let start =
            |e: &dyn std::fmt::Display| ProxyError::Start(format!("calling the proxy: {e}"));
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(self.shared.config.upstream_timeout + Duration::from_secs(30));
        let url = match &self.address {
            Address::Unix(path) => {
                builder = builder.unix_socket(path.clone());
                "http://proxy/v1/chat/completions".to_string()
            }
            Address::Tcp(addr) => format!("http://{addr}/v1/chat/completions"),
        };
        let client = builder.build().map_err(|e| start(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| start(&e))?;
        runtime.block_on(async {
            let reply = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| start(&e))?;
            let status = reply.status().as_u16();
            let bytes = reply.bytes().await.map_err(|e| start(&e))?;
            let value = serde_json::from_slice(&bytes).map_err(|e| start(&e))?;
            Ok((status, value))
        })
    }

    /// Tokens charged to the attempt, earlier runs included.
    pub fn spent(&self) -> u64 {
        self.usage().attempt_total
    }

    /// Stops listening, lets calls in flight finish (up to 10 s), and returns the run's usage.
    pub fn shutdown(mut self) -> Result<Usage, ProxyError> {
        self.stop_and_join()?;
        Ok(self.usage())
    }

    /// Serves until SIGINT or SIGTERM, then shuts down (the CLI's foreground mode).
    pub fn run_until_signal(self) -> Result<Usage, ProxyError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProxyError::Start(format!("tokio runtime: {e}")))?;
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| ProxyError::Start(format!("signal handler: {e}")))?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            Ok::<_, ProxyError>(())
        })?;
        self.shutdown()
    }

    fn stop_and_join(&mut self) -> Result<(), ProxyError> {
        let _ = self.stop.send(true);
        let Some(served) = self.served.take() else {
            return Ok(());
        };
        let result = served
            .join()
            .map_err(|_| ProxyError::Start("the proxy's thread panicked".into()))?;
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
        result.map_err(|source| ProxyError::Io {
            path: match &self.address {
                Address::Unix(p) => p.clone(),
                Address::Tcp(a) => PathBuf::from(a.to_string()),
            },
            source,
        })
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// The upstream client: no proxies from the environment, no redirects (one could carry the
/// key elsewhere), the upstream timeout on every call.
fn client(config: &Config) -> Result<reqwest::Client, ProxyError> {
    // ring is deprecated by rustls only for lacking post-quantum key exchange; aws-lc-rs would
    // need cmake and a C++ toolchain to build. Installing fails only when a provider is
    // installed already, which is as good.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.upstream_timeout)
        .connect_timeout(config.upstream_timeout.min(Duration::from_secs(10)));
    if let Upstream::Unix(path) = &config.upstream {
        builder = builder.unix_socket(path.clone());
    }
    builder
        .build()
        .map_err(|e| ProxyError::Start(format!("HTTP client: {e}")))
}
