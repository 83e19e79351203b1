//! The HTTP server (axum on tokio): `POST /v1/chat/completions`, `GET /v1/models` and
//! `GET /v1/models/{id}`, on a TCP address or a Unix socket.
//!
//! The model is one value behind a mutex: requests are generated one at a time, in tokio's
//! blocking pool (a request waits its turn there), never on the async workers, which only
//! parse, validate and answer. A client that disconnects does not stop its generation.
//! Bodies are read up to [`ServerConfig::max_body_bytes`] (413 beyond).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::{completion_body, ApiError, ChatRequest, Limits};
use crate::generate::generate;
use crate::{ChatModel, LlmError};

/// What the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The one model name requests must name (`/v1/models` lists it).
    pub model_name: String,
    /// Largest request body read, in bytes.
    pub max_body_bytes: usize,
    /// Largest `n` (choices per request).
    pub max_n: usize,
}

impl ServerConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
    pub const DEFAULT_MAX_N: usize = 16;

    pub fn new(model_name: impl Into<String>) -> Self {
        ServerConfig {
            model_name: model_name.into(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_n: Self::DEFAULT_MAX_N,
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

struct Shared<M> {
    limits: Limits,
    max_body_bytes: usize,
    model: Arc<Mutex<M>>,
}

/// The routes, serving `model` under `config`.
pub fn router<M: ChatModel>(model: M, config: &ServerConfig) -> Router {
    let shared = Arc::new(Shared {
        limits: Limits {
            model_name: config.model_name.clone(),
            max_n: config.max_n,
        },
        max_body_bytes: config.max_body_bytes,
        model: Arc::new(Mutex::new(model)),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat::<M>))
        .route("/v1/models", get(models::<M>))
        .route("/v1/models/{id}", get(one_model::<M>))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(shared)
}

async fn chat<M: ChatModel>(
    State(shared): State<Arc<Shared<M>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(shared.max_body_bytes)
        } else {
            ApiError::bad_body(e.body_text())
        }
    })?;
    let request: ChatRequest = serde_json::from_slice(&body).map_err(ApiError::bad_body)?;
    let request = request.validate(&shared.limits, rand::random())?;
    let model = shared.model.clone();
    let generation = tokio::task::spawn_blocking(move || {
        // A panic in an earlier request left no half-done state: each request starts from a
        // clone of the model's empty cache.
        let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
        generate(&mut *model, &request.messages, &request.params)
    })
    .await
    .map_err(|e| ApiError::server(format!("the generation failed: {e}")))?
    .map_err(|e| match e {
        LlmError::PromptTooLong { .. } => ApiError::context_length(e.to_string()),
        // The template refuses conversations it cannot render (roles out of order...).
        LlmError::Template(_) => ApiError::invalid("messages", e.to_string()),
        e => ApiError::server(e.to_string()),
    })?;
    let id = format!("chatcmpl-{:016x}", rand::random::<u64>());
    Ok(Json(completion_body(
        &shared.limits.model_name,
        &id,
        unix_now(),
        &generation,
    )))
}

fn model_entry(name: &str) -> Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": "rdbench"})
}

async fn models<M: ChatModel>(State(shared): State<Arc<Shared<M>>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_entry(&shared.limits.model_name)]}))
}

async fn one_model<M: ChatModel>(
    State(shared): State<Arc<Shared<M>>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    if id != shared.limits.model_name {
        return Err(ApiError::model_not_found(&id));
    }
    Ok(Json(model_entry(&id)))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `router` on `listen` until SIGINT or SIGTERM; `on_ready` gets the address served
/// (for TCP port 0, the port chosen) once the listener is bound.
pub async fn serve(
    router: Router,
    listen: &Listen,
    on_ready: impl FnOnce(String),
) -> Result<(), LlmError> {
    serve_until(router, listen, on_ready, shutdown()).await
}

/// [`serve`], stopping gracefully when `stop` completes instead of on a signal.
pub async fn serve_until(
    router: Router,
    listen: &Listen,
    on_ready: impl FnOnce(String),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), LlmError> {
    let failed = |what: String| move |source| LlmError::Serve { what, source };
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(failed(format!("listening on {addr}")))?;
            let local = listener
                .local_addr()
                .map_err(failed("the bound address".into()))?;
            on_ready(format!("http://{local}"));
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
                .map_err(failed(format!("serving on {local}")))
        }
        Listen::Unix(path) => {
            remove_stale_socket(path)?;
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(failed(format!("listening on {}", path.display())))?;
            on_ready(format!("unix:{}", path.display()));
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
                .map_err(failed(format!("serving on {}", path.display())));
            let _ = std::fs::remove_file(path);
            served
        }
    }
}

