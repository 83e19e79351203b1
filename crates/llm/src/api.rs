//! The OpenAI chat-completions contract: the request as sent, its validation into
//! [`GenerateParams`], the response and error bodies.
//!
//! Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with its
//! statuses: 400 `invalid_request_error` for a bad parameter (naming it in `param`), 404
//! `model_not_found` for another model's name, 413 for a body over the limit, 500
//! `server_error` when the model fails. Parameters this server does not implement are refused,
//! never silently ignored (a caller asking for `logprobs` or tools would otherwise be misled);
//! a few that change nothing here (`user`, `store`, `metadata`...) are accepted.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::generate::{GenerateParams, Generation};
use crate::sampling::SamplingParams;
use crate::ChatMessage;

/// The OpenAI API's limit on stop strings.
pub const MAX_STOP: usize = 4;

/// Parameters accepted and ignored: they change nothing a caller could observe here.
const IGNORED: [&str; 5] = [
    "user",
    "store",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
];

/// `POST /v1/chat/completions`'s body as sent.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<RequestMessage>>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<i64>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub stream: Option<bool>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// Everything else: refused unless null, false or in [`IGNORED`].
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or parts of which only text ones are served.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Server-side limits a request is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub model_name: String,
    pub max_n: usize,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub messages: Vec<ChatMessage>,
    pub params: GenerateParams,
}

