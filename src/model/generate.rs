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

use super::decode::{CausalLm, Chunk, LogitRows, StepOutput};
use super::kv::SeqId;
use super::sampling::{Sampler, SamplingParams};
use super::text::{TextCodec, TokenStream};
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

/// What a step gave for a sequence's next token: the argmax the device chose (greedy
/// settings, [`LogitRows::LastArgmax`]) or the row of logits to sample from.
#[derive(Clone, Debug, PartialEq)]
pub enum NextToken {
    /// The most likely token.
    Argmax(u32),
    /// The logits of the next token.
    Logits(Vec<f32>),
}

impl NextToken {
    /// The next token of the one chunk of a step.
    pub fn from_output(out: StepOutput) -> Result<Self> {
        match (out.argmax.first(), out.logits.into_iter().next()) {
            (Some(&t), _) => Ok(NextToken::Argmax(t)),
            (None, Some(row)) => Ok(NextToken::Logits(row)),
            (None, None) => Err(Error::invariant("a step gave no logits")),
        }
    }
}

/// The state of one sequence's generation apart from the model: its sampler, prompt and
/// generated tokens, the text made so far and what of it is still held back (a character not
/// yet complete, a possible start of a stop string), and why it ended. It runs no step:
/// whoever owns the model (a [`Generation`], a replica of the serving engine) feeds
/// [`Self::history`] to it, asks for [`Self::wanted`] and hands the result to
/// [`Self::set_next`], then takes the token with [`Self::next_piece`]. Because the state is
/// all here, a sequence can be re-prefilled from its history on another cache (preemption,
/// a failed device) and go on with exactly the stream it would have given.
#[derive(Clone, Debug)]
pub struct Decoding {
    /// Bytes of a character not yet complete.
    stream: TokenStream,
    sampler: Sampler,
    params: GenerateParams,
    /// Prompt and generated tokens.
    history: Vec<u32>,
    prompt_len: usize,
    /// What the last step gave for the next token, until it is taken.
    next: Option<NextToken>,
    /// Text of the generated tokens so far (up to a stop string once one came).
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    finish: Option<FinishReason>,
}

impl Decoding {
    /// The state before the first token (`max_tokens` 0: already ended, with
    /// [`FinishReason::Length`]). Checks only the sampling settings; see
    /// [`validate_request`] for the rest.
    pub fn new(prompt: &[u32], params: &GenerateParams) -> Result<Self> {
        Ok(Decoding {
            stream: TokenStream::new(),
            sampler: Sampler::new(params.sampling)?,
            params: params.clone(),
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            next: None,
            text: String::new(),
            emitted: 0,
            finish: (params.max_tokens == 0).then_some(FinishReason::Length),
        })
    }

    /// The settings it runs with.
    pub fn params(&self) -> &GenerateParams {
        &self.params
    }

    /// Prompt and generated tokens: what the model's cache must hold before the next step
    /// (the last generated token is fed by the step that gives the one after).
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Tokens of the prompt.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The generated tokens so far.
    pub fn tokens(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }

    /// Their text so far (up to a stop string once one came; at the end, all of it).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why it ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Whether the next token is ready to take (a step gave it and it was not taken yet).
    pub fn has_next(&self) -> bool {
        self.next.is_some()
    }

    /// What a step should read back for this sequence: greedy settings need only the argmax
    /// (computed on the device), anything else the logits.
    pub fn wanted(&self) -> LogitRows {
        let p = self.sampler.params();
        match p.is_greedy() && p.repetition_penalty == 1.0 {
            true => LogitRows::LastArgmax,
            false => LogitRows::Last,
        }
    }

    /// Hands over what a step gave for the next token (after the whole history was fed).
    pub fn set_next(&mut self, next: NextToken) {
        self.next = Some(next);
    }

    /// Chooses the next token from what [`Self::set_next`] gave and returns its piece; ends
    /// the generation at an EOS token (`codec`'s or [`GenerateParams::eos`]), a stop string
    /// or `max_tokens`.
    pub fn next_piece(&mut self, codec: Option<&TextCodec>) -> Result<Piece> {
        if self.finish.is_some() {
            return Err(Error::invariant("the generation has ended"));
        }
        let token = match self.next.take() {
            Some(NextToken::Argmax(t)) => t,
            Some(NextToken::Logits(row)) => self.sampler.sample(&row, &self.history)?,
            None => return Err(Error::invariant("no step gave the next token")),
        };
        self.history.push(token);
        if self.params.eos.contains(&token) || codec.is_some_and(|c| c.is_eos(token)) {
            self.finish = Some(FinishReason::Eos);
            self.text += &self.stream.finish();
            return Ok(self.piece(token, true));
        }
        if let Some(codec) = codec {
            self.text += &self.stream.push(codec, token)?;
            if self.tokens().len() >= self.params.max_tokens {
                self.text += &self.stream.finish();
            }
            // A stop string that completes now started at most its length before the end of
            // what was handed out (its prefixes were held back).
            let from = self.emitted.saturating_sub(max_len(&self.params.stop));
            if let Some(at) = first_stop(&self.text, &self.params.stop, from) {
                self.text.truncate(at);
                self.finish = Some(FinishReason::Stop);
                return Ok(self.piece(token, true));
            }
        }
        if self.tokens().len() >= self.params.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(self.piece(token, true));
        }
        Ok(self.piece(token, false))
    }

    /// The piece for `token`: the text now final (all of it when the generation ends, else
    /// all but a tail that could begin a stop string).
    fn piece(&mut self, token: u32, last: bool) -> Piece {
        // A stop string never starts inside text already handed out (its prefixes are held
        // back), so `emitted` stays within the text; the `min` only guards that reasoning.
        let start = self.emitted.min(self.text.len());
        let mut end = self.text.len();
        if !last {
            end -= held_back(&self.text[start..], &self.params.stop);
        }
        let text = self.text[start..end].to_string();
        self.emitted = end;
        Piece { token, text }
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
            self.dec.finish = Some(FinishReason::Length);
        }
        Some(piece)
    }
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        self.lm.close(self.seq);
    }
}

fn max_len(stop: &[String]) -> usize {
    stop.iter().map(String::len).max().unwrap_or(0)
}

/// Where the first stop string starts in `text`, searching from byte `from` (rounded down to a
/// character boundary) on.
fn first_stop(text: &str, stop: &[String], from: usize) -> Option<usize> {
    let mut from = from.min(text.len());
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    stop.iter()
        .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
        .min()
}

/// Bytes at the end of `tail` that are a proper prefix of some stop string (and so must wait).
fn held_back(tail: &str, stop: &[String]) -> usize {
    let mut hold = 0;
    for s in stop {
        for (i, _) in s.char_indices().skip(1) {
            if tail.ends_with(&s[..i]) {
                hold = hold.max(i);
            }
        }
    }
    hold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_and_their_prefixes_held_back() {
        let stop = vec!["</s>".to_string(), "\n\n".to_string()];
        assert_eq!(first_stop("ab</s>c", &stop, 0), Some(2));
        assert_eq!(first_stop("a\n\nb</s>", &stop, 0), Some(1));
        assert_eq!(first_stop("abc", &stop, 0), None);
        assert_eq!(held_back("ab</", &stop), 2);
        assert_eq!(held_back("ab\n", &stop), 1);
        assert_eq!(held_back("abc", &stop), 0);
        assert_eq!(held_back("é<", &["<é>".to_string()]), 1);
        assert_eq!(first_stop("éé", &stop, 1), None);
    }
}
