//! The request path: route, read the body within its limit, apply the rules, take a rate
//! token and an upstream slot, reserve the budget, forward, settle, log.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::bucket::TokenBucket;
use crate::budget::{Accounts, Reservation};
use crate::calllog::{CallLog, Entry};
use crate::config::Config;
use crate::rules::{self, ApiError, Checked};

/// What every request shares.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub client: reqwest::Client,
    pub chat_url: String,
    pub accounts: Arc<Mutex<Accounts>>,
    pub bucket: TokenBucket,
    pub slots: Arc<Semaphore>,
    pub log: CallLog,
    pub completions: Mutex<Completions>,
}

/// The choices' texts kept for the scorer, within [`Config::record_completion_bytes`].
#[derive(Debug, Default)]
pub struct Completions {
    pub texts: Vec<String>,
    pub bytes: usize,
    /// Texts not kept because the cap was reached.
    pub dropped: usize,
}

impl Shared {
    pub fn accounts(&self) -> std::sync::MutexGuard<'_, Accounts> {
        lock(&self.accounts)
    }
}

fn lock(accounts: &Mutex<Accounts>) -> std::sync::MutexGuard<'_, Accounts> {
    // A panic elsewhere must not stop the accounting: the counts are still whole numbers.
    accounts.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every path goes through [`handle`], so every call is logged, 404s included.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let mut entry = Entry {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        method: request.method().to_string(),
        path: rules::shorten(request.uri().path()),
        ..Entry::default()
    };
    let response = match route(&shared, request, &mut entry).await {
        Ok(response) => response,
        Err(error) => {
            entry.refused = Some(error.code);
            error.into_response()
        }
    };
    entry.status = response.status().as_u16();
    entry.latency_ms = started.elapsed().as_millis() as u64;
    {
        let mut accounts = shared.accounts();
        let usage = accounts.usage_mut();
        usage.requests += 1;
        match entry.refused {
            Some("upstream_error" | "upstream_timeout") => usage.upstream_errors += 1,
            Some(_) => usage.refused += 1,
            None => {}
        }
        usage.prompt_tokens += entry.prompt_tokens.unwrap_or(0);
        usage.completion_tokens += entry.completion_tokens.unwrap_or(0);
    }
    shared.log.write(&entry);
    response
}

async fn route(
    shared: &Arc<Shared>,
    request: Request,
    entry: &mut Entry,
) -> Result<Response, ApiError> {
    let config = &shared.config;
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let is_chat = match (method, path.as_str()) {
        (Method::POST, "/v1/chat/completions") => true,
        (Method::GET, "/v1/models") => false,
        _ => return Err(ApiError::not_found()),
    };
    // Every served call takes a rate token, so a flood of cheap calls is refused as well.
    if !shared.bucket.try_take() {
        return Err(ApiError::rate_limited(
            "rate_limit_exceeded",
            format!(
                "More than {} requests per second; slow down.",
                config.requests_per_second
            ),
        ));
    }
    if !is_chat {
        return Ok(axum::Json(rules::models(config)).into_response());
    }
    let bytes = read_body(config, request).await?;
    let checked = rules::check_chat(&bytes, config).inspect_err(|_| {
        entry.model = model_of(&bytes);
    })?;
    entry.model = Some(config.model.clone());
    entry.n = Some(checked.n);
    entry.max_tokens = Some(checked.max_tokens);
    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
        return Err(ApiError::rate_limited(
            "too_many_concurrent_requests",
            format!(
                "More than {} requests at once; wait for one to finish.",
                config.max_concurrent
            ),
        ));
    };
    let reservation = reserve(shared, checked.reserve).await?;
    // Its own task: a caller that hangs up does not cancel the upstream call half-way, so the
    // reservation is always settled with what the call cost.
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            let outcome = forward(&shared, &checked, reservation).await;
            drop(slot);
            outcome
        }
    });
    let outcome = task.await.map_err(|_| ApiError::internal())?;
    entry.charged = outcome.charged;
    entry.prompt_tokens = outcome.prompt_tokens;
    entry.completion_tokens = outcome.completion_tokens;
    outcome.reply
}