impl ChatRequest {
    /// Checks every parameter; `random_seed` is used when the request names none.
    pub fn validate(self, limits: &Limits, random_seed: u64) -> Result<Validated, ApiError> {
        let model = self.model.ok_or_else(|| ApiError::missing("model"))?;
        if model != limits.model_name {
            return Err(ApiError::model_not_found(&model));
        }
        if let Some((key, _)) = self.other.iter().find(|(k, v)| {
            !IGNORED.contains(&k.as_str()) && !matches!(v, Value::Null | Value::Bool(false))
        }) {
            return Err(ApiError::invalid(
                key,
                format!("`{key}` is not supported by this server"),
            ));
        }
        if self.stream == Some(true) {
            return Err(ApiError::invalid(
                "stream",
                "streaming is not supported by this server: send `stream: false`",
            ));
        }
        for (name, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` is not supported by this server (only 0)"),
                ));
            }
        }
        let messages = self.messages.ok_or_else(|| ApiError::missing("messages"))?;
        if messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must hold at least one message",
            ));
        }
        let messages = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.into_chat(i))
            .collect::<Result<Vec<_>, _>>()?;
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                "temperature",
                format!("{temperature} is not in [0, 2] - 'temperature'"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("{top_p} is not in (0, 1] - 'top_p'"),
            ));
        }
        let n = self.n.unwrap_or(1);
        if n < 1 || n as u64 > limits.max_n as u64 {
            return Err(ApiError::invalid(
                "n",
                format!("{n} is not in [1, {}] - 'n'", limits.max_n),
            ));
        }
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => Some(("max_completion_tokens", m)),
            (None, Some(m)) => Some(("max_tokens", m)),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            Some((name, m)) if m < 1 => {
                return Err(ApiError::invalid(
                    name,
                    format!("{m} is less than the minimum of 1 - '{name}'"),
                ))
            }
            Some((_, m)) => Some(m as usize),
            None => None,
        };
        let stop = match self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(
                "stop",
                format!("at most {MAX_STOP} stop sequences are allowed"),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop",
                "stop sequences must not be empty",
            ));
        }
        Ok(Validated {
            messages,
            params: GenerateParams {
                sampling: SamplingParams { temperature, top_p },
                max_tokens,
                n: n as usize,
                seed: self.seed.map_or(random_seed, |s| s as u64),
                stop,
            },
        })
    }
}

impl RequestMessage {
    fn into_chat(self, index: usize) -> Result<ChatMessage, ApiError> {
        let param = format!("messages[{index}].content");
        let content = match self.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.get("type"), part.get("text")) {
                        (Some(Value::String(t)), Some(Value::String(s))) if t == "text" => {
                            text.push_str(s)
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                &param,
                                "only text content parts are supported by this server",
                            ))
                        }
                    }
                }
                text
            }
        };
        Ok(ChatMessage {
            role: self.role,
            content,
        })
    }
}

/// The response body of a completed request.
pub fn completion_body(model: &str, id: &str, created: u64, generation: &Generation) -> Value {
    let completion_tokens: usize = generation.choices.iter().map(|c| c.completion_tokens).sum();
    let choices: Vec<Value> = generation
        .choices
        .iter()
        .enumerate()
        .map(|(index, c)| {
            json!({
                "index": index,
                "message": {"role": "assistant", "content": c.text, "refusal": null},
                "logprobs": null,
                "finish_reason": c.finish_reason.as_str(),
            })
        })
        .collect();
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": generation.prompt_tokens + completion_tokens,
        },
        "system_fingerprint": null,
    })
}

/// An error as the OpenAI API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: status.as_u16(),
            message: message.into(),
            kind: kind.into(),
            param: None,
            code: None,
        }
    }

    /// A bad parameter (400).
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// A required parameter is absent (400).
    pub fn missing(param: &str) -> Self {
        Self::invalid(param, format!("you must provide a `{param}` parameter"))
    }

    /// A body that is not the JSON of a chat request (400).
    pub fn bad_body(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("could not parse the JSON body of the request: {why}"),
        )
    }

    /// A model this server does not serve (404).
    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{model}` does not exist or you do not have access to it."),
            )
        }
    }

    /// A body over the limit (413).
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            code: Some("request_too_large".into()),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is larger than this server's limit of {limit} bytes"),
            )
        }
    }

    /// A prompt that leaves no room in the context (400).
    pub fn context_length(message: impl Into<String>) -> Self {
        ApiError {
            param: Some("messages".into()),
            code: Some("context_length_exceeded".into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// A route this server does not have (404).
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }

    /// The model failed (500).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn body(&self) -> Value {
        json!({ "error": self })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            model_name: "m".into(),
            max_n: 16,
        }
    }

    fn validate(body: Value) -> Result<Validated, ApiError> {
        let request: ChatRequest = serde_json::from_value(body).unwrap();
        request.validate(&limits(), 99)
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = base();
        b[key] = value;
        b
    }

    #[test]
    fn defaults_are_openais() {
        let v = validate(base()).unwrap();
        assert_eq!(v.messages[0].content, "hi");
        assert_eq!(
            v.params,
            GenerateParams {
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 1.0
                },
                max_tokens: None,
                n: 1,
                seed: 99,
                stop: vec![],
            }
        );
    }

    #[test]
    fn parameters_are_read() {
        let mut b = base();
        for (k, v) in [
            ("temperature", json!(0)),
            ("top_p", json!(0.5)),
            ("n", json!(3)),
            ("max_tokens", json!(7)),
            ("seed", json!(-1)),
            ("stop", json!("\n")),
            ("user", json!("x")),
            ("logprobs", json!(false)),
        ] {
            b[k] = v;
        }
        let p = validate(b).unwrap().params;
        assert_eq!(p.sampling.temperature, 0.0);
        assert_eq!(p.sampling.top_p, 0.5);
        assert_eq!((p.n, p.max_tokens, p.seed), (3, Some(7), u64::MAX));
        assert_eq!(p.stop, ["\n"]);
        let p = validate(with("stop", json!(["a", "b"]))).unwrap().params;
        assert_eq!(p.stop, ["a", "b"]);
        let p = validate(with("max_completion_tokens", json!(5)))
            .unwrap()
            .params;
        assert_eq!(p.max_tokens, Some(5));
        let parts = json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]);
        assert_eq!(
            validate(with("messages", parts)).unwrap().messages[0].content,
            "ab"
        );
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (key, value) in [
            ("temperature", json!(2.5)),
            ("temperature", json!(-0.1)),
            ("top_p", json!(0)),
            ("top_p", json!(1.5)),
            ("n", json!(0)),
            ("n", json!(17)),
            ("max_tokens", json!(0)),
            ("stop", json!(["a", "b", "c", "d", "e"])),
            ("stop", json!([""])),
            ("stream", json!(true)),
            ("logprobs", json!(true)),
            ("tools", json!([])),
            ("presence_penalty", json!(0.5)),
            ("messages", json!([])),
        ] {
            let err = validate(with(key, value.clone())).unwrap_err();
            assert_eq!(err.status, 400, "{key}={value}");
            assert_eq!(err.kind, "invalid_request_error");
            assert_eq!(err.param.as_deref(), Some(key), "{key}={value}");
        }
        let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]);
        let err = validate(with("messages", image)).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content"));
        let err = validate(json!({"messages": []})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("model"));
    }

    #[test]
    fn another_model_is_404_model_not_found() {
        let err = validate(with("model", json!("gpt-4"))).unwrap_err();
        assert_eq!(err.status, 404);
        assert_eq!(
            err.body(),
            json!({"error": {
                "message": "The model `gpt-4` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }})
        );
    }

    #[test]
    fn error_bodies_have_all_four_fields() {
        for err in [
            ApiError::too_large(10),
            ApiError::bad_body("eof"),
            ApiError::server("boom"),
            ApiError::no_route("GET", "/x"),
        ] {
            let body = err.body();
            let fields = body["error"].as_object().unwrap();
            let mut keys: Vec<_> = fields.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["code", "message", "param", "type"]);
        }
        assert_eq!(ApiError::too_large(10).status, 413);
    }

    #[test]
    fn the_response_counts_usage() {
        use crate::generate::{Choice, FinishReason};
        let g = Generation {
            prompt_tokens: 5,
            choices: vec![
                Choice {
                    text: "a".into(),
                    finish_reason: FinishReason::Stop,
                    completion_tokens: 2,
                },
                Choice {
                    text: "b".into(),
                    finish_reason: FinishReason::Length,
                    completion_tokens: 3,
                },
            ],
        };
        let body = completion_body("m", "chatcmpl-1", 7, &g);
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})
        );
        assert_eq!(body["choices"][1]["finish_reason"], "length");
        assert_eq!(body["choices"][1]["index"], 1);
        assert_eq!(body["choices"][0]["message"]["content"], "a");
        assert_eq!(body["object"], "chat.completion");
    }
}
