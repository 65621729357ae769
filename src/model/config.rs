//! Model architecture from a configuration: Hugging Face's `config.json` beside the weights
//! (BERT), sentence-transformers' pooling files, or sparq's own JSON in the safetensors
//! metadata (`sparq.config`), which also describes the MLP classifier.

use crate::error::InputError;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::activation::Activation;

pub use super::ops::Pooling;

/// A BERT-style encoder (post-LayerNorm transformer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer (Hugging Face name).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Positions the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Sentence pooling.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Whether sentence vectors are L2-normalised.
    #[serde(default)]
    pub normalize: bool,
    /// Longest token sequence the tokenizer keeps (truncation).
    #[serde(default)]
    pub max_seq_length: Option<usize>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pooling() -> Pooling {
    Pooling::Mean
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::parse(&self.hidden_act)
    }

    /// Refuses configurations the kernels cannot run.
    pub fn validate(&self) -> Result<()> {
        self.validate_in(SPARQ_CONFIG, SPARQ_CONFIG)
    }

    /// [`BertConfig::validate`], naming `file` (where the architecture was read) and
    /// `seq_file` (where `max_seq_length` was) in the errors.
    fn validate_in(&self, file: &str, seq_file: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Input(InputError::Config(m)));
        // Every size that sizes an allocation has a sane maximum, checked before anything
        // is read or allocated (the tensors' shapes are checked against these after).
        for (name, v, max) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("intermediate_size", self.intermediate_size, MAX_FFN),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                super::ops::MAX_SEQ,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_TYPES),
        ] {
            if v == 0 || v > max {
                return Err(field(file, name, v, format!("1..={max}")));
            }
        }
        if let Some(m) = self.max_seq_length
            && !(MIN_SEQ..=self.max_position_embeddings).contains(&m)
        {
            return Err(field(
                seq_file,
                "max_seq_length",
                m,
                format!(
                    "{MIN_SEQ}..={} (max_position_embeddings)",
                    self.max_position_embeddings
                ),
            ));
        }
        if self.parameters().is_none_or(|p| p > MAX_PARAMETERS) {
            return Err(field(
                file,
                "hidden_size",
                self.hidden_size,
                format!(
                    "a model of at most {MAX_PARAMETERS} parameters with these layers, \
                     vocabulary and widths"
                ),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.head_dim() > super::ops::MAX_HEAD_DIM {
            return bad(format!(
                "head size {} is over the {} the attention kernel supports",
                self.head_dim(),
                super::ops::MAX_HEAD_DIM
            ));
        }
        if self.max_position_embeddings > super::ops::MAX_SEQ {
            return bad(format!(
                "max_position_embeddings {} is over the {} the attention kernel supports",
                self.max_position_embeddings,
                super::ops::MAX_SEQ
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps {} must be > 0",
                self.layer_norm_eps
            ));
        }
        self.activation()?;
        Ok(())
    }
}

/// Where the architecture of a file that describes itself is read (the safetensors metadata).
const SPARQ_CONFIG: &str = "sparq.config";
/// Largest vocabulary (token or type table rows) accepted.
const MAX_VOCAB: usize = 1 << 22;
/// Widest hidden state accepted.
const MAX_WIDTH: usize = 1 << 15;
/// Widest feed-forward layer accepted.
const MAX_FFN: usize = 1 << 17;
/// Most layers accepted.
const MAX_LAYERS: usize = 1 << 10;
/// Most attention heads accepted.
const MAX_HEADS: usize = 1 << 10;
/// Most token types accepted.
const MAX_TYPES: usize = 1 << 16;
/// Shortest truncation accepted: below it every input is cut to its special tokens.
const MIN_SEQ: usize = 4;
/// Most parameters a configuration may describe (overflow-safe, before any allocation).
const MAX_PARAMETERS: usize = 1 << 36;
/// Widest MLP layer accepted.
const MAX_MLP_WIDTH: usize = 1 << 24;
/// Most MLP layers accepted.
const MAX_MLP_LAYERS: usize = 1 << 10;

/// The error of `field` = `value` of `file` out of range: an [`InputError::Config`] (as
/// every fault of a configuration) whose message names the file, the field and the range.
fn field(file: &str, field: &str, value: impl std::fmt::Display, expected: String) -> Error {
    Error::Input(InputError::Config(format!(
        "{file}: '{field}' = {value} is out of range: expected {expected}"
    )))
}

impl BertConfig {
    /// Parameters the configuration describes (embeddings, layers with their biases and
    /// norms), or `None` when the count overflows.
    pub fn parameters(&self) -> Option<usize> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let tables = self
            .vocab_size
            .checked_add(self.max_position_embeddings)?
            .checked_add(self.type_vocab_size)?
            .checked_add(2)?
            .checked_mul(h)?;
        let layer = h
            .checked_mul(h)?
            .checked_mul(4)?
            .checked_add(h.checked_mul(i)?.checked_mul(2)?)?
            .checked_add(h.checked_mul(9)?)?
            .checked_add(i)?;
        tables.checked_add(layer.checked_mul(self.num_hidden_layers)?)
    }
}

