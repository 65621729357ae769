//! Incremental detokenisation: ids arrive one at a time during generation, and a byte-level
//! token may end in the middle of a character (an emoji is often three or four tokens).

use super::TextCodec;
use crate::error::Result;

/// Turns ids into text as they come, yielding only whole characters: the bytes of a character
/// that is not complete yet are held until it is.
///
/// What [`push`](Self::push) and [`finish`](Self::finish) yield, concatenated, is exactly
/// [`TextCodec::decode`] of all the ids: bytes that can never become UTF-8 are replaced by
/// U+FFFD as soon as that is certain, the way [`String::from_utf8_lossy`] replaces them.
/// The stream does not borrow the codec, so a generator can own both.
#[derive(Clone, Debug, Default)]
pub struct TokenStream {
    pending: Vec<u8>,
}

impl TokenStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text that `id` completes (often empty in the middle of a character); an error for
    /// an id outside the vocabulary, which leaves the stream as it was.
    pub fn push(&mut self, codec: &TextCodec, id: u32) -> Result<String> {
        Ok(self.push_bytes(codec.token_bytes(id)?))
    }

    /// [`push`](Self::push) for raw bytes.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest = 0;
        loop {
            match std::str::from_utf8(&self.pending[rest..]) {
                Ok(s) => {
                    out.push_str(s);
                    rest = self.pending.len();
                    break;
                }
                Err(e) => {
                    let good = rest + e.valid_up_to();
                    // Checked by from_utf8 just above.
                    out.push_str(std::str::from_utf8(&self.pending[rest..good]).unwrap_or(""));
                    match e.error_len() {
                        // Invalid whatever follows: replaced now, as from_utf8_lossy would.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = good + n;
                        }
                        // A character cut short by the end of the bytes so far: hold it.
                        None => {
                            rest = good;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..rest);
        out
    }

    /// Bytes held for a character not complete yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: a character left incomplete becomes U+FFFD (as decode renders it).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
