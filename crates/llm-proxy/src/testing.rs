//! A fake OpenAI-compatible endpoint for the tests of what sits behind the proxy (a task's
//! `full` profile, which names an operator's endpoint): a local axum server on its own runtime
//! answering `POST /v1/chat/completions` with the text a closure picks for each request, and
//! keeping each request's `Authorization` header and body for the test to check. Every reply
//! reports the same usage, [`FakeEndpoint::USAGE`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

/// A request the fake received: its `Authorization` header and its JSON body.
pub type Seen = (Option<String>, Value);

/// The endpoint, listening while this value lives.
pub struct FakeEndpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeEndpoint {
    /// (prompt, completion, total) tokens of every reply.
    pub const USAGE: (u64, u64, u64) = (10, 20, 30);

    /// Listens on a free local port; `reply` gives the assistant's text for a request body.
    pub fn start(reply: impl Fn(&Value) -> String + Send + Sync + 'static) -> FakeEndpoint {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a local port");
        let addr = listener.local_addr().expect("a bound address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (log, reply) = (seen.clone(), Arc::new(reply));
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let (log, reply) = (log.clone(), reply.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let content = reply(&body);
                    let (prompt, completion, total) = FakeEndpoint::USAGE;
                    let answer = json!({
                        "id": "fake", "object": "chat.completion", "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                  "total_tokens": total},
                    });
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((auth, body));
                    Json(answer)
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeEndpoint {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// The `base_url` an operator's config names.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far, in the order answered.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
