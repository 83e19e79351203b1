//! One request's completions: the prompt runs once, its state is cloned for each of the `n`
//! choices, and the choices still running advance together, one [`ChatModel::decode_step`]
//! per token. A choice ends at a stop token or stop string (`finish_reason` "stop") or at
//! `max_tokens` or the context's end ("length").

use crate::sampling::{Sampler, SamplingParams};
use crate::{ChatMessage, ChatModel, LlmError};

/// What a request asks of the generator, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    /// Most tokens per choice (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    pub n: usize,
    pub seed: u64,
    /// A choice's text ends before the first of these it contains.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub text: String,
    pub finish_reason: FinishReason,
    /// Tokens sampled for this choice, an end token included.
    pub completion_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub choices: Vec<Choice>,
}

/// A choice still running.
struct Running {
    index: usize,
    sampler: Sampler,
    tokens: Vec<u32>,
    logits: Vec<f32>,
}

/// Runs `messages` through `model` and returns `params.n` completions.
pub fn generate<M: ChatModel>(
    model: &mut M,
    messages: &[ChatMessage],
    params: &GenerateParams,
) -> Result<Generation, LlmError> {
    let prompt = model.prompt_tokens(messages)?;
    let context = model.context_length();
    if prompt.len() >= context {
        return Err(LlmError::PromptTooLong {
            prompt: prompt.len(),
            context,
        });
    }
    let room = context - prompt.len();
    let max_tokens = params.max_tokens.map_or(room, |m| m.min(room));
    let (state, logits) = model.prefill(&prompt)?;
    let mut running: Vec<Running> = (0..params.n)
        .map(|index| Running {
            index,
            sampler: Sampler::new(params.sampling, params.seed, index),
            tokens: Vec::new(),
            logits: logits.clone(),
        })
        .collect();
    let mut states = vec![state; params.n];
    let mut done: Vec<Option<Choice>> = vec![None; params.n];
    while !running.is_empty() {
        let mut next = Vec::with_capacity(running.len());
        let mut i = 0;
        while i < running.len() {
            let run = &mut running[i];
            let token = run.sampler.sample(&run.logits);
            run.tokens.push(token);
            if let Some(choice) = finished(model, run, token, max_tokens, &params.stop)? {
                done[run.index] = Some(choice);
                running.remove(i);
                states.remove(i);
            } else {
                next.push(token);
                i += 1;
            }
        }
        if running.is_empty() {
            break;
        }
        let logits = model.decode_step(&mut states, &next)?;
        for (run, logits) in running.iter_mut().zip(logits) {
            run.logits = logits;
        }
    }
    Ok(Generation {
        prompt_tokens: prompt.len(),
        choices: done
            .into_iter()
            .map(|c| c.expect("every choice ends"))
            .collect(),
    })
}

/// The choice, if `token` (just sampled) ends it.
fn finished<M: ChatModel>(
    model: &M,
    run: &Running,
    token: u32,
    max_tokens: usize,
    stop: &[String],
) -> Result<Option<Choice>, LlmError> {
    let count = run.tokens.len();
    let choice = |text, finish_reason| {
        Some(Choice {
            text,
            finish_reason,
            completion_tokens: count,
        })
    };
    if model.stop_tokens().contains(&token) {
        let text = model.detokenize(&run.tokens[..count - 1])?;
        return Ok(choice(text, FinishReason::Stop));
    }
    // The whole text each time: a stop string may span tokens. Short completions make this
    // cheap next to a decode step.
    let text = model.detokenize(&run.tokens)?;
    if let Some(cut) = first_stop(&text, stop) {
        return Ok(choice(text[..cut].to_owned(), FinishReason::Stop));
    }
    if count >= max_tokens {
        return Ok(choice(text, FinishReason::Length));
    }
    Ok(None)
}

