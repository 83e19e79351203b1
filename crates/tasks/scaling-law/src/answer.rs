//! `answer.json`: read without trusting it, parsed strictly.
//!
//! The file is read by [`rdbench_core::fsutil::read_untrusted`] (no link followed, no FIFO
//! opened for blocking, at most [`MAX_BYTES`]), must be UTF-8 JSON holding exactly the three
//! keys, each once: a repeated key is refused rather than letting the last copy win silently.
//! Widths and step counts are JSON integers; the loss prediction is a finite number of nats.

use std::path::Path;

use rdbench_core::fsutil::{read_untrusted, UntrustedReadError};
use rdbench_core::task::InvalidKind;
use serde::Deserialize;

/// The file an attempt submits.
pub const FILE: &str = "answer.json";

/// The most bytes `answer.json` may have: three numbers need well under a hundred.
pub const MAX_BYTES: u64 = 4096;

/// Largest loss prediction accepted, in nats: far above the loss of an untrained model on
/// any profile (`ln vocab` is at most 8.3), so only a nonsense value is refused.
pub const MAX_LOSS_PREDICTION: f64 = 100.0;

/// A parsed answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub n_embd: u64,
    pub max_iters: u64,
    pub loss_prediction: f64,
}

/// Reads and checks `dir/answer.json`; `Err` is the invalid kind and a reason for the agent.
pub fn read(dir: &Path) -> Result<Answer, (InvalidKind, String)> {
    let path = dir.join(FILE);
    let bytes = read_untrusted(&path, MAX_BYTES).map_err(|e| match e {
        UntrustedReadError::NotFound => (InvalidKind::MissingFile, format!("no {FILE}")),
        UntrustedReadError::NotARegularFile(what) => (
            InvalidKind::MissingFile,
            format!("{FILE} is a {what}, not a regular file"),
        ),
        UntrustedReadError::TooLarge { size, max } => (
            InvalidKind::TooLarge,
            format!("{FILE} has {size} bytes; at most {max} are read"),
        ),
        UntrustedReadError::Io(m) => (InvalidKind::MissingFile, format!("{FILE}: {m}")),
    })?;
    parse(&bytes)
}

/// Parses and checks the bytes of an answer.
pub fn parse(bytes: &[u8]) -> Result<Answer, (InvalidKind, String)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| (InvalidKind::NotText, format!("{FILE} is not UTF-8: {e}")))?;
    let answer: Answer = serde_json::from_str(text).map_err(|e| {
        (
            InvalidKind::BadArtifact,
            format!(
                "{FILE} must be one JSON object with exactly the integer keys n_embd and \
                 max_iters and the number loss_prediction: {e}"
            ),
        )
    })?;
    if !answer.loss_prediction.is_finite() {
        return Err((
            InvalidKind::NonFinite,
            format!("loss_prediction is {}", answer.loss_prediction),
        ));
    }
    if !(0.0..=MAX_LOSS_PREDICTION).contains(&answer.loss_prediction) {
        return Err((
            InvalidKind::BadArtifact,
            format!(
                "loss_prediction {} is not a loss: it must be between 0 and {MAX_LOSS_PREDICTION} nats",
                answer.loss_prediction
            ),
        ));
    }
    if answer.max_iters == 0 {
        return Err((
            InvalidKind::BadArtifact,
            "max_iters must be at least 1".into(),
        ));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> InvalidKind {
        parse(text.as_bytes()).unwrap_err().0
    }

    #[test]
    fn a_plain_answer_parses() {
        let a = parse(br#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 3.5}"#).unwrap();
        assert_eq!((a.n_embd, a.max_iters, a.loss_prediction), (64, 1000, 3.5));
        // Integral loss predictions are numbers too.
        assert!(parse(br#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 3}"#).is_ok());
    }

    #[test]
    fn malformed_answers_are_refused_with_a_kind() {
        use InvalidKind::*;
        let cases = [
            ("", BadArtifact),
            ("[]", BadArtifact),
            ("null", BadArtifact),
            (r#"{"n_embd": 64, "max_iters": 1000}"#, BadArtifact),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 3.5, "x": 1}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "n_embd": 32, "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64.5, "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64.0, "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": -64, "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": "64", "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 1e30, "max_iters": 1000, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 99999999999999999999999, "max_iters": 1, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 0, "loss_prediction": 3.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": NaN}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": Infinity}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 1e999}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": -0.5}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 1e300}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": null}"#,
                BadArtifact,
            ),
            (
                r#"{"n_embd": 64, "max_iters": 1000, "loss_prediction": 3.5} {}"#,
                BadArtifact,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(kind(text), want, "{text}");
        }
        assert_eq!(parse(b"{\"n_embd\": \xff}").unwrap_err().0, NotText);
        let dup = parse(br#"{"n_embd": 64, "n_embd": 32, "max_iters": 1, "loss_prediction": 3}"#);
        assert!(dup.unwrap_err().1.contains("duplicate"));
    }
}
