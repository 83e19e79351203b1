//! The request rules, and the OpenAI-shaped error every refusal is answered with.
//!
//! An error's message is written here from the proxy's own words: it never quotes an upstream
//! body, the upstream's address, the key, or anything of another attempt. The only request
//! text it repeats is the caller's own `model` value, cut short.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::config::{Config, PromptBound};

/// One refusal: `{"error": {"message", "type", "param", "code"}}` with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    /// Machine-readable reason; also the `refused` field of the call log.
    pub code: &'static str,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            message,
            kind,
            param: None,
            code,
        }
    }

    /// A 400 about one request field.
    pub fn invalid(param: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            param: Some(param),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    pub fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            "This endpoint serves only POST /v1/chat/completions and GET /v1/models.".into(),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than {limit} bytes."),
        )
    }

    pub fn body_timeout() -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            "The request body was not received in time.".into(),
        )
    }

    pub fn rate_limited(code: &'static str, message: String) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "requests", code, message)
    }

    pub fn budget_exhausted(scope: &str, needed: u64, left: u64) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "budget_exhausted",
            format!(
                "The {scope}'s token budget cannot cover this request: it may use up to \
                 {needed} tokens (prompt bound plus n * max_tokens) and {left} remain. Ask for \
                 fewer tokens, or stop."
            ),
        )
    }

    pub fn upstream(status: StatusCode, code: &'static str, message: &str) -> Self {
        ApiError::new(status, "api_error", code, message.into())
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "The proxy could not record this request; it was not forwarded.".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

/// A request that passed the rules: the body to forward and what it may cost.
#[derive(Debug)]
pub struct Checked {
    /// The request with `max_tokens` made explicit and `max_completion_tokens` folded into it.
    pub body: Map<String, Value>,
    pub n: u64,
    pub max_tokens: u64,
    /// The upper bound reserved from the budgets: prompt bound + n * max_tokens.
    pub reserve: u64,
}

/// The `model` value as far as it is repeated in errors and logs.
pub fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Applies the rules to a chat request's body.
pub fn check_chat(bytes: &[u8], config: &Config) -> Result<Checked, ApiError> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::invalid(
            "body",
            "invalid_json",
            "The body must be one JSON object.".into(),
        ));
    };
    match body.get("model") {
        Some(Value::String(m)) if *m == config.model => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                param: Some("model"),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    format!(
                        "The model `{}` is not served here; the only model is `{}`.",
                        shorten(m),
                        config.model
                    ),
                )
            })
        }
        _ => {
            return Err(ApiError::invalid(
                "model",
                "model_required",
                format!("`model` must be the string `{}`.", config.model),
            ))
        }
    }
    if !matches!(body.get("messages"), Some(Value::Array(m)) if !m.is_empty()) {
        return Err(ApiError::invalid(
            "messages",
            "invalid_messages",
            "`messages` must be a non-empty array.".into(),
        ));
    }
    if !matches!(
        body.get("stream"),
        None | Some(Value::Null) | Some(Value::Bool(false))
    ) {
        return Err(ApiError::invalid(
            "stream",
            "stream_not_supported",
            "Streaming is not served here: leave `stream` out or false.".into(),
        ));
    }
    let n = positive(&body, "n")?.unwrap_or(1);
    if n > u64::from(config.max_n) {
        return Err(ApiError::invalid(
            "n",
            "n_too_large",
            format!("`n` may be at most {}.", config.max_n),
        ));
    }
    let max_tokens = match (
        positive(&body, "max_tokens")?,
        positive(&body, "max_completion_tokens")?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "max_tokens",
                "conflicting_max_tokens",
                "`max_tokens` and `max_completion_tokens` differ; give one.".into(),
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => u64::from(config.max_tokens),
    };
    // Refused, not clamped: a silently shorter completion would look like the model's choice.
    if max_tokens > u64::from(config.max_tokens) {
        return Err(ApiError::invalid(
            "max_tokens",
            "max_tokens_too_large",
            format!("`max_tokens` may be at most {}.", config.max_tokens),
        ));
    }
    body.remove("max_completion_tokens");
    body.insert("max_tokens".into(), max_tokens.into());
    let prompt = match config.prompt_bound {
        PromptBound::RequestBytes => bytes.len() as u64,
        PromptBound::Fixed(tokens) => tokens,
    };
    Ok(Checked {
        body,
        n,
        max_tokens,
        reserve: prompt.saturating_add(n.saturating_mul(max_tokens)),
    })
}

/// An optional positive integer field (`null` counts as absent).
fn positive(body: &Map<String, Value>, param: &'static str) -> Result<Option<u64>, ApiError> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if x >= 1 => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                param,
                "invalid_value",
                format!("`{param}` must be a positive integer."),
            )),
        },
    }
}

/// `GET /v1/models`: the one model.
pub fn models(config: &Config) -> Value {
    json!({"object": "list", "data": [{
        "id": config.model, "object": "model", "created": 0, "owned_by": "rdbench"
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Upstream;

    fn config() -> Config {
        Config::new(Upstream::Unix("/x".into()), "tiny")
    }

    fn check(body: Value) -> Result<Checked, ApiError> {
        check_chat(&serde_json::to_vec(&body).unwrap(), &config())
    }

    #[test]
    fn defaults_and_bounds() {
        let msg = json!([{"role": "user", "content": "hi"}]);
        let ok = check(json!({"model": "tiny", "messages": msg, "n": 2})).unwrap();
        assert_eq!((ok.n, ok.max_tokens), (2, 1024));
        assert_eq!(ok.body["max_tokens"], 1024);
        let ok =
            check(json!({"model": "tiny", "messages": msg, "max_completion_tokens": 7})).unwrap();
        assert_eq!(ok.body["max_tokens"], 7);
        assert!(!ok.body.contains_key("max_completion_tokens"));
        let code = |v| check(v).unwrap_err().code;
        assert_eq!(
            code(json!({"model": "big", "messages": msg})),
            "model_not_found"
        );
        assert_eq!(code(json!({"messages": msg})), "model_required");
        assert_eq!(
            code(json!({"model": "tiny", "messages": msg, "n": 17})),
            "n_too_large"
        );
        assert_eq!(
            code(json!({"model": "tiny", "messages": msg, "n": 0})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"model": "tiny", "messages": msg, "n": 1.5})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"model": "tiny", "messages": msg, "stream": true})),
            "stream_not_supported"
        );
        assert_eq!(
            code(json!({"model": "tiny", "messages": msg, "max_tokens": 1025})),
            "max_tokens_too_large"
        );
        assert_eq!(
            code(json!({"model": "tiny", "messages": []})),
            "invalid_messages"
        );
        assert_eq!(code(json!([1])), "invalid_json");
    }
}