/// Byte offset where the earliest of `stop` begins in `text`.
pub fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A model over the letters a..z plus an end token (26): from the prompt's last token it
    /// counts up (a, b, c, ...), and ends after `end_after` tokens. Logits favour the next
    /// letter by 5 nats, so sampling at high temperature wanders.
    pub struct Counter {
        pub end_after: usize,
        pub prefills: usize,
    }

    impl ChatModel for Counter {
        type State = (u32, usize);

        fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
            Ok(messages
                .iter()
                .flat_map(|m| m.content.bytes())
                .map(|b| (b - b'a') as u32)
                .collect())
        }
        fn detokenize(&self, tokens: &[u32]) -> Result<String, LlmError> {
            Ok(tokens
                .iter()
                .filter(|&&t| t < 26)
                .map(|&t| (b'a' + t as u8) as char)
                .collect())
        }
        fn stop_tokens(&self) -> &[u32] {
            &[26]
        }
        fn context_length(&self) -> usize {
            64
        }
        fn prefill(&mut self, tokens: &[u32]) -> Result<(Self::State, Vec<f32>), LlmError> {
            self.prefills += 1;
            let last = *tokens.last().unwrap();
            Ok(((last, 0), self.logits(last, 0)))
        }
        fn decode_step(
            &mut self,
            states: &mut [Self::State],
            tokens: &[u32],
        ) -> Result<Vec<Vec<f32>>, LlmError> {
            assert_eq!(states.len(), tokens.len());
            Ok(states
                .iter_mut()
                .zip(tokens)
                .map(|(s, &t)| {
                    *s = (t, s.1 + 1);
                    self.logits(t, s.1)
                })
                .collect())
        }
    }

    impl Counter {
        fn logits(&self, last: u32, generated: usize) -> Vec<f32> {
            let mut l = vec![0.0; 27];
            let next = if generated + 1 >= self.end_after {
                26
            } else {
                (last + 1) % 26
            };
            l[next as usize] = 5.0;
            l
        }
    }

    pub fn params(n: usize, temperature: f64, max_tokens: Option<usize>) -> GenerateParams {
        GenerateParams {
            sampling: SamplingParams {
                temperature,
                top_p: 1.0,
            },
            max_tokens,
            n,
            seed: 1,
            stop: vec![],
        }
    }

    fn user(content: &str) -> Vec<ChatMessage> {
        vec![ChatMessage {
            role: "user".into(),
            content: content.into(),
        }]
    }

    #[test]
    fn greedy_runs_to_the_end_token() {
        let mut m = Counter {
            end_after: 4,
            prefills: 0,
        };
        let g = generate(&mut m, &user("ab"), &params(1, 0.0, None)).unwrap();
        assert_eq!(g.prompt_tokens, 2);
        assert_eq!(
            g.choices,
            [Choice {
                text: "cde".into(),
                finish_reason: FinishReason::Stop,
                completion_tokens: 4,
            }]
        );
    }

    #[test]
    fn max_tokens_ends_with_length() {
        let mut m = Counter {
            end_after: 100,
            prefills: 0,
        };
        let g = generate(&mut m, &user("a"), &params(1, 0.0, Some(3))).unwrap();
        assert_eq!(g.choices[0].text, "bcd");
        assert_eq!(g.choices[0].finish_reason, FinishReason::Length);
        // Without max_tokens the context (64) bounds the completion.
        let g = generate(&mut m, &user("a"), &params(1, 0.0, None)).unwrap();
        assert_eq!(g.choices[0].completion_tokens, 63);
        assert_eq!(g.choices[0].finish_reason, FinishReason::Length);
    }

    #[test]
    fn stop_strings_cut_the_text_even_across_tokens() {
        let mut m = Counter {
            end_after: 100,
            prefills: 0,
        };
        let mut p = params(1, 0.0, Some(20));
        p.stop = vec!["xyz".into(), "fg".into()];
        let g = generate(&mut m, &user("a"), &p).unwrap();
        assert_eq!(g.choices[0].text, "bcde");
        assert_eq!(g.choices[0].finish_reason, FinishReason::Stop);
        assert_eq!(g.choices[0].completion_tokens, 6);
        assert_eq!(first_stop("abcabc", &["ca".into(), "b".into()]), Some(1));
        assert_eq!(first_stop("abc", &[]), None);
    }

    #[test]
    fn n_choices_share_one_prefill_and_differ_when_sampled() {
        let mut m = Counter {
            end_after: 100,
            prefills: 0,
        };
        let g = generate(&mut m, &user("a"), &params(4, 5.0, Some(12))).unwrap();
        assert_eq!(m.prefills, 1);
        assert_eq!(g.choices.len(), 4);
        assert!(g.choices.iter().all(|c| c.completion_tokens <= 12));
        let texts: std::collections::HashSet<_> = g.choices.iter().map(|c| &c.text).collect();
        assert!(texts.len() > 1, "{texts:?}");
        // The same seed gives the same choices.
        let again = generate(&mut m, &user("a"), &params(4, 5.0, Some(12))).unwrap();
        assert_eq!(g, again);
    }

    #[test]
    fn choices_of_different_lengths_keep_their_order() {
        // At temperature 5 some choices draw the end token early; indices stay in order.
        let mut m = Counter {
            end_after: 3,
            prefills: 0,
        };
        let g = generate(&mut m, &user("a"), &params(6, 5.0, Some(8))).unwrap();
        assert_eq!(g.choices.len(), 6);
    }

    #[test]
    fn a_prompt_filling_the_context_is_refused() {
        let mut m = Counter {
            end_after: 3,
            prefills: 0,
        };
        let long = "a".repeat(64);
        let err = generate(&mut m, &user(&long), &params(1, 0.0, None)).unwrap_err();
        assert!(matches!(err, LlmError::PromptTooLong { prompt: 64, .. }));
    }
}
