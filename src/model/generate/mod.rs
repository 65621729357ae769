//! Text generation over any [`CausalLm`]: a prompt is prefilled in chunks, then tokens are
//! sampled one step at a time and come out as a stream ([`Generation`], an iterator of
//! [`Piece`]s), with EOS tokens, stop strings, a token budget and reproducible sampling
//! ([`crate::model::sampling`]).
//!
//! The per-sequence state (sampler, history, text, stop strings, finish) is a [`Decoding`],
//! which runs no step itself: [`Generation`] steps one sequence with it, the serving engine
//! ([`crate::schedule::generation`]) many in one batch, so both give the same stream.
//!
//! ```no_run
//! use sparq::model::generate::{GenerateParams, Generator};
//! use sparq::model::llama::{DecoderOptions, LlamaDecoder};
//! # fn main() -> sparq::Result<()> {
//! let gpu = sparq::Gpu::from_env()?;
//! let path = "models/SmolLM2-135M-Instruct/model.gguf";
//! let lm = LlamaDecoder::from_gguf(path, &gpu, DecoderOptions::default())?;
//! let codec = sparq::model::llama::gguf::text_codec(&sparq::gguf::Gguf::open(path)?)?;
//! let prompt = codec.encode("The capital of France is", false)?;
//! let generator = Generator::new(&lm, Some(&codec));
//! for piece in generator.start(&prompt, &GenerateParams::default())? {
//!     print!("{}", piece?.text);
//! }
//! # Ok(()) }
//! ```

mod decoding;

pub use decoding::{Decoding, NextToken};

use super::decode::{CausalLm, Chunk, LogitRows};
use super::kv::SeqId;
use super::sampling::SamplingParams;
use super::text::TextCodec;
use crate::error::{Error, Result};
use std::time::Instant;

/// Prompt tokens prefilled per step at most (bounds a plan's rows and its scratch).
pub const PREFILL_CHUNK: usize = 2048;

