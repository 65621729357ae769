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

#[cfg(test)]
mod tests {
    use super::TokenStream;
    use rand::{Rng, SeedableRng};

    /// Pushes `bytes` in the given chunk sizes; returns the parts yielded and their join.
    fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<String>, String) {
        let mut s = TokenStream::new();
        let mut parts = Vec::new();
        let mut at = 0;
        for &n in cuts {
            let end = (at + n).min(bytes.len());
            parts.push(s.push_bytes(&bytes[at..end]));
            at = end;
        }
        parts.push(s.push_bytes(&bytes[at..]));
        parts.push(s.finish());
        let all = parts.concat();
        (parts, all)
    }

    #[test]
    fn a_character_cut_anywhere_comes_out_whole() {
        let text = "é🙂中";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let (parts, all) = run(bytes, &[cut]);
            assert_eq!(all, text);
            assert!(
                parts.iter().all(|p| !p.contains('\u{fffd}')),
                "{cut}: {parts:?}"
            );
        }
        // One byte at a time: each character appears once its last byte has come.
        let (parts, _) = run(bytes, &[1; 9]);
        assert_eq!(parts[..9], ["", "é", "", "", "", "🙂", "", "", "中"]);
    }

    #[test]
    fn random_bytes_join_to_the_lossy_decoding() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // Valid multi-byte characters mixed with stray lead and continuation bytes.
        let pool: Vec<&[u8]> = vec![
            "a".as_bytes(),
            "é".as_bytes(),
            "🙂".as_bytes(),
            "中".as_bytes(),
            &[0xf0, 0x9f],
            &[0x80],
            &[0xe4],
            &[0xff],
        ];
        for _ in 0..2000 {
            let n = rng.random_range(0..10);
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| pool[rng.random_range(0..pool.len())].to_vec())
                .collect();
            let cuts: Vec<usize> = (0..rng.random_range(0..6))
                .map(|_| rng.random_range(0..5))
                .collect();
            let (_, all) = run(&bytes, &cuts);
            assert_eq!(
                all,
                String::from_utf8_lossy(&bytes),
                "{bytes:x?} cut {cuts:?}"
            );
        }
    }
}
