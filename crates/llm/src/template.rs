//! A model's chat template (Jinja, from the GGUF's `tokenizer.chat_template`) rendered with
//! minijinja as Hugging Face's `apply_chat_template` does: the variables `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token`, `raise_exception`, Python's string
//! methods, and Jinja's `trim_blocks`/`lstrip_blocks` on (HF compiles templates that way).

use minijinja::{context, Environment, ErrorKind};

use crate::{ChatMessage, LlmError};

const NAME: &str = "chat";

/// A compiled chat template with the special tokens it may name.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported here, not at the first request.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned(NAME, source.to_owned())?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The conversation as the model's prompt text, ready for the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let template = self.env.get_template(NAME)?;
        Ok(template.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let source = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let t = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let text = t.render(&[msg("user", "Hi")]).unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn knows_bos_python_methods_and_raise_exception() {
        let source = "{{ bos_token }}{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}{{ m.content.strip() }}{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        assert_eq!(t.render(&[msg("user", "  x  ")]).unwrap(), "<s>x</s>");
        let err = t.render(&[msg("bad", "x")]).unwrap_err();
        assert!(err.to_string().contains("no bad roles"), "{err}");
    }

    #[test]
    fn syntax_errors_are_found_when_compiling() {
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