/// How to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// How each token is chosen.
    pub sampling: SamplingParams,
    /// Text that ends the generation where it appears (it is not part of the result).
    pub stop: Vec<String>,
    /// Tokens that end the generation besides the codec's own end-of-generation tokens (EOS,
    /// end of turn); they are not part of the text.
    pub eos: Vec<u32>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 64,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            eos: Vec::new(),
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_tokens` were generated.
    Length,
    /// An EOS token came.
    Eos,
    /// A stop string appeared.
    Stop,
}

/// One generated token and the text it completes (possibly empty: a token may end inside a
/// UTF-8 character, or inside what could still become a stop string).
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The token.
    pub token: u32,
    /// Text that is now final.
    pub text: String,
}

/// A finished generation.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The generated tokens (an EOS that ended it included).
    pub tokens: Vec<u32>,
    /// Their text, up to a stop string.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Wall time of the prefill (to the first token's logits).
    pub prefill_seconds: f64,
    /// Wall time of the decode steps.
    pub decode_seconds: f64,
}

/// Generates from prompts with one model (and its text codec, for text and its EOS tokens).
pub struct Generator<'a> {
    lm: &'a dyn CausalLm,
    codec: Option<&'a TextCodec>,
}

/// Checks a request against `lm` before any work is done: a prompt of at least one token,
/// each in the vocabulary, that fits the context with its `max_tokens`, no empty stop string,
/// sampling settings that have a meaning. Every error is an input error; [`Generator::start`]
/// and the serving engine ([`crate::schedule::generation`]) both call it.
pub fn validate_request(lm: &dyn CausalLm, prompt: &[u32], params: &GenerateParams) -> Result<()> {
    params.sampling.validate()?;
    let ctx = lm.max_context();
    if prompt.is_empty() {
        return Err(Error::invalid("the prompt has no tokens"));
    }
    if prompt.len() > ctx {
        return Err(Error::invalid(format!(
            "the prompt has {} tokens, over the model's context of {ctx}",
            prompt.len()
        )));
    }
    if prompt.len() + params.max_tokens > ctx {
        return Err(Error::invalid(format!(
            "{} prompt tokens + max_tokens {} exceed the model's context of {ctx}",
            prompt.len(),
            params.max_tokens
        )));
    }
    let vocab = lm.vocab_size();
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(format!(
            "token {t} is outside the vocabulary of {vocab}"
        )));
    }
    if params.stop.iter().any(String::is_empty) {
        return Err(Error::invalid("a stop string is empty"));
    }
    Ok(())
}

impl<'a> Generator<'a> {
    /// A generator over `lm`; without a codec the pieces carry no text and only
    /// [`GenerateParams::eos`] ends a generation early.
    pub fn new(lm: &'a dyn CausalLm, codec: Option<&'a TextCodec>) -> Self {
        Generator { lm, codec }
    }

    /// Prefills `prompt` and returns the stream of generated tokens.
    pub fn start(&self, prompt: &[u32], params: &GenerateParams) -> Result<Generation<'a>> {
        validate_request(self.lm, prompt, params)?;
        let started = Instant::now();
        let mut g = Generation {
            lm: self.lm,
            codec: self.codec,
            seq: self.lm.open(),
            dec: Decoding::new(prompt, params)?,
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
        };
        let chunks: Vec<&[u32]> = prompt.chunks(PREFILL_CHUNK).collect();
        for (i, part) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let want = match last {
                true => g.dec.wanted(),
                false => LogitRows::None,
            };
            let out = self.lm.step(&[Chunk {
                seq: g.seq,
                tokens: part,
                logits: want,
            }])?;
            if last {
                g.dec.set_next(NextToken::from_output(out)?);
            }
        }
        g.prefill_seconds = started.elapsed().as_secs_f64();
        Ok(g)
    }

    /// Generates from `prompt` to the end, handing each piece to `on_piece` as it comes.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_piece: impl FnMut(&Piece),
    ) -> Result<Generated> {
        let mut g = self.start(prompt, params)?;
        for piece in g.by_ref() {
            on_piece(&piece?);
        }
        g.finished()
    }
}

/// A generation in progress: an iterator of [`Piece`]s that ends with the generation (its
/// sequence is closed when it is dropped).
pub struct Generation<'a> {
    lm: &'a dyn CausalLm,
    codec: Option<&'a TextCodec>,
    seq: SeqId,
    dec: Decoding,
    prefill_seconds: f64,
    decode_seconds: f64,
}

impl Generation<'_> {
    /// The generated tokens so far.
    pub fn tokens(&self) -> &[u32] {
        self.dec.tokens()
    }

    /// Why it ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.dec.finish_reason()
    }

    /// The summary of a generation that has ended (an error before).
    pub fn finished(&self) -> Result<Generated> {
        let finish = self
            .dec
            .finish_reason()
            .ok_or_else(|| Error::invalid("the generation has not ended"))?;
        Ok(Generated {
            tokens: self.tokens().to_vec(),
            text: self.dec.text().to_string(),
            finish,
            prompt_tokens: self.dec.prompt_len(),
            prefill_seconds: self.prefill_seconds,
            decode_seconds: self.decode_seconds,
        })
    }

    fn advance(&mut self) -> Result<Piece> {
        if !self.dec.has_next() {
            // The last token taken is not in the cache yet: feed it.
            let started = Instant::now();
            let last = *self.dec.history().last().unwrap_or(&0);
            let out = self.lm.step(&[Chunk {
                seq: self.seq,
                tokens: &[last],
                logits: self.dec.wanted(),
            }])?;
            self.dec.set_next(NextToken::from_output(out)?);
            self.decode_seconds += started.elapsed().as_secs_f64();
        }
        self.dec.next_piece(self.codec)
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.dec.finish_reason().is_some() {
            return None;
        }
        let piece = self.advance();
        if piece.is_err() {
            // A failed step leaves the sequence where it was; the stream ends with the error.
            self.dec.end(FinishReason::Length);
        }
        Some(piece)
    }
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        self.lm.close(self.seq);
    }
}
