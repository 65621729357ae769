//! Where a BERT checkpoint keeps its tensors, said once ([`BertNames`]) and read through that
//! one description by the GPU loader ([`super::Bert::load`]), the host reference
//! ([`host_weights`]), packing ([`pack`]), calibration and neuron pruning.

use crate::error::Result;
use crate::model::compress::{Floats, Linears};
use crate::model::config::BertConfig;
use crate::model::loader::{Store, WeightFile};
use crate::model::names::{Names, NormSpelling};
use crate::model::reference::{BertLayerWeights, BertWeights, LinearSite};
use crate::weights::LayerWeights;

/// The tensor names of one BERT checkpoint: Hugging Face names with or without the `bert.`
/// prefix, LayerNorm parameters as `weight`/`bias` or `gamma`/`beta`.
#[derive(Clone, Debug)]
pub struct BertNames {
    root: Names,
}

impl Default for BertNames {
    /// Hugging Face's spelling without a prefix (`embeddings.…`, LayerNorms as
    /// `weight`/`bias`): what sparq writes.
    fn default() -> Self {
        BertNames {
            root: Names::new("").with_norm(NormSpelling::WeightBias),
        }
    }
}

impl BertNames {
    /// Detects the prefix from the word embeddings' name and the LayerNorm spelling from the
    /// embeddings' LayerNorm.
    pub fn detect(file: &WeightFile) -> Self {
        let word = "embeddings.word_embeddings.weight";
        let prefix = if !file.contains(word) && file.contains(&format!("bert.{word}")) {
            "bert."
        } else {
            ""
        };
        let ln = Names::new(prefix).pp("embeddings").pp("LayerNorm");
        let norm = if !file.contains(&ln.weight()) && file.contains(&ln.get("gamma")) {
            NormSpelling::GammaBeta
        } else {
            NormSpelling::WeightBias
        };
        BertNames {
            root: Names::new(prefix).with_norm(norm),
        }
    }

    /// The embedding table `which` (`word`, `position` or `token_type`).
    pub fn embedding(&self, which: &str) -> String {
        self.root
            .pp("embeddings")
            .pp(format!("{which}_embeddings"))
            .weight()
    }

    /// The LayerNorm after the embeddings.
    pub fn embedding_norm(&self) -> Names {
        self.root.pp("embeddings").pp("LayerNorm")
    }

    /// Layer `l`.
    pub fn layer(&self, l: usize) -> Names {
        self.root.pp("encoder").pp("layer").pp(l)
    }

    /// The linear layer `site` of layer `l` (for [`LinearSite::Qkv`], the fused `3H × H`
    /// weight sparq writes).
    pub fn linear(&self, l: usize, site: LinearSite) -> Names {
        let layer = self.layer(l);
        match site {
            LinearSite::Qkv => layer.pp("attention").pp("self").pp("qkv"),
            LinearSite::Out => layer.pp("attention").pp("output").pp("dense"),
            LinearSite::FfnIn => layer.pp("intermediate").pp("dense"),
            LinearSite::FfnOut => layer.pp("output").pp("dense"),
        }
    }

    /// One of the separate `query`, `key` and `value` projections of layer `l`.
    pub fn attention_part(&self, l: usize, part: &str) -> Names {
        self.layer(l).pp("attention").pp("self").pp(part)
    }

    /// The LayerNorm after attention (`0`) or after the FFN (`1`) of layer `l`.
    pub fn norm(&self, l: usize, which: usize) -> Names {
        let layer = self.layer(l);
        match which {
            0 => layer.pp("attention").pp("output").pp("LayerNorm"),
            _ => layer.pp("output").pp("LayerNorm"),
        }
    }
}

/// `(n, k)` of linear `site` in `c`.
pub fn linear_shape(c: &BertConfig, site: LinearSite) -> (usize, usize) {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    match site {
        LinearSite::Qkv => (3 * h, h),
        LinearSite::Out => (h, h),
        LinearSite::FfnIn => (i, h),
        LinearSite::FfnOut => (h, i),
    }
}

/// Reads the fused `3H × H` QKV weight and bias of layer `l`: as stored, or the three float
/// matrices stacked and stored through `store`.
pub fn qkv_weights(
    file: &WeightFile,
    names: &BertNames,
    l: usize,
    h: usize,
    store: &mut Store<'_>,
) -> Result<(LayerWeights, Vec<f32>)> {
    let fused = names.linear(l, LinearSite::Qkv);
    if file.contains(&fused.weight()) {
        let w = file.matrix_with(&fused.weight(), 3 * h, h, store)?;
        return Ok((w, file.floats(&fused.bias(), &[3 * h])?));
    }
    // Read before anything is reserved: each read checks the shape against the file, so no
    // allocation is sized by the configuration alone.
    let (mut w, mut b) = (Vec::new(), Vec::new());
    for part in ["query", "key", "value"] {
        let p = names.attention_part(l, part);
        w.extend(file.floats(&p.weight(), &[h, h])?);
        b.extend(file.floats(&p.bias(), &[h])?);
    }
    Ok((store(&fused.weight(), &w, 3 * h, h)?, b))
}