/// A multi-layer perceptron classifier: `Linear → act → … → Linear` giving logits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Widths: input features, hidden layers..., classes. Layer `i` maps `sizes[i]` to
    /// `sizes[i + 1]` with tensors `layers.{i}.weight` and `layers.{i}.bias`.
    pub sizes: Vec<usize>,
    /// Activation between layers.
    pub activation: Activation,
}

impl MlpConfig {
    /// Refuses empty or degenerate networks.
    pub fn validate(&self) -> Result<()> {
        if self.sizes.len() < 2 || self.sizes.len() > MAX_MLP_LAYERS + 1 {
            return Err(field(
                SPARQ_CONFIG,
                "sizes",
                format!("{} widths", self.sizes.len()),
                format!(
                    "2..={} widths (inputs, hidden layers, classes)",
                    MAX_MLP_LAYERS + 1
                ),
            ));
        }
        if let Some(i) = self.sizes.iter().position(|&s| s == 0 || s > MAX_MLP_WIDTH) {
            return Err(field(
                SPARQ_CONFIG,
                &format!("sizes[{i}]"),
                self.sizes[i],
                format!("1..={MAX_MLP_WIDTH}"),
            ));
        }
        // Each layer's weight is read and stored whole: refuse counts past what one fits.
        if let Some(i) = self
            .sizes
            .windows(2)
            .position(|w| w[0].checked_mul(w[1]).is_none_or(|p| p > MAX_PARAMETERS))
        {
            return Err(field(
                SPARQ_CONFIG,
                &format!("sizes[{}]", i + 1),
                self.sizes[i + 1],
                format!(
                    "at most {MAX_PARAMETERS} weights in layer {i} ({} inputs)",
                    self.sizes[i]
                ),
            ));
        }
        Ok(())
    }
}

/// A supported architecture with its parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "architecture", rename_all = "snake_case")]
pub enum Architecture {
    /// BERT-style encoder producing sentence vectors.
    Bert(BertConfig),
    /// MLP classifier producing logits.
    Mlp(MlpConfig),
    /// A Llama-family decoder (Llama, SmolLM2, Qwen2): loaded by
    /// [`LlamaDecoder`](super::llama::LlamaDecoder), not by [`super::Model`].
    Llama(super::llama::LlamaConfig),
}

impl Architecture {
    /// Parses sparq's JSON (`{"architecture": "bert" | "mlp" | "llama", ...}`).
    pub fn from_sparq_json(s: &str) -> Result<Self> {
        let a: Architecture =
            serde_json::from_str(s).map_err(|e| Error::config(format!("sparq config: {e}")))?;
        a.validate()?;
        Ok(a)
    }

