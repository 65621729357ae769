//! Request and response bodies of the OpenAI API (the fields sparq honours).

use serde::{Deserialize, Serialize};
use sparq::model::generate::FinishReason;
use sparq::model::text::ChatMessage;

/// `input` of `/v1/embeddings`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One token array.
    Tokens(Vec<u32>),
    /// Several token arrays.
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/embeddings`.
#[derive(Clone, Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// A served embedding model.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[serde(default)]
    pub user: Option<String>,
}

/// `prompt` of `/v1/completions`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// A one-element list of text.
    Texts(Vec<String>),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// `stop`: one string or up to four.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields shared by completions and chat.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Sampling {
    /// Tokens to generate at most.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` (chat).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Softmax temperature (OpenAI's default 1).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Choices; only 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// Server-sent events (`null` is `false`).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    /// A served generation model.
    pub model: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A message's content: text, or OpenAI's list of parts (only text parts are accepted).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Text.
    Text(String),
    /// Parts, `{"type": "text", "text": ...}`.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    /// `text` (anything else is refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
}

/// One message of a conversation as clients send it.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// Its content; `null` (an assistant turn of tool calls) is empty.
    #[serde(default)]
    pub content: Option<Content>,
}

impl Message {
    /// The message for the chat template; text parts are joined.
    pub fn to_chat(&self) -> Result<ChatMessage, String> {
        let content = match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(format!(
                                "content parts of type '{kind}' are not supported"
                            ));
                        }
                    }
                }
                text
            }
        };
        Ok(ChatMessage {
            role: self.role.clone(),
            content,
        })
    }
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    /// A served generation model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `usage`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (absent for embeddings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<usize>,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// A generation's usage.
    pub fn generation(prompt: usize, completion: usize) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: Some(completion),
            total_tokens: prompt + completion,
        }
    }
}

/// OpenAI's `finish_reason`: an EOS token and a stop string are both `stop`.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop => "stop",
    }
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sampling {
    /// Whether a stream ends with a usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// A streamed chunk: `choices` (and `usage`, when given) in the envelope completions and chat
/// share (`id`, `object`, `created`, `model`).
pub fn chunk(
    id: &str,
    object: &str,
    created: u64,
    model: &str,
    choices: serde_json::Value,
    usage: Option<Usage>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": id, "object": object, "created": created, "model": model, "choices": choices,
    });
    if let Some(u) = usage {
        v["usage"] = serde_json::json!(u);
    }
    v
}