/// Reads at most `max_body_bytes`: a larger declared length is refused before any byte is
/// read, and a body that grows past the limit (chunked, or lying about its length) is cut off
/// there.
async fn read_body(config: &Config, request: Request) -> Result<Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(config.body_timeout, body.collect()).await {
        Err(_) => Err(ApiError::body_timeout()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(limit))
        }
        // The caller broke the connection: nobody reads this reply, the log does.
        Ok(Err(_)) => Err(ApiError::invalid(
            "body",
            "request_broken",
            "The request body broke off.".into(),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The refused request's model, for the log only (cut short).
fn model_of(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get("model")?.as_str().map(rules::shorten)
}

/// Reserves under the accounts' lock, off the async workers (the ledger fsyncs).
async fn reserve(shared: &Arc<Shared>, tokens: u64) -> Result<Reservation, ApiError> {
    let accounts = shared.accounts.clone();
    let granted = tokio::task::spawn_blocking(move || lock(&accounts).reserve(tokens))
        .await
        .map_err(|_| ApiError::internal())?;
    match granted {
        Ok(Ok(reservation)) => Ok(reservation),
        Ok(Err(over)) => Err(ApiError::budget_exhausted(
            over.scope,
            over.needed,
            over.left,
        )),
        Err(e) => {
            tracing::error!("llm-proxy: ledger: {e}");
            Err(ApiError::internal())
        }
    }
}

/// What one forwarded call produced.
struct Outcome {
    reply: Result<Response, ApiError>,
    charged: u64,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Sends the request upstream with the proxy's key (no header of the caller's), and settles.
///
/// Charges: the upstream's `usage.total_tokens` when it reports one; the whole reservation
/// when it does not, or when the call timed out or broke after sending (it may have run);
/// the prompt bound alone for an upstream error status (it generated nothing); nothing when
/// the upstream could not be reached at all.
async fn forward(shared: &Arc<Shared>, checked: &Checked, reservation: Reservation) -> Outcome {
    let reserved = reservation.tokens;
    let prompt_bound = reserved - checked.n * checked.max_tokens;
    let mut request = shared
        .client
        .post(&shared.chat_url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&checked.body).expect("a JSON map serializes"));
    if let Some(key) = &shared.config.api_key {
        request = request.bearer_auth(key.expose());
    }
    let result = match request.send().await {
        Ok(response) => {
            let status = response.status();
            response.bytes().await.map(|body| (status, body))
        }
        Err(e) => Err(e),
    };
    let outcome = match result {
        Err(e) => {
            // The error's text may hold the upstream URL: it goes to the operator's tracing
            // only, without it; the caller gets a fixed sentence.
            let (timeout, connect) = (e.is_timeout(), e.is_connect());
            tracing::warn!("llm-proxy: upstream call failed: {}", e.without_url());
            let (status, code, message, charged) = if timeout {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "The model server did not answer in time.",
                    reserved,
                )
            } else if connect {
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "The model server is unreachable.",
                    0,
                )
            } else {
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "The model server's reply broke off.",
                    reserved,
                )
            };
            Outcome {
                reply: Err(ApiError::upstream(status, code, message)),
                charged,
                prompt_tokens: None,
                completion_tokens: None,
            }
        }
        Ok((status, _)) if !status.is_success() => Outcome {
            reply: Err(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!(
                    "The model server refused the request (HTTP {}).",
                    status.as_u16()
                ),
            )),
            charged: prompt_bound,
            prompt_tokens: None,
            completion_tokens: None,
        },
        Ok((_, body)) => settle_reply(shared, body, reserved),
    };
    let accounts = shared.accounts.clone();
    let charged = outcome.charged;
    let settled =
        tokio::task::spawn_blocking(move || lock(&accounts).settle(reservation, charged)).await;
    if !matches!(settled, Ok(Ok(()))) {
        // The charge holds in memory; the file keeps the full reservation.
        tracing::error!("llm-proxy: could not record a settlement in the ledger");
    }
    if outcome.reply.is_ok() && outcome.charged > reserved {
        tracing::warn!(
            reserved,
            charged = outcome.charged,
            "llm-proxy: a reply used more than its reservation"
        );
    }
    outcome
}

/// Keeps each choice's `message.content` while the cap allows.
fn record_completions(shared: &Shared, reply: &serde_json::Map<String, Value>) {
    let cap = shared.config.record_completion_bytes;
    if cap == 0 {
        return;
    }
    let texts = reply
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str));
    let mut kept = shared.completions.lock().unwrap_or_else(|p| p.into_inner());
    for text in texts {
        if kept.bytes + text.len() > cap {
            kept.dropped += 1;
        } else {
            kept.bytes += text.len();
            kept.texts.push(text.to_string());
        }
    }
}

/// A 2xx reply: passed on as the upstream wrote it when it is a JSON object, charged by its
/// `usage`.
fn settle_reply(shared: &Shared, body: Bytes, reserved: u64) -> Outcome {
    let refused = |charged| Outcome {
        reply: Err(ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "The model server's reply was not a chat completion.",
        )),
        charged,
        prompt_tokens: None,
        completion_tokens: None,
    };
    let Ok(Value::Object(reply)) = serde_json::from_slice::<Value>(&body) else {
        return refused(reserved);
    };
    let usage = reply.get("usage");
    let count = |field: &str| usage.and_then(|u| u.get(field)).and_then(Value::as_u64);
    let (prompt_tokens, completion_tokens) = (count("prompt_tokens"), count("completion_tokens"));
    let total = count("total_tokens").or_else(|| Some(prompt_tokens? + completion_tokens?));
    let charged = total.unwrap_or(reserved);
    // Defence in depth: whatever the upstream echoes, the key does not reach the caller.
    if let Some(key) = &shared.config.api_key {
        let key = key.expose().as_bytes();
        if body.windows(key.len()).any(|w| w == key) {
            return refused(charged);
        }
    }
    record_completions(shared, &reply);
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Outcome {
        reply: Ok(response),
        charged,
        prompt_tokens,
        completion_tokens,
    }
}
