//! Encoder teachers, the students made from them and the students' files: a teacher read to
//! the host in f32 with its tokenizer; a student of fewer layers (taken evenly from the
//! teacher's, DistilBERT's every other layer), narrower FFNs (`neurons:S`) or the teacher's
//! shape with fixed pruning masks; the trained student written as a self-describing model
//! file that `sparq embed` loads and `sparq pack` packs.

use super::{BertStudent, Sequence};
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::model::bert::{BertNames, host_weights};
use crate::model::config::{Architecture, BertConfig};
use crate::model::loader::{self, WeightFile};
use crate::model::reference::{BertWeights, LinearSite};
use crate::model::shrink::drop_neurons;
use crate::model::tokenizer_source;
use crate::prune::prune;
use crate::train::student::StudentSpec;
use std::collections::HashMap;
use std::path::Path;

/// An encoder teacher on the host: its configuration, f32 weights, tokenizer (truncating to
/// the model's longest sequence) and the tokenizer's text (which the student's file carries).
pub struct EncoderTeacher {
    /// The teacher's configuration.
    pub config: BertConfig,
    /// Its weights.
    pub weights: BertWeights,
    /// Its tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// The tokenizer's `tokenizer.json` text.
    pub tokenizer_text: String,
    /// The teacher's weight file (a student with cut neurons is cut from it).
    pub file: WeightFile,
}

/// The encoder at `path` (a model directory or its .safetensors file), with the tokenizer
/// `tokenizer` names or the one it carries or has beside it. A file that is not a BERT
/// encoder is refused.
pub fn bert_teacher(path: &Path, tokenizer: Option<&Path>) -> Result<EncoderTeacher> {
    let (weights, dir) = crate::model::locate(path)?;
    let file = WeightFile::open(&weights)?;
    let arch = match file.metadata(loader::CONFIG_KEY) {
        Some(json) => Architecture::from_sparq_json(json)?,
        None => Architecture::from_hf_dir(&dir)?,
    };
    let Architecture::Bert(config) = arch else {
        return Err(Error::config(format!(
            "{}: not a BERT encoder (encoder distillation takes BERT sentence encoders)",
            path.display()
        )));
    };
    config.validate()?;
    if let Some(name) = file.names().into_iter().find(|n| file.is_packed(n)) {
        return Err(Error::invalid(format!(
            "{}: {name} is packed; a teacher needs float weights (distil from the original \
             model)",
            path.display()
        )));
    }
    let text = tokenizer_source::for_pack(&file, &dir, tokenizer)?.ok_or_else(|| {
        Error::config(format!(
            "{}: no tokenizer (none inside, no tokenizer.json beside it): pass --tokenizer",
            path.display()
        ))
    })?;
    let tok = text
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| Error::config(format!("the teacher's tokenizer: {e}")))?;
    Ok(EncoderTeacher {
        weights: host_weights(&file, &config, WeightFormat::F32)?,
        tokenizer: crate::model::for_bert(tok, &config)?,
        tokenizer_text: text,
        config,
        file,
    })
}

impl EncoderTeacher {
    /// The teacher as a student of its own shape (what computes its sentence vectors).
    pub fn as_student(&self) -> BertStudent {
        BertStudent {
            config: self.config.clone(),
            weights: self.weights.clone(),
            masks: None,
        }
    }

    /// `texts` tokenised, each truncated to `max_seq` tokens (the special tokens kept).
    pub fn sequences(&self, texts: &[String], max_seq: usize) -> Result<Vec<Sequence>> {
        let mut tok = self.tokenizer.clone();
        tok.with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_seq.min(self.config.max_position_embeddings),
            ..Default::default()
        }))
        .map_err(|e| Error::config(format!("tokenizer truncation: {e}")))?;
        crate::model::encode(&tok, texts)
    }
}