/// Reads the weight of linear `site` of layer `l` through `store` and its bias.
pub fn linear_weights(
    file: &WeightFile,
    c: &BertConfig,
    names: &BertNames,
    l: usize,
    site: LinearSite,
    store: &mut Store<'_>,
) -> Result<(LayerWeights, Vec<f32>)> {
    if site == LinearSite::Qkv {
        return qkv_weights(file, names, l, c.hidden_size, store);
    }
    let (n, k) = linear_shape(c, site);
    let at = names.linear(l, site);
    Ok((
        file.matrix_with(&at.weight(), n, k, store)?,
        file.floats(&at.bias(), &[n])?,
    ))
}

/// Scale and shift of the LayerNorm `at` (width `h`).
pub fn norm_weights(file: &WeightFile, at: &Names, h: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((
        file.floats(&at.norm_scale(), &[h])?,
        file.floats(&at.norm_shift(), &[h])?,
    ))
}

/// Reads every BERT weight of `file` to the host, linear weights as `format` would store them
/// (dequantized): the input of [`crate::model::reference::bert`].
pub fn host_weights(
    file: &WeightFile,
    c: &BertConfig,
    format: crate::formats::WeightFormat,
) -> Result<BertWeights> {
    let names = BertNames::detect(file);
    let h = c.hidden_size;
    let mut store = crate::model::loader::quantizer(format);
    let mut layers = Vec::new();
    for l in 0..c.num_hidden_layers {
        let mut lin = |site| -> Result<(Vec<f32>, Vec<f32>)> {
            let (w, b) = linear_weights(file, c, &names, l, site, &mut store)?;
            Ok((w.dequantize(), b))
        };
        layers.push(BertLayerWeights {
            qkv: lin(LinearSite::Qkv)?,
            out: lin(LinearSite::Out)?,
            ffn_in: lin(LinearSite::FfnIn)?,
            ffn_out: lin(LinearSite::FfnOut)?,
            ln1: norm_weights(file, &names.norm(l, 0), h)?,
            ln2: norm_weights(file, &names.norm(l, 1), h)?,
        });
    }
    Ok(BertWeights {
        word: file.floats(&names.embedding("word"), &[c.vocab_size, h])?,
        pos: file.floats(
            &names.embedding("position"),
            &[c.max_position_embeddings, h],
        )?,
        types: file.floats(&names.embedding("token_type"), &[c.type_vocab_size, h])?,
        emb_ln: norm_weights(file, &names.embedding_norm(), h)?,
        layers,
    })
}

/// Every linear weight of a BERT checkpoint under the name the loader reads it by (Q, K and V
/// fused), stored through `store` (weights the file already holds packed stay as they are);
/// the other tensors as f32, under the file's own spelling. What `sparq pack` writes.
pub fn pack(file: &WeightFile, c: &BertConfig, store: &mut Store<'_>) -> Result<(Floats, Linears)> {
    let names = BertNames::detect(file);
    let h = c.hidden_size;
    let mut floats = Vec::new();
    let mut packed = Vec::new();
    let mut float = |name: String, shape: Vec<usize>| -> Result<()> {
        let v = file.floats(&name, &shape)?;
        floats.push((name, shape, v));
        Ok(())
    };
    float(names.embedding("word"), vec![c.vocab_size, h])?;
    float(
        names.embedding("position"),
        vec![c.max_position_embeddings, h],
    )?;
    float(names.embedding("token_type"), vec![c.type_vocab_size, h])?;
    let norms = |l: Option<usize>| match l {
        None => vec![names.embedding_norm()],
        Some(l) => vec![names.norm(l, 0), names.norm(l, 1)],
    };
    let mut norm_names = norms(None);
    let mut linear_biases = Vec::new();
    for l in 0..c.num_hidden_layers {
        for site in LinearSite::ALL {
            let (w, b) = linear_weights(file, c, &names, l, site, store)?;
            let at = names.linear(l, site);
            packed.push((at.weight(), w));
            linear_biases.push((at.bias(), vec![b.len()], b));
        }
        norm_names.extend(norms(Some(l)));
    }
    for at in norm_names {
        float(at.norm_scale(), vec![h])?;
        float(at.norm_shift(), vec![h])?;
    }
    floats.extend(linear_biases);
    Ok((floats, packed))
}
