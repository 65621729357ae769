//! Calibration of a decoder for `sparq pack --calibrate`: the inputs of every linear layer
//! of the f64 reference decoder over a few hundred tokens of text, summed as GPTQ's and
//! SparseGPT's `Σ x xᵀ` ([`Hessian`]), keyed by the weight's tensor name. Q, K and V read one
//! input, as do gate and up, so each such group is summed once and shared.

use super::{LlamaLinear, LlamaNames, Reference};
use crate::error::{Error, Result};
use crate::formats::gptq::Hessian;
use std::collections::HashMap;
use std::path::Path;

/// Steps of [`hessians`] over `sequences` on a decoder of `layers` layers: each layer of
/// each sequence with tokens.
pub fn steps(layers: usize, sequences: &[Vec<u32>]) -> usize {
    sequences.iter().filter(|s| !s.is_empty()).count() * layers
}

/// Sums of each linear weight's inputs over `sequences` (each from an empty context, cut to
/// the model's context), with the tokens seen. Calls `progress(done, total, label)` as each
/// of the [`steps`] (a layer of a sequence) starts, and `(total, total, "done")` at the end.
pub fn hessians(
    reference: &Reference,
    sequences: &[Vec<u32>],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<(HashMap<String, Hessian>, usize)> {
    let max = reference.config().max_context;
    let total = steps(reference.config().num_layers, sequences);
    let mut done = 0;
    let mut sums: HashMap<(usize, LlamaLinear), Hessian> = HashMap::new();
    let mut tokens = 0;
    for (i, seq) in sequences.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
        let seq = &seq[..seq.len().min(max)];
        reference.observe(seq, &mut |l, site, x| {
            if site == LlamaLinear::Q {
                // A layer's first input: the layer starts.
                let label = format!("text {} of {}, layer {l}", i + 1, sequences.len());
                progress(done.min(total), total, &label);
                done += 1;
            }
            // The first site of each group of one input stands for the group.
            if matches!(site, LlamaLinear::K | LlamaLinear::V | LlamaLinear::Up) {
                return;
            }
            let h = sums
                .entry((l, site))
                .or_insert_with(|| Hessian::new(x[0].len()));
            x.iter().for_each(|row| h.add(row));
        })?;
        tokens += seq.len();
    }
    if tokens == 0 {
        return Err(Error::invalid("calibration needs at least one token"));
    }
    progress(total, total, "done");
    let names = LlamaNames::default();
    let mut out = HashMap::new();
    for ((l, site), h) in sums {
        let group: &[LlamaLinear] = match site {
            LlamaLinear::Q => &[LlamaLinear::Q, LlamaLinear::K, LlamaLinear::V],
            LlamaLinear::Gate => &[LlamaLinear::Gate, LlamaLinear::Up],
            _ => &[site],
        };
        for &s in group {
            out.insert(names.linear(l, s).weight(), h.clone());
        }
    }
    Ok((out, tokens))
}

/// Token ids of `texts` by the tokenizer of the checkpoint at `path`: a GGUF file's own, or
/// `tokenizer.json` in a Hugging Face directory (or beside a safetensors file).
pub fn tokenize(path: &Path, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    let tok = match super::hf::detect(path)? {
        super::CheckpointKind::Gguf => super::gguf::tokenizer(&crate::gguf::Gguf::open(path)?)?,
        _ => {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            let file = dir.join("tokenizer.json");
            tokenizers::Tokenizer::from_file(&file).map_err(|e| {
                Error::config(format!(
                    "calibration needs a tokenizer: {}: {e}",
                    file.display()
                ))
            })?
        }
    };
    texts
        .iter()
        .map(|t| {
            tok.encode(t.as_str(), true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::invalid(format!("tokenizing calibration text: {e}")))
        })
        .collect()
}