/// A socket file left by a server that died is replaced; a live server's socket, or a file
/// that is not a socket, is an error.
fn remove_stale_socket(path: &Path) -> Result<(), LlmError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let in_use = |message: &str| LlmError::Serve {
        what: format!("listening on {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::AddrInUse, message.to_owned()),
    };
    if !meta.file_type().is_socket() {
        return Err(in_use("exists and is not a socket"));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(in_use("another server is listening there"));
    }
    std::fs::remove_file(path).map_err(|source| LlmError::Serve {
        what: format!("removing the stale socket {}", path.display()),
        source,
    })
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Serves `model` until a signal: a runtime of one async worker (the model runs in the
/// blocking pool), `on_ready` as in [`serve`].
pub fn run<M: ChatModel>(
    model: M,
    config: &ServerConfig,
    listen: &Listen,
    on_ready: impl FnOnce(String),
) -> Result<(), LlmError> {
    runtime()?.block_on(serve(router(model, config), listen, on_ready))
}

/// The server's runtime: one async worker (requests are parsed there; the model runs in the
/// blocking pool).
fn runtime() -> Result<tokio::runtime::Runtime, LlmError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("llm-server")
        .enable_all()
        .build()
        .map_err(|source| LlmError::Serve {
            what: "starting the async runtime".into(),
            source,
        })
}

/// A server running on a thread of its own, for a process that serves a model for a while (a
/// scorer serving the task's model to its proxy during one scoring run). Dropping it stops
/// the server and waits for it.
pub struct RunningServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), LlmError>>>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, and returns how serving ended.
    pub fn shutdown(mut self) -> Result<(), LlmError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), LlmError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(served)) => served,
            Some(Err(_)) => Err(LlmError::Serve {
                what: "the server's thread".into(),
                source: std::io::Error::other("panicked"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Serves `model` on `listen` from a new thread (one async worker; the model in the blocking
/// pool) until [`RunningServer::shutdown`]. Returns once the listener is bound, so a client may
/// connect at once; a failure to bind is returned here.
pub fn spawn<M: ChatModel>(
    model: M,
    config: &ServerConfig,
    listen: &Listen,
) -> Result<RunningServer, LlmError> {
    let runtime = runtime()?;
    let app = router(model, config);
    let listen = listen.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, bound) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("llm-server".into())
        .spawn(move || {
            let stopped = async move {
                let _ = stopped.await;
            };
            runtime.block_on(serve_until(
                app,
                &listen,
                |_| {
                    let _ = ready.send(());
                },
                stopped,
            ))
        })
        .map_err(|source| LlmError::Serve {
            what: "starting the server's thread".into(),
            source,
        })?;
    let mut running = RunningServer {
        stop: Some(stop),
        thread: Some(thread),
    };
    if bound.recv().is_err() {
        // The thread ended before binding: its result says why.
        return Err(running.stop_and_join().err().unwrap_or(LlmError::Serve {
            what: "starting the server".into(),
            source: std::io::Error::other("ended before listening"),
        }));
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::tests::Counter;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> Router {
        let mut config = ServerConfig::new("counter");
        config.max_body_bytes = 4096;
        router(
            Counter {
                end_after: 4,
                prefills: 0,
            },
            &config,
        )
    }

    async fn call(method: &str, uri: &str, body: &str) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A request to the test model with one user message (plain text: not escaped).
    fn user_says(content: &str) -> String {
        format!(
            r#"{{"model": "counter", "messages": [{{"role": "user", "content": "{content}"}}]}}"#
        )
    }

    #[tokio::test]
    async fn completes_with_usage() {
        let body = r#"{"model": "counter", "messages": [{"role": "user", "content": "ab"}], "n": 2, "temperature": 0}"#;
        let (status, v) = call("POST", "/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "cde");
        assert_eq!(v["choices"][1]["message"]["content"], "cde");
        assert_eq!(v["choices"][1]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10})
        );
        assert_eq!(v["model"], "counter");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }

    #[tokio::test]
    async fn errors_have_openais_shape_and_status() {
        let (status, v) = call(
            "POST",
            "/v1/chat/completions",
            r#"{"model": "gpt-4", "messages": []}"#,
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("model_not_found"))
        );
        let (status, v) = call("POST", "/v1/chat/completions", "{not json").await;
        assert_eq!(
            (status, v["error"]["type"].as_str()),
            (400, Some("invalid_request_error"))
        );
        let big = user_says(&"a".repeat(5000));
        let (status, v) = call("POST", "/v1/chat/completions", &big).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (413, Some("request_too_large"))
        );
        let long = user_says(&"a".repeat(100));
        let (status, v) = call("POST", "/v1/chat/completions", &long).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("context_length_exceeded"))
        );
        let (status, v) = call("GET", "/v1/nothing", "").await;
        assert_eq!(status, 404);
        assert_eq!(v["error"]["message"], "Invalid URL (GET /v1/nothing)");
    }

    #[tokio::test]
    async fn lists_the_one_model() {
        let (status, v) = call("GET", "/v1/models", "").await;
        assert_eq!(status, 200);
        assert_eq!(v["data"][0]["id"], "counter");
        assert_eq!(call("GET", "/v1/models/counter", "").await.0, 200);
        assert_eq!(call("GET", "/v1/models/other", "").await.0, 404);
    }

    #[tokio::test]
    async fn serves_on_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("rdbench-llm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("llm.sock");
        let listen = Listen::Unix(path.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server =
            tokio::spawn(async move { serve(app(), &listen, |a| tx.send(a).unwrap()).await });
        assert_eq!(rx.await.unwrap(), format!("unix:{}", path.display()));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        stream
            .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains(r#""id":"counter""#), "{reply}");
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
