//! The proxy in front of a fake upstream: a small axum server that answers canned completions
//! with `usage`, counts calls and tokens, and records what reached it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rdbench_llm_proxy::{Address, ApiKey, Config, Proxy, ProxyError, RunningProxy, Upstream};
use serde_json::{json, Value};

const KEY: &str = "sk-test-0123456789-SECRET";
const MODEL: &str = "tiny-coder";
/// Tokens the fake upstream counts per prompt and per choice (at most `max_tokens`).
const PROMPT_TOKENS: u64 = 10;
const CHOICE_TOKENS: u64 = 20;

/// How the fake upstream answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    NoUsage,
    /// A 500 whose body holds text that must not reach the caller.
    Fail,
    /// A completion that quotes the key it was sent.
    EchoKey,
}

#[derive(Default)]
struct Seen {
    calls: AtomicU64,
    /// The sum of `usage.total_tokens` it answered.
    tokens: AtomicU64,
    authorization: Mutex<Vec<Option<String>>>,
    bodies: Mutex<Vec<Value>>,
}

struct Fake {
    mode: Mode,
    delay: Duration,
    seen: Arc<Seen>,
}

async fn completion(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let seen = &fake.seen;
    seen.calls.fetch_add(1, Ordering::SeqCst);
    seen.authorization.lock().unwrap().push(
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
    );
    seen.bodies.lock().unwrap().push(body.clone());
    tokio::time::sleep(fake.delay).await;
    let n = body["n"].as_u64().unwrap_or(1);
    let per_choice = body["max_tokens"].as_u64().unwrap().min(CHOICE_TOKENS);
    let completion = n * per_choice;
    let total = PROMPT_TOKENS + completion;
    seen.tokens.fetch_add(total, Ordering::SeqCst);
    let content = if fake.mode == Mode::EchoKey {
        headers["authorization"].to_str().unwrap().to_string()
    } else {
        "fn main() {}".to_string()
    };
    let mut reply = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": (0..n).map(|i| json!({"index": i, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}})).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
                  "total_tokens": total},
    });
    match fake.mode {
        Mode::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "SECRET-UPSTREAM-BODY other attempt's prompt",
        )
            .into_response(),
        Mode::NoUsage => {
            reply.as_object_mut().unwrap().remove("usage");
            Json(reply).into_response()
        }
        _ => Json(reply).into_response(),
    }
}

fn fake_app(mode: Mode, delay: Duration) -> (axum::Router, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let fake = Arc::new(Fake {
        mode,
        delay,
        seen: seen.clone(),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completion))
        .with_state(fake);
    (app, seen)
}

