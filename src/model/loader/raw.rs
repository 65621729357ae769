//! Byte tensors (safetensors `U8`, one dimension) that a sparq file carries beside the model:
//! a decoder's tokenizer as a metadata-only GGUF file ([`TOKENIZER_GGUF`]). A tensor rather than
//! a metadata string keeps the header small (a tokenizer is megabytes; the header is parsed
//! whole on every open and readers cap it) and needs no text encoding of binary data.

use super::WeightFile;
use crate::error::{Error, InputError, Result};
use safetensors::tensor::Dtype;

/// The tensor holding a decoder's tokenizer: its GGUF source's `tokenizer.*` metadata as a
/// metadata-only GGUF file (written by `sparq pack`, read by
/// [`crate::model::llama::tokenizer_file`]). Not a part of the model: [`super::check_unused`]
/// passes over it.
pub const TOKENIZER_GGUF: &str = "sparq.tokenizer.gguf";

/// Tensors a sparq file may carry that no model reads (see [`super::check_unused`]).
pub(super) const CARRIED: [&str; 1] = [TOKENIZER_GGUF];

impl WeightFile {
    /// The bytes of the one-dimensional `U8` tensor `name` (`None` when absent), at most
    /// `limit` of them; another dtype, shape or a longer tensor is a typed error naming it.
    pub fn byte_tensor(&self, name: &str, limit: usize) -> Result<Option<&[u8]>> {
        let Some(info) = self.meta.info(name) else {
            return Ok(None);
        };
        let expected = format!("a one-dimensional U8 tensor of at most {limit} bytes");
        if info.dtype != Dtype::U8 || info.shape.len() != 1 || info.shape[0] > limit {
            return Err(Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected,
                found: format!("{:?} of shape {:?}", info.dtype, info.shape),
            }));
        }
        self.mark(name);
        Ok(Some(self.bytes(info)))
    }
}