    /// Parses a Hugging Face `config.json` (BERT family), plus the sentence-transformers
    /// files beside it (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        let sentence_bert = std::fs::read_to_string(dir.join("sentence_bert_config.json")).ok();
        let names = (
            path.display().to_string(),
            dir.join("sentence_bert_config.json").display().to_string(),
        );
        let mut c = match hf_config(&text, sentence_bert.as_deref(), (&names.0, &names.1))? {
            Parsed::Sparq(a) => return Ok(a),
            Parsed::Bert(c) => c,
        };
        let read = |p: &str| -> Option<serde_json::Value> {
            serde_json::from_str(&std::fs::read_to_string(dir.join(p)).ok()?).ok()
        };
        if let Some(p) = read("1_Pooling/config.json") {
            let on = |k: &str| p.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
            if on("pooling_mode_cls_token") {
                c.pooling = Pooling::Cls;
            } else if on("pooling_mode_mean_tokens") {
                c.pooling = Pooling::Mean;
            } else {
                return Err(Error::config(
                    "1_Pooling/config.json: only mean and CLS pooling are supported",
                ));
            }
        }
        if let Some(m) = read("modules.json") {
            c.normalize = m.as_array().is_some_and(|a| {
                a.iter().any(|e| {
                    e.get("type")
                        .and_then(|t| t.as_str())
                        .is_some_and(|t| t.ends_with("Normalize"))
                })
            });
        }
        let a = Architecture::Bert(c);
        a.validate()?;
        Ok(a)
    }

    /// Parses the text of a Hugging Face `config.json` (or sparq's JSON, recognised by its
    /// `architecture` key) and of the `sentence_bert_config.json` beside it, without reading
    /// files: [`from_hf_dir`](Self::from_hf_dir) less the pooling files (mean pooling, not
    /// normalised).
    pub fn from_hf_json(config: &str, sentence_bert: Option<&str>) -> Result<Self> {
        match hf_config(
            config,
            sentence_bert,
            ("config.json", "sentence_bert_config.json"),
        )? {
            Parsed::Sparq(a) => Ok(a),
            Parsed::Bert(c) => {
                let a = Architecture::Bert(c);
                a.validate()?;
                Ok(a)
            }
        }
    }

    /// sparq's JSON for this architecture.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }
}

/// A `config.json` read: sparq's own (complete) or a Hugging Face BERT's.
enum Parsed {
    Sparq(Architecture),
    Bert(BertConfig),
}

/// The architecture of `text` (a `config.json`, named `name` in messages) with the
/// truncation of `sentence_bert` (a `sentence_bert_config.json` named `seq_name`, ignored when
/// not JSON), its sizes validated.
fn hf_config(
    text: &str,
    sentence_bert: Option<&str>,
    (name, seq_name): (&str, &str),
) -> Result<Parsed> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::config(format!("{name}: {e}")))?;
    if v.get("architecture").is_some() {
        return Architecture::from_sparq_json(text).map(Parsed::Sparq);
    }
    let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
    if !matches!(model_type, "bert" | "roberta" | "xlm-roberta" | "") {
        return Err(Error::config(format!(
            "model_type '{model_type}' is not supported (BERT-style encoders only)"
        )));
    }
    if model_type != "bert" && !model_type.is_empty() {
        log::warn!("{model_type} is read as BERT; position offsets may differ");
    }
    let mut c: BertConfig =
        serde_json::from_value(v).map_err(|e| Error::config(format!("{name}: {e}")))?;
    let sentence_bert =
        sentence_bert.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    if let Some(s) = sentence_bert
        && let Some(n) = s.get("max_seq_length").filter(|n| !n.is_null())
    {
        let m = n.as_u64().and_then(|n| usize::try_from(n).ok());
        c.max_seq_length = Some(m.ok_or_else(|| {
            field(
                seq_name,
                "max_seq_length",
                n,
                "a whole number of tokens".into(),
            )
        })?);
    }
    c.validate_in(name, seq_name)?;
    Ok(Parsed::Bert(c))
}