/// The untrained student of `spec` for `teacher`.
pub fn bert_student(teacher: &EncoderTeacher, spec: StudentSpec) -> Result<BertStudent> {
    let c = &teacher.config;
    match spec {
        StudentSpec::Layers(n) => {
            let total = c.num_hidden_layers;
            if n == 0 || n >= total {
                return Err(Error::config(format!(
                    "student layers:{n}: the teacher has {total} layers; a student keeps 1 to {}",
                    total - 1
                )));
            }
            let mut config = c.clone();
            config.num_hidden_layers = n;
            let mut weights = teacher.weights.clone();
            // Evenly spaced from the first: every other layer of six for three (DistilBERT).
            weights.layers = (0..n)
                .map(|j| teacher.weights.layers[j * total / n].clone())
                .collect();
            Ok(BertStudent {
                config,
                weights,
                masks: None,
            })
        }
        StudentSpec::Neurons(fraction) => {
            let arch = Architecture::Bert(c.clone());
            let (arch, tensors, _) = drop_neurons(&teacher.file, &arch, fraction)?;
            let Architecture::Bert(config) = arch else {
                return Err(Error::invariant(
                    "cutting an encoder's neurons gave another architecture",
                ));
            };
            // The cut model's tensors go through a private file, read back as any model.
            let tmp = tempfile::Builder::new()
                .prefix("sparq-student-")
                .tempdir()?;
            let path = tmp.path().join("model.safetensors");
            loader::save(&path, &tensors, &[], HashMap::new())?;
            let weights = host_weights(&WeightFile::open(&path)?, &config, WeightFormat::F32)?;
            Ok(BertStudent {
                config,
                weights,
                masks: None,
            })
        }
        StudentSpec::Prune(method) => {
            let (h, i) = (c.hidden_size, c.intermediate_size);
            let mask = |w: &[f32], n: usize, k: usize| -> Result<Vec<f32>> {
                let pruned = prune(w, n, k, method)?;
                Ok(pruned.w.iter().map(|&v| (v != 0.0) as u8 as f32).collect())
            };
            let masks = teacher
                .weights
                .layers
                .iter()
                .map(|l| {
                    Ok([
                        mask(&l.qkv.0, 3 * h, h)?,
                        mask(&l.out.0, h, h)?,
                        mask(&l.ffn_in.0, i, h)?,
                        mask(&l.ffn_out.0, h, i)?,
                    ])
                })
                .collect::<Result<_>>()?;
            Ok(BertStudent {
                config: c.clone(),
                weights: teacher.weights.clone(),
                masks: Some(masks),
            })
        }
    }
}

/// Writes a trained encoder (`config`, `weights`) with its tokenizer's text as a model file,
/// atomically, Q, K and V fused as sparq stores them.
pub fn save_bert(
    path: &Path,
    config: &BertConfig,
    weights: &BertWeights,
    tokenizer_text: &str,
) -> Result<()> {
    let names = BertNames::default();
    let h = config.hidden_size;
    let mut floats: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (
            names.embedding("word"),
            vec![config.vocab_size, h],
            weights.word.clone(),
        ),
        (
            names.embedding("position"),
            vec![config.max_position_embeddings, h],
            weights.pos.clone(),
        ),
        (
            names.embedding("token_type"),
            vec![config.type_vocab_size, h],
            weights.types.clone(),
        ),
    ];
    let mut norm = |at: crate::model::names::Names, (g, b): &(Vec<f32>, Vec<f32>)| {
        floats.push((at.norm_scale(), vec![h], g.clone()));
        floats.push((at.norm_shift(), vec![h], b.clone()));
    };
    norm(names.embedding_norm(), &weights.emb_ln);
    for (l, lw) in weights.layers.iter().enumerate() {
        norm(names.norm(l, 0), &lw.ln1);
        norm(names.norm(l, 1), &lw.ln2);
    }
    for (l, lw) in weights.layers.iter().enumerate() {
        for (site, (w, b)) in [
            (LinearSite::Qkv, &lw.qkv),
            (LinearSite::Out, &lw.out),
            (LinearSite::FfnIn, &lw.ffn_in),
            (LinearSite::FfnOut, &lw.ffn_out),
        ] {
            let (n, k) = crate::model::bert::weights::linear_shape(config, site);
            let at = names.linear(l, site);
            floats.push((at.weight(), vec![n, k], w.clone()));
            floats.push((at.bias(), vec![n], b.clone()));
        }
    }
    let meta = HashMap::from([
        (
            loader::CONFIG_KEY.to_string(),
            Architecture::Bert(config.clone()).to_json(),
        ),
        (
            tokenizer_source::TOKENIZER_KEY.to_string(),
            tokenizer_text.to_string(),
        ),
    ]);
    loader::save(path, &floats, &[], meta)
}
