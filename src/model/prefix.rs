//! Tokenising only as much of a long text as the model reads. An encoder truncates every
//! input to its longest sequence, so tokenising a 200 MB text in full (minutes) to keep its
//! first few hundred tokens is wasted work. For a tokenizer whose pieces never cross a space
//! that follows a word (`splits_at_spaces`), the tokens of a prefix cut just before such a
//! space are the first tokens of the whole text; once that prefix fills the truncation length
//! its ids are the whole text's truncated ids. A prefix that turns out short is grown (four
//! times the bytes) until it fills the length or is the whole text, so the answer is the same
//! as tokenising in full, whatever the text (long runs of spaces, one giant word).
//!
//! Whole inputs are bounded too: [`MAX_INPUT_BYTES`].

use crate::error::{Error, Result};
use tokenizers::normalizers::NormalizerWrapper as N;
use tokenizers::pre_tokenizers::PreTokenizerWrapper as P;
use tokenizers::{Tokenizer, TruncationDirection};

/// Most bytes of text input sparq takes at once (all texts of a batch together, or a JSON
/// input file): 64 MiB. An encoder reads at most a few hundred tokens of each text; a larger
/// input is refused before any of it is tokenised. Split it into several inputs.
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Bytes of text first tried per token of the truncation length (grown when short).
const BYTES_PER_TOKEN: usize = 32;

/// Refuses an input of `bytes` over [`MAX_INPUT_BYTES`], naming `what` it is.
pub fn check_input_bytes(what: &str, bytes: usize) -> Result<()> {
    if bytes > MAX_INPUT_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {bytes} bytes, over the limit of {MAX_INPUT_BYTES} bytes (64 MiB) of \
             text input: split it into several inputs"
        )));
    }
    Ok(())
}

/// Whether `n` maps characters one by one (or adds text only at the start), never removing or
/// moving a space: what lets a prefix stand for the start of the text.
fn local_normalizer(n: &N) -> bool {
    match n {
        N::BertNormalizer(_)
        | N::StripAccents(_)
        | N::NFC(_)
        | N::NFD(_)
        | N::NFKC(_)
        | N::NFKD(_)
        | N::Lowercase(_)
        | N::StripNormalizer(_)
        | N::Prepend(_) => true,
        N::Sequence(s) => s.as_ref().iter().all(local_normalizer),
        _ => false,
    }
}

/// Whether `p` always ends a piece at a space that follows a word.
fn splits_at_spaces(p: &P) -> bool {
    match p {
        P::BertPreTokenizer(_) | P::Whitespace(_) | P::WhitespaceSplit(_) => true,
        P::ByteLevel(b) => b.use_regex,
        P::Metaspace(m) => m.split,
        // Later members only split further.
        P::Sequence(s) => s.as_ref().first().is_some_and(splits_at_spaces),
        _ => false,
    }
}

/// The truncation length when `tok` keeps the first tokens of a text and a prefix of the
/// text gives the same first tokens; `None` when only a full tokenisation is safe.
fn prefix_length(tok: &Tokenizer) -> Option<usize> {
    let t = tok.get_truncation()?;
    let right = matches!(t.direction, TruncationDirection::Right) && t.stride == 0;
    let local = tok.get_normalizer().is_none_or(local_normalizer);
    let splits = tok.get_pre_tokenizer().is_some_and(splits_at_spaces);
    (right && local && splits && t.max_length > 0).then_some(t.max_length)
}

/// The longest prefix of `text` of at most `budget` bytes that ends just before a space
/// following a character that is neither a space nor a control character (which a
/// normalizer may drop, joining the words around it).
fn cut(text: &str, budget: usize) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut end = budget.min(bytes.len().saturating_sub(1));
    while end > 0 {
        if bytes[end] == b' ' && text.is_char_boundary(end) {
            let prev = text[..end].chars().next_back()?;
            if !prev.is_whitespace() && !prev.is_control() {
                return Some(&text[..end]);
            }
        }
        end -= 1;
    }
    None
}