/// A fake upstream on TCP; its base URL.
async fn fake_tcp(mode: Mode, delay: Duration) -> (String, Arc<Seen>) {
    let (app, seen) = fake_app(mode, delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

struct Setup {
    dir: tempfile::TempDir,
    config: Config,
}

impl Setup {
    fn new(upstream: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(Upstream::parse(upstream).unwrap(), MODEL);
        config.api_key = Some(ApiKey::new(KEY));
        config.log = Some(dir.path().join("calls.jsonl"));
        config.max_tokens = 64;
        config.requests_per_second = 1000.0;
        config.burst = 1000;
        config.max_concurrent = 64;
        Setup { dir, config }
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger.jsonl")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.config.log.as_ref().unwrap()).unwrap()
    }

    fn start(&self) -> (RunningProxy, String) {
        let proxy = Proxy::new(self.config.clone())
            .unwrap()
            .serve_tcp("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let Address::Tcp(addr) = proxy.address().clone() else {
            unreachable!()
        };
        (proxy, base_url(addr))
    }
}

fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1")
}

fn chat(extra: Value) -> Value {
    let mut body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "sum two ints"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The agent's side: a reqwest client too, which needs the process's rustls provider (the
/// proxy installs it, but a test may build its client first).
fn downstream() -> reqwest::Client {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Posts a chat request; the status and the reply's JSON.
async fn post(client: &reqwest::Client, base: &str, body: &Value) -> (StatusCode, Value) {
    let reply = client
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer agent-own-token")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert!(!text.contains(KEY), "the key reached the caller: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("<none>")
}

/// Shuts down off the async workers (it joins the proxy's thread).
async fn shutdown(proxy: RunningProxy) -> rdbench_llm_proxy::Usage {
    tokio::task::spawn_blocking(move || proxy.shutdown().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_call_passes_with_the_proxy_key_and_is_logged() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::ZERO).await;
    let setup = Setup::new(&upstream);
    let (proxy, base) = setup.start();
    let client = downstream();

    let (status, reply) = post(&client, &base, &chat(json!({"n": 2, "max_tokens": 8}))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["choices"].as_array().unwrap().len(), 2);
    assert_eq!(reply["usage"]["total_tokens"], PROMPT_TOKENS + 16);
    // No max_tokens: the cap is filled in.
    let (status, _) = post(&client, &base, &chat(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.bodies.lock().unwrap()[1]["max_tokens"], 64);
    // The caller's Authorization is replaced by the proxy's key.
    let auth = seen.authorization.lock().unwrap().clone();
    assert_eq!(auth, vec![Some(format!("Bearer {KEY}")); 2]);

    let models = client
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    let root = base.trim_end_matches("/v1");
    for (method, path) in [
        ("GET", "/v1/completions"),
        ("POST", "/v1/models"),
        ("GET", "/"),
    ] {
        let reply = client
            .request(method.parse().unwrap(), format!("{root}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let usage = shutdown(proxy).await;
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
    assert_eq!((usage.requests, usage.refused), (6, 3));
    assert_eq!(usage.total, seen.tokens.load(Ordering::SeqCst));
    assert_eq!(usage.prompt_tokens, 2 * PROMPT_TOKENS);

    let log = setup.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["model"], MODEL);
    assert_eq!(lines[0]["n"], 2);
    assert_eq!(lines[0]["max_tokens"], 8);
    assert_eq!(lines[0]["completion_tokens"], 16);
    assert!(lines[0]["latency_ms"].is_u64() && lines[0]["time"].is_string());
    assert_eq!(lines[3]["refused"], "unknown_url");
    assert!(!log.contains(KEY) && !log.contains(&upstream));
    let mode = std::fs::metadata(setup.config.log.as_ref().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_breaking_requests_are_refused_and_never_forwarded() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::ZERO).await;
    let setup = Setup::new(&upstream);
    let (proxy, base) = setup.start();
    let client = downstream();
    let cases = [
        (chat(json!({"model": "gpt-4o"})), 404, "model_not_found"),
        (chat(json!({"n": 17})), 400, "n_too_large"),
        (chat(json!({"stream": true})), 400, "stream_not_supported"),
        (chat(json!({"max_tokens": 65})), 400, "max_tokens_too_large"),
        (json!({"messages": []}), 400, "model_required"),
    ];
    for (body, status, expected) in cases {
        let (got, reply) = post(&client, &base, &body).await;
        assert_eq!((got.as_u16(), code(&reply)), (status, expected), "{reply}");
        assert!(reply["error"]["message"].is_string() && reply["error"]["type"].is_string());
    }
    // Over the size limit: refused on the declared length.
    let mut config = setup.config.clone();
    config.max_body_bytes = 1024;
    drop(proxy);
    let small = Proxy::new(config)
        .unwrap()
        .serve_tcp("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let Address::Tcp(addr) = small.address().clone() else {
        unreachable!()
    };
    let big = chat(json!({"messages": [{"role": "user", "content": "x".repeat(4096)}]}));
    let (status, reply) = post(&client, &base_url(addr), &big).await;
    assert_eq!((status.as_u16(), code(&reply)), (413, "request_too_large"));
    // And without a length (chunked), cut at the limit.
    let status = chunked_post(addr, &serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, 413);
    shutdown(small).await;
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        0,
        "a refused call was forwarded"
    );
    let log = setup.log_text();
    assert!(log.contains("\"model\":\"gpt-4o\"") && log.contains("\"refused\":\"n_too_large\""));
}

/// A raw HTTP/1.1 request with a chunked body (no Content-Length); the reply's status.
async fn chunked_post(addr: SocketAddr, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    for chunk in body.chunks(256) {
        request.extend(format!("{:x}\r\n", chunk.len()).bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The proxy may answer and close before reading it all: a write error is fine.
    let _ = stream.write_all(&request).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let text = String::from_utf8_lossy(&reply);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_runs_out_with_429_and_the_ledger_continues_after_a_restart() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::ZERO).await;
    let mut setup = Setup::new(&upstream);
    setup.config.ledger = Some(setup.ledger());
    setup.config.prompt_bound = rdbench_llm_proxy::PromptBound::Fixed(PROMPT_TOKENS);
    // Each call reserves 10 + 20 and costs 30: three calls fit in 100.
    setup.config.attempt_budget = Some(100);
    let client = downstream();
    let body = chat(json!({"max_tokens": 20}));

    let (proxy, base) = setup.start();
    for _ in 0..2 {
        assert_eq!(post(&client, &base, &body).await.0, StatusCode::OK);
    }
    assert_eq!(proxy.spent(), 60);
    shutdown(proxy).await;

    let (proxy, base) = setup.start();
    assert_eq!(proxy.spent(), 60, "the restarted proxy lost the ledger");
    assert_eq!(post(&client, &base, &body).await.0, StatusCode::OK);
    let (status, reply) = post(&client, &base, &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code(&reply), "budget_exhausted");
    assert_eq!(reply["error"]["type"], "insufficient_quota");
    // 10 tokens are left; even the smallest request reserves 10 + 1.
    let (status, _) = post(&client, &base, &chat(json!({"max_tokens": 1}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let usage = shutdown(proxy).await;
    assert_eq!((usage.total, usage.attempt_total), (30, 90));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 3);

    // The ledger's last line torn by a crash: dropped, and the count goes on.
    let ledger = setup.ledger();
    let mut text = std::fs::read_to_string(&ledger).unwrap();
    text.push_str("{\"op\":\"reserve\",\"id\":9,\"to");
    std::fs::write(&ledger, &text).unwrap();
    let (proxy, _) = setup.start();
    assert_eq!(proxy.spent(), 90);
    shutdown(proxy).await;
    // A damaged line elsewhere: the proxy does not start on a ledger it cannot account for.
    std::fs::write(&ledger, format!("not json\n{text}\n")).unwrap();
    let err = Proxy::new(setup.config.clone()).err().unwrap();
    assert!(
        matches!(err, ProxyError::LedgerCorrupt { line: 1, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_cannot_overshoot_the_budget() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::from_millis(30)).await;
    let mut setup = Setup::new(&upstream);
    setup.config.ledger = Some(setup.ledger());
    const BUDGET: u64 = 1000;
    setup.config.attempt_budget = Some(BUDGET);
    setup.config.run_budget = Some(BUDGET);
    let (proxy, base) = setup.start();
    let client = downstream();
    let body = chat(json!({"n": 3, "max_tokens": 20}));
    let calls = (0..60).map(|_| {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        tokio::spawn(async move { post(&client, &base, &body).await })
    });
    let mut ok = 0;
    for call in calls.collect::<Vec<_>>() {
        let (status, reply) = call.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_eq!(code(&reply), "budget_exhausted"),
            other => panic!("{other}: {reply}"),
        }
    }
    let served = seen.tokens.load(Ordering::SeqCst);
    let usage = shutdown(proxy).await;
    assert!((1..60).contains(&ok), "{ok} calls passed");
    assert!(
        served <= BUDGET,
        "the upstream served {served} tokens of {BUDGET}"
    );
    assert_eq!(usage.total, served);
    assert_eq!(usage.attempt_total, served);
    assert_eq!(seen.calls.load(Ordering::SeqCst), ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_usage_charges_the_reservation() {
    let (upstream, _) = fake_tcp(Mode::NoUsage, Duration::ZERO).await;
    let mut setup = Setup::new(&upstream);
    setup.config.prompt_bound = rdbench_llm_proxy::PromptBound::Fixed(5);
    let (proxy, base) = setup.start();
    let (status, _) = post(
        &downstream(),
        &base,
        &chat(json!({"n": 2, "max_tokens": 10})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shutdown(proxy).await.total, 5 + 2 * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_generic_and_leak_nothing() {
    let client = downstream();
    // Down: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let (fail, _) = fake_tcp(Mode::Fail, Duration::ZERO).await;
    let (echo, _) = fake_tcp(Mode::EchoKey, Duration::ZERO).await;
    let (slow, _) = fake_tcp(Mode::Normal, Duration::from_secs(5)).await;
    for (upstream, status, expected) in [
        (&down, 502, "upstream_error"),
        (&fail, 502, "upstream_error"),
        (&echo, 502, "upstream_error"),
        (&slow, 504, "upstream_timeout"),
    ] {
        let mut setup = Setup::new(upstream);
        setup.config.upstream_timeout = Duration::from_millis(500);
        let (proxy, base) = setup.start();
        let (got, reply) = post(&client, &base, &chat(json!({}))).await;
        assert_eq!(
            (got.as_u16(), code(&reply)),
            (status, expected),
            "{upstream}: {reply}"
        );
        let text = reply.to_string();
        let port = upstream.rsplit(':').next().unwrap().trim_end_matches("/v1");
        assert!(
            !text.contains(port) && !text.contains("127.0.0.1"),
            "{text}"
        );
        assert!(!text.contains("SECRET-UPSTREAM-BODY"), "{text}");
        shutdown(proxy).await;
        let log = setup.log_text();
        assert!(
            !log.contains(KEY) && !log.contains("SECRET-UPSTREAM-BODY"),
            "{log}"
        );
        assert!(
            log.contains(&format!("\"refused\":\"{expected}\"")),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_rate_are_refused() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::ZERO).await;
    let mut setup = Setup::new(&upstream);
    setup.config.requests_per_second = 0.5;
    setup.config.burst = 2;
    let (proxy, base) = setup.start();
    let client = downstream();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, reply) = post(&client, &base, &chat(json!({}))).await;
        statuses.push((status.as_u16(), code(&reply).to_string()));
    }
    assert_eq!(statuses[2], (429, "rate_limit_exceeded".to_string()));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
    shutdown(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let upstream_socket = dir.path().join("llm.sock");
    let (app, seen) = fake_app(Mode::Normal, Duration::ZERO);
    let listener = tokio::net::UnixListener::bind(&upstream_socket).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut setup = Setup::new(upstream_socket.to_str().unwrap());
    setup.config.api_key = None;
    let socket = dir.path().join("proxy.sock");
    let proxy = Proxy::new(setup.config.clone())
        .unwrap()
        .serve_unix(&socket)
        .unwrap();
    downstream();
    let client = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let (status, reply) = post(&client, "http://proxy/v1", &chat(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    // Without a key, the caller's header is still not passed on.
    assert_eq!(seen.authorization.lock().unwrap()[0], None);
    // A second proxy cannot take over the live socket.
    let err = Proxy::new(Config {
        ledger: None,
        log: None,
        ..setup.config.clone()
    })
    .unwrap()
    .serve_unix(&socket)
    .err()
    .unwrap();
    assert!(err.to_string().contains("listening there already"), "{err}");
    shutdown(proxy).await;
    assert!(
        !Path::new(&socket).exists(),
        "the socket is removed on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_is_charged_what_the_upstream_counted() {
    let (upstream, seen) = fake_tcp(Mode::Normal, Duration::from_millis(400)).await;
    let mut setup = Setup::new(&upstream);
    setup.config.ledger = Some(setup.ledger());
    let (proxy, base) = setup.start();
    let hung_up = downstream()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .timeout(Duration::from_millis(50))
        .body(serde_json::to_vec(&chat(json!({"max_tokens": 20}))).unwrap())
        .send()
        .await;
    assert!(hung_up.is_err());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    let served = seen.tokens.load(Ordering::SeqCst);
    assert_eq!(served, PROMPT_TOKENS + 20);
    assert_eq!(
        proxy.spent(),
        served,
        "settled with the reply's usage, not the reservation"
    );
    shutdown(proxy).await;
}

/// A scorer that checks where a program came from reads every choice served, and nothing
/// more than its cap; a refused call records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_choices_are_recorded_within_the_cap() {
    let (upstream, _) = fake_tcp(Mode::Normal, Duration::ZERO).await;
    let mut setup = Setup::new(&upstream);
    setup.config.record_completion_bytes = 5 * "fn main() {}".len();
    let (proxy, base) = setup.start();
    let client = downstream();
    let (status, _) = post(&client, &base, &chat(json!({"n": 3}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&client, &base, &chat(json!({"n": 99}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (texts, dropped) = proxy.take_completions();
    assert_eq!(texts, vec!["fn main() {}"; 3]);
    assert_eq!(dropped, 0);
    // Taken: the next call starts afresh, and what passes the cap is counted, not kept.
    let (status, _) = post(&client, &base, &chat(json!({"n": 7}))).await;
    assert_eq!(status, StatusCode::OK);
    let (texts, dropped) = proxy.take_completions();
    assert_eq!((texts.len(), dropped), (5, 2));
    shutdown(proxy).await;
}

/// The scorer's own call (an experiment tool's) goes through the same rules and budget.
#[test]
fn a_call_made_by_the_scorer_obeys_the_same_rules() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (upstream, seen) = runtime.block_on(fake_tcp(Mode::Normal, Duration::ZERO));
    let mut setup = Setup::new(&upstream);
    setup.config.run_budget = Some(10 + 2 * CHOICE_TOKENS + 5);
    setup.config.prompt_bound = rdbench_llm_proxy::PromptBound::Fixed(10);
    let (proxy, _) = setup.start();
    let (status, reply) = proxy
        .call_chat(&chat(json!({"n": 2, "max_tokens": 20})))
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["choices"].as_array().unwrap().len(), 2);
    let (status, reply) = proxy.call_chat(&chat(json!({"model": "other"}))).unwrap();
    assert_eq!((status, code(&reply)), (404, "model_not_found"), "{reply}");
    let (status, reply) = proxy
        .call_chat(&chat(json!({"n": 2, "max_tokens": 20})))
        .unwrap();
    assert_eq!((status, code(&reply)), (429, "budget_exhausted"), "{reply}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    runtime.block_on(shutdown(proxy));
}
