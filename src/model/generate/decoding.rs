//! The per-sequence state of a generation, apart from the model that steps it.

use super::{FinishReason, GenerateParams, Piece};
use crate::error::{Error, Result};
use crate::model::decode::{LogitRows, StepOutput};
use crate::model::sampling::Sampler;
use crate::model::text::{TextCodec, TokenStream};

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
/// whoever owns the model (a `Generation`, a replica of the serving engine) feeds
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
    /// `validate_request` for the rest.
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

    /// Ends the generation early (a [`super::Generation`] whose step failed).
    pub(super) fn end(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
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