/// A text's token ids and types, and whether it was truncated.
pub(crate) type Flagged = (Vec<u32>, Vec<u32>, bool);

/// `tok` without truncation, to count a whole text's tokens.
pub(crate) fn untruncated_clone(tok: &Tokenizer) -> Result<Tokenizer> {
    let mut whole = tok.clone();
    whole
        .with_truncation(None)
        .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?;
    Ok(whole)
}

/// Token ids and types of each of `texts`, as `tok.encode_batch` gives them, tokenising only
/// a prefix of each long text where that gives the same ids (see the module docs).
pub(crate) fn encode(tok: &Tokenizer, texts: &[String]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    Ok(encode_flagged(tok, texts)?
        .into_iter()
        .map(|(ids, types, _)| (ids, types))
        .collect())
}

/// [`encode`], with whether each text was truncated: a text whose tokens fill the length has
/// more of them untruncated, or (for a prefix that filled it) text other than white space
/// follows the prefix.
pub(crate) fn encode_flagged(tok: &Tokenizer, texts: &[String]) -> Result<Vec<Flagged>> {
    let total = texts.iter().try_fold(0usize, |a, t| a.checked_add(t.len()));
    check_input_bytes("the batch's text", total.unwrap_or(usize::MAX))?;
    let length = prefix_length(tok);
    let max = tok.get_truncation().map(|t| t.max_length);
    let mut untruncated: Option<Tokenizer> = None;
    let mut out: Vec<Option<Flagged>> = vec![None; texts.len()];
    let mut budget = length.map_or(usize::MAX, |l| l.saturating_mul(BYTES_PER_TOKEN));
    loop {
        // Each text not done yet, whole (short, or the prefix has grown past it) or cut.
        let mut todo: Vec<(usize, &str, bool)> = Vec::new();
        for (i, t) in texts.iter().enumerate().filter(|(i, _)| out[*i].is_none()) {
            match cut(t, budget).filter(|_| t.len() > budget) {
                Some(p) => todo.push((i, p, true)),
                None if t.len() <= budget || budget == usize::MAX => todo.push((i, t, false)),
                None => {} // no place to cut yet: grow the prefix
            }
        }
        let enc = tok
            .encode_batch(todo.iter().map(|&(_, s, _)| s).collect::<Vec<_>>(), true)
            .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?;
        for ((i, part, prefix), e) in todo.iter().zip(enc) {
            // A prefix is the answer once it fills the truncation length.
            if !prefix || Some(e.len()) == length {
                let cut = match prefix {
                    true => !texts[*i][part.len()..].trim().is_empty(),
                    // Only a text that fills the length can have been cut: count it whole.
                    false if Some(e.len()) == max => {
                        let whole = match &mut untruncated {
                            Some(w) => w,
                            None => untruncated.insert(untruncated_clone(tok)?),
                        };
                        whole
                            .encode(*part, true)
                            .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?
                            .len()
                            > e.len()
                    }
                    false => false,
                };
                out[*i] = Some((e.get_ids().to_vec(), e.get_type_ids().to_vec(), cut));
            }
        }
        if out.iter().all(Option::is_some) {
            return Ok(out.into_iter().flatten().collect());
        }
        budget = budget.saturating_mul(4);
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_fall_before_a_space_after_a_word() {
        assert_eq!(cut("ab cd ef", 7), Some("ab cd"));
        assert_eq!(cut("ab cd ef", 5), Some("ab cd"));
        assert_eq!(cut("ab cd ef", 4), Some("ab"));
        assert_eq!(cut("ab    cd", 5), Some("ab"));
        assert_eq!(cut("abcdefgh", 5), None);
        assert_eq!(cut("a\u{b} b", 5), None);
        assert_eq!(cut("é é", 2), Some("é"));
    }
}
