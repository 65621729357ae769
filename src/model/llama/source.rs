//! Where a decoder's weights come from, by Hugging Face name ([`super::LlamaNames`]): a GGUF
//! file (its tensors mapped losslessly onto sparq formats by [`crate::gguf::packed_weights`],
//! or re-quantized), or f32 tensors on
//! the host (a safetensors checkpoint, a test's random model). The decoder asks for each linear
//! layer as a stack of row blocks, so Q/K/V and gate/up become one weight each.

use super::LlamaWeights;
use crate::error::{Error, InputError, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gguf::Gguf;
use crate::weights::LayerWeights;
use std::collections::HashMap;

/// Tensors of a Llama-family checkpoint, by Hugging Face name.
pub trait LlamaSource {
    /// The f32 values of a vector tensor (norm weights, biases) of `len` values.
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>>;
    /// The weights `parts` (name, rows), each `rows × k`, stacked by rows into one matrix
    /// (dense, or sparse where the source stores them so).
    fn linear(&self, parts: &[(String, usize)], k: usize) -> Result<LayerWeights>;
    /// The embedding table (`vocab × hidden`) in the format the row gather reads.
    fn embedding(&self, name: &str, vocab: usize, hidden: usize) -> Result<LayerWeights> {
        self.linear(&[(name.to_string(), vocab)], hidden)
    }
}

/// A GGUF file's tensors: packed as stored, or re-quantized to `format` when given.
pub struct GgufSource<'a> {
    file: &'a Gguf,
    by_hf: HashMap<String, String>,
    format: Option<WeightFormat>,
}

impl<'a> GgufSource<'a> {
    /// The tensors of `file` under the names `names` maps (Hugging Face → GGUF).
    pub fn new(
        file: &'a Gguf,
        names: impl IntoIterator<Item = (String, String)>,
        format: Option<WeightFormat>,
    ) -> Self {
        GgufSource {
            file,
            by_hf: names.into_iter().collect(),
            format,
        }
    }

    fn gguf_name(&self, hf: &str) -> Result<&str> {
        self.by_hf
            .get(hf)
            .map(String::as_str)
            .ok_or_else(|| Error::invariant(format!("no GGUF name for {hf}")))
    }
}

impl LlamaSource for GgufSource<'_> {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let g = self.gguf_name(name)?;
        let v = self.file.dequantize(g)?;
        if v.len() != len {
            return Err(InputError::BadTensor {
                tensor: g.to_string(),
                expected: format!("{len} values"),
                found: format!("{} values", v.len()),
            }
            .into());
        }
        Ok(v)
    }

    fn linear(&self, parts: &[(String, usize)], k: usize) -> Result<LayerWeights> {
        if let Some(format) = self.format {
            let mut w = Vec::new();
            let mut n = 0;
            for (name, rows) in parts {
                w.extend(self.floats(name, rows * k)?);
                n += rows;
            }
            return Ok(PackedWeights::quantize(&w, n, k, format)?.into());
        }
        let mut packed = Vec::with_capacity(parts.len());
        for (name, rows) in parts {
            let g = self.gguf_name(name)?;
            let p = crate::gguf::packed_weights(self.file, g)?;
            if (p.n, p.k) != (*rows, k) {
                return Err(InputError::BadTensor {
                    tensor: g.to_string(),
                    expected: format!("{rows} × {k}"),
                    found: format!("{} × {}", p.n, p.k),
                }
                .into());
            }
            packed.push(p);
        }
        match packed.len() {
            1 => Ok(packed.remove(0).into()),
            _ => Ok(PackedWeights::concat_rows(&packed.iter().collect::<Vec<_>>())?.into()),
        }
    }
}

/// f32 tensors on the host, packed into `format`.
pub struct HostSource<'a> {
    weights: &'a LlamaWeights,
    format: WeightFormat,
}

impl<'a> HostSource<'a> {
    /// `weights` (Hugging Face names) quantized to `format`.
    pub fn new(weights: &'a LlamaWeights, format: WeightFormat) -> Self {
        HostSource { weights, format }
    }

    fn values(&self, name: &str, len: usize) -> Result<&[f32]> {
        let (shape, data) = self
            .weights
            .get(name)
            .ok_or_else(|| InputError::MissingTensor {
                tensor: name.to_string(),
                expected: format!("{len} f32 values"),
            })?;
        if data.len() != len {
            return Err(InputError::BadTensor {
                tensor: name.to_string(),
                expected: format!("{len} values"),
                found: format!("{shape:?}"),
            }
            .into());
        }
        Ok(data)
    }
}

impl LlamaSource for HostSource<'_> {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.values(name, len)?.to_vec())
    }

    fn linear(&self, parts: &[(String, usize)], k: usize) -> Result<LayerWeights> {
        let mut w = Vec::new();
        let mut n = 0;
        for (name, rows) in parts {
            w.extend_from_slice(self.values(name, rows * k)?);
            n += rows;
        }
        Ok(PackedWeights::quantize(&w, n, k, self.format)?.into())
    }
}
