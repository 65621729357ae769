//! Chat templates: a model's own Jinja template (Hugging Face's `chat_template`, carried by a
//! GGUF as `tokenizer.chat_template`), rendered the way transformers' `apply_chat_template`
//! renders it, so that the prompt is the one the model was trained on.

use crate::error::{Result, TokenizerError};
use serde::{Deserialize, Serialize};

/// The ChatML template, for a model that ships none (llama.cpp's fallback too).
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
'<|im_start|>assistant\\n' }}{% endif %}";

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or whatever role the template knows).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A parsed chat template with the BOS and EOS texts it may write.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

/// The environment transformers renders in: blocks trimmed and left-stripped, and
/// `raise_exception` for templates that reject a conversation.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build();
    // The default delimiters always build.
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env
}

fn template_error(e: minijinja::Error) -> TokenizerError {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    TokenizerError::Template(msg)
}

impl ChatTemplate {
    /// Parses `source`; a syntax error is [`TokenizerError::Template`].
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        environment()
            .template_from_str(source)
            .map_err(template_error)?;
        Ok(ChatTemplate {
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the template's `bos_token` variable holds.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// What the template's `eos_token` variable holds.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// The template's output for `messages` (with the assistant's opening when
    /// `add_generation_prompt`); a failure, the template's own `raise_exception` included, is
    /// [`TokenizerError::Template`].
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = environment();
        let template = env
            .template_from_str(&self.source)
            .map_err(template_error)?;
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => &m.role, content => &m.content })
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        Ok(template.render(ctx).map_err(template_error)?)
    }
}
