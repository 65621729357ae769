//! Text tokenised as a forward pass tokenises it, with the inputs that the model's length
//! cut: so that a caller can say so, or refuse them ([`TokenizerError::TooLong`]).

use super::{Batch, Model};
use crate::error::{Error, Result, TokenizerError};

/// Texts tokenised by [`Model::encode_text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids per text.
    pub ids: Vec<Vec<u32>>,
    /// Token types per text.
    pub types: Vec<Vec<u32>>,
    /// Indices of the texts cut to [`Encoded::max_tokens`], ascending.
    pub truncated: Vec<usize>,
    /// The most tokens the model reads of one text.
    pub max_tokens: usize,
}

impl Encoded {
    /// The batch of these tokens: its forward pass equals that of the texts.
    pub fn into_batch(self) -> Batch {
        Batch::Tokens {
            ids: self.ids,
            types: Some(self.types),
        }
    }
}

impl Model<'_> {
    /// Tokenises `texts` as [`Model::forward`] does for [`Batch::Text`], telling which texts
    /// were truncated to the model's length; with `truncate` false, the first such text is
    /// refused instead ([`TokenizerError::TooLong`], with its full length).
    pub fn encode_text(&self, texts: &[String], truncate: bool) -> Result<Encoded> {
        let tok = self.text_tokenizer()?;
        let max_tokens = tok.get_truncation().map_or(usize::MAX, |t| t.max_length);
        let mut enc = Encoded {
            ids: Vec::with_capacity(texts.len()),
            types: Vec::with_capacity(texts.len()),
            truncated: Vec::new(),
            max_tokens,
        };
        for (row, (ids, types, cut)) in super::prefix::encode_flagged(tok, texts)?
            .into_iter()
            .enumerate()
        {
            if cut && !truncate {
                let tokens = super::prefix::untruncated_clone(tok)?
                    .encode(texts[row].as_str(), true)
                    .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?
                    .len();
                return Err(TokenizerError::TooLong {
                    row,
                    tokens,
                    limit: max_tokens,
                }
                .into());
            }
            if cut {
                enc.truncated.push(row);
            }
            enc.ids.push(ids);
            enc.types.push(types);
        }
        Ok(enc)
    }
}
