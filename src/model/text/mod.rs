//! The text side of a decoder, shared by every family and by the server: token ids from text
//! the way llama.cpp makes them ([`TextCodec::tokenize`]: BOS/EOS by the model's flags,
//! control tokens written in the text matched only when asked), text from ids, the model's
//! chat template ([`chat`]) and incremental detokenisation that never splits a UTF-8
//! character ([`TokenStream`]).
//!
//! A family builds a [`TextCodec`] from its file's metadata
//! ([`crate::model::llama::gguf::text_codec`] for GGUF); nothing here reads files.

pub mod chat;
mod stream;

pub use chat::{ChatMessage, ChatTemplate};
pub use stream::TokenStream;

use crate::error::{Error, Result, TokenizerError};

/// What a family gives to build a [`TextCodec`].
pub struct TextCodecParts {
    /// The text → pieces → ids pipeline (pre-tokenizer and model), with the control tokens
    /// registered as special added tokens so that they can be matched whole.
    pub tokenizer: tokenizers::Tokenizer,
    /// The bytes each id stands for, indexed by id (the byte-level mapping undone; a control
    /// token's own text).
    pub pieces: Vec<Vec<u8>>,
    /// The beginning-of-sequence token, if the model has one.
    pub bos: Option<u32>,
    /// The end-of-sequence token, if the model has one.
    pub eos: Option<u32>,
    /// Every id that ends generation (the EOS token and the model's end-of-turn tokens).
    pub end_of_generation: Vec<u32>,
    /// The control tokens (`<|im_start|>`, `<|im_end|>`, ...): markup of the conversation
    /// that a reply shown to a user leaves out.
    pub control: Vec<u32>,
    /// Whether [`TextCodec::encode`] puts BOS in front.
    pub add_bos: bool,
    /// Whether [`TextCodec::encode`] puts EOS at the end.
    pub add_eos: bool,
    /// The model's own chat template (Jinja), if it ships one.
    pub chat_template: Option<String>,
}

/// A model's tokenizer: text to ids and back, its special ids and its chat template.
#[derive(Clone, Debug)]
pub struct TextCodec {
    /// Matches control tokens written in the text.
    special: tokenizers::Tokenizer,
    /// Treats control tokens written in the text as plain text.
    plain: tokenizers::Tokenizer,
    pieces: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    end_of_generation: Vec<u32>,
    control: Vec<bool>,
    add_bos: bool,
    add_eos: bool,
    template: ChatTemplate,
}

impl TextCodec {
    /// Checks `parts` (every special id inside the vocabulary, the template parses) and builds
    /// the codec. A model without a template gets ChatML ([`chat::CHATML`]).
    pub fn new(parts: TextCodecParts) -> Result<Self> {
        let vocab = parts.pieces.len();
        // Every id the tokenizer can produce must have its bytes.
        let produced = parts.tokenizer.get_vocab_size(true);
        if produced != vocab {
            return Err(TokenizerError::LengthMismatch {
                key: "token pieces".into(),
                len: vocab,
                tokens: produced,
            }
            .into());
        }
        let check = |what: &str, id: u32| -> Result<()> {
            match (id as usize) < vocab {
                true => Ok(()),
                false => Err(TokenizerError::BadTokenId {
                    what: what.into(),
                    id: id.into(),
                    vocab,
                }
                .into()),
            }
        };
        parts.bos.map(|id| check("BOS id", id)).transpose()?;
        parts.eos.map(|id| check("EOS id", id)).transpose()?;
        for &id in &parts.end_of_generation {
            check("end-of-generation id", id)?;
        }
        let mut control = vec![false; vocab];
        for &id in &parts.control {
            check("control token id", id)?;
            control[id as usize] = true;
        }
        let text_of = |id: Option<u32>| {
            id.map(|i| String::from_utf8_lossy(&parts.pieces[i as usize]).into_owned())
                .unwrap_or_default()
        };
        let source = parts.chat_template.as_deref().unwrap_or(chat::CHATML);
        let template = ChatTemplate::new(source, &text_of(parts.bos), &text_of(parts.eos))?;
        let mut plain = parts.tokenizer.clone();
        plain.set_encode_special_tokens(true);
        Ok(TextCodec {
            special: parts.tokenizer,
            plain,
            pieces: parts.pieces,
            bos: parts.bos,
            eos: parts.eos,
            end_of_generation: parts.end_of_generation,
            control,
            add_bos: parts.add_bos,
            add_eos: parts.add_eos,
            template,
        })
    }

    /// llama.cpp's `llama_tokenize(text, add_special, parse_special)`: with `add_special`, BOS
    /// and EOS as the model's flags say; with `parse_special`, control tokens written in
    /// `text` (`<|im_start|>`) become their ids, otherwise they are tokenized as text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.special
        } else {
            &self.plain
        };
        let enc = tok
            .encode_fast(text, false)
            .map_err(|e| Error::invariant(format!("byte-level BPE failed on text: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 2);
        if let (true, true, Some(bos)) = (add_special, self.add_bos, self.bos) {
            ids.push(bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if let (true, true, Some(eos)) = (add_special, self.add_eos, self.eos) {
            ids.push(eos);
        }
        Ok(ids)
    }

    /// The ids of `text` for the model: [`tokenize`](Self::tokenize) with BOS/EOS as the model
    /// wants them (what `llama-tokenize` does by default).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.tokenize(text, true, parse_special)
    }

    /// The text of `ids`, control tokens written out (`<|im_end|>`). Byte sequences that are
    /// not UTF-8 (possible only for ids no tokenization of text produces) become U+FFFD, as
    /// [`String::from_utf8_lossy`] replaces them.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bytes `id` stands for (a byte-level token may hold part of a character).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                TokenizerError::BadTokenId {
                    what: "token id".into(),
                    id: id.into(),
                    vocab: self.pieces.len(),
                }
                .into()
            })
    }

    /// Whether `id` ends generation (EOS, or an end-of-turn token such as `<|im_end|>`).
    pub fn is_eos(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }

    /// Whether `id` is a control token (conversation markup such as `<|im_start|>`), which
    /// [`decode`](Self::decode) writes out but a reply shown to a user may leave out.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// Every id that ends generation.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// The beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether [`encode`](Self::encode) puts BOS in front.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The chat template in use (the model's, or ChatML when it has none).
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The prompt text of a conversation, as llama.cpp renders it: the template's output less
    /// a leading BOS (trailing EOS) when [`encode`](Self::encode) adds one anyway.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut text = self.template.render(messages, add_generation_prompt)?;
        let bos = self.template.bos_token();
        if self.add_bos && self.bos.is_some() && !bos.is_empty() && text.starts_with(bos) {
            text.drain(..bos.len());
        }
        let eos = self.template.eos_token();
        if self.add_eos && self.eos.is_some() && !eos.is_empty() && text.ends_with(eos) {
            text.truncate(text.len() - eos.len());
        }
        Ok(text)
    }

    /// The prompt ids of a conversation: [`render_chat`](Self::render_chat), then
    /// [`encode`](Self::encode) with control tokens parsed.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.encode(&self.render_chat(messages, add_generation_prompt)?, true)
    }
}
