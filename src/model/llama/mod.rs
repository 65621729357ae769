//! The Llama family of decoders (Llama 2/3, SmolLM2, Qwen2 with its QKV bias): the
//! configuration ([`LlamaConfig`]), where a checkpoint keeps its tensors ([`weights`]) and
//! the CPU reference decoder ([`reference`](mod@reference)) that the GPU decoder will be
//! tested against.
//!
//! [`crate::model::config::Architecture::Llama`] names the family in sparq's files
//! ([`pack`]); the decoder loads GGUF, Hugging Face and sparq checkpoints ([`hf`]).

pub mod calibrate;
pub mod decoder;
pub mod gguf;
pub mod hf;
pub mod pack;
pub mod reference;
pub mod source;
pub mod tokenizer_file;
pub mod weights;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub use decoder::{DecoderOptions, LlamaDecoder};
pub use hf::{CheckpointKind, HfCheckpoint, SafetensorsSource, detect};
pub use reference::{KvCache, LlamaWeights, Observer, Reference};
pub use weights::{LlamaLinear, LlamaNames, rows_to_half_split, rows_to_interleaved};

/// Largest vocabulary accepted (tokens are `u32`, embedding rows are indexed by them).
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest hidden, FFN or projection width accepted.
pub const MAX_WIDTH: usize = 1 << 17;
/// Largest number of layers accepted.
pub const MAX_LAYERS: usize = 1 << 10;
/// Largest number of attention heads accepted.
pub const MAX_HEADS: usize = 1 << 10;
/// Largest head width accepted.
pub const MAX_HEAD_DIM: usize = 1 << 10;
/// Largest context accepted.
pub const MAX_CONTEXT: usize = 1 << 21;
/// Most parameters a decoder configuration may describe.
pub const MAX_PARAMETERS: usize = 1 << 38;

/// The error of a decoder config field out of range (an [`crate::InputError::Config`], as
/// every fault of the decoder's configuration, naming the field).
fn field(name: &str, value: impl std::fmt::Display, expected: String) -> Error {
    Error::config(format!(
        "{name} = {value} is out of range: expected {expected}"
    ))
}

pub use crate::model::ops::RopeLayout;

/// The parameters of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the token embedding and of the logits).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Key/value heads per layer (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head (not always `hidden_size / num_heads`).
    pub head_dim: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Longest context (prompt and generated tokens) the model supports.
    pub max_context: usize,
    /// Whether the logits reuse the token embedding instead of a separate `lm_head`.
    pub tie_word_embeddings: bool,
    /// Whether the Q, K and V projections carry a bias (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    /// How the checkpoint's Q and K rows pair up for RoPE.
    #[serde(default)]
    pub rope_layout: RopeLayout,
}

impl LlamaConfig {
    /// Width of all query heads together.
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads.max(1)
    }

    /// Refuses configurations the decoder cannot run, with the field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m));
        for (name, v, max) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, MAX_HEADS),
            ("num_kv_heads", self.num_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("max_context", self.max_context, MAX_CONTEXT),
        ] {
            if v == 0 || v > max {
                return Err(field(name, v, format!("1..={max}")));
            }
        }
        // Overflow-safe, before anything is read or allocated: the embeddings, the output
        // head and per layer the attention and FFN weights.
        let (h, ff) = (self.hidden_size, self.intermediate_size);
        let params = (|| {
            let attn = h.checked_mul(
                self.q_width()
                    .checked_mul(2)?
                    .checked_add(self.kv_width().checked_mul(2)?)?,
            )?;
            let layer = attn.checked_add(h.checked_mul(ff)?.checked_mul(3)?)?;
            self.vocab_size
                .checked_mul(h)?
                .checked_mul(2)?
                .checked_add(layer.checked_mul(self.num_layers)?)
        })();
        if params.is_none_or(|p| p > MAX_PARAMETERS) {
            return Err(field(
                "hidden_size",
                h,
                format!(
                    "a model of at most {MAX_PARAMETERS} parameters with these layers, \
                     vocabulary and widths"
                ),
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even (RoPE rotates pairs)",
                self.head_dim
            ));
        }
        if self.q_width() > MAX_WIDTH {
            return bad(format!(
                "num_heads × head_dim = {} is over {MAX_WIDTH}",
                self.q_width()
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!("rms_norm_eps {} must be > 0", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope_theta {} must be > 0", self.rope_theta));
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json` of a `LlamaForCausalLM` or `Qwen2ForCausalLM`
    /// checkpoint (half-split RoPE, as Hugging Face stores Q and K). Settings this decoder
    /// does not implement (RoPE scaling, sliding windows, MLP bias, another activation) are
    /// refused rather than run wrongly.
    pub fn from_hf_config(json: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::config(format!("config.json: {e}")))?;
        let arch = v
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str());
        let model_type = v.get("model_type").and_then(|m| m.as_str());
        let qwen2 = match (arch, model_type) {
            (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => false,
            (Some("Qwen2ForCausalLM"), _) | (None, Some("qwen2")) => true,
            _ => {
                return Err(Error::config(format!(
                    "architecture {} (model_type {}) is not supported: LlamaForCausalLM and \
                     Qwen2ForCausalLM are",
                    arch.unwrap_or("(none)"),
                    model_type.unwrap_or("(none)")
                )));
            }
        };
        let size = |k: &str| -> Result<Option<usize>> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| Error::config(format!("config.json: {k} = {x} is not a size"))),
            }
        };
        let need = |k: &str| -> Result<usize> {
            size(k)?.ok_or_else(|| Error::config(format!("config.json: {k} is missing")))
        };
        let float = |k: &str, default: f64| -> Result<f64> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x.as_f64().ok_or_else(|| {
                    Error::config(format!("config.json: {k} = {x} is not a number"))
                }),
            }
        };
        let flag = |k: &str, default: bool| -> Result<bool> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| Error::config(format!("config.json: {k} = {x} is not a bool"))),
            }
        };
        match v.get("hidden_act") {
            None | Some(serde_json::Value::Null) => {}
            Some(a) if a.as_str() == Some("silu") => {}
            Some(a) => {
                return Err(Error::config(format!(
                    "config.json: hidden_act {a} is not supported (SwiGLU with silu is)"
                )));
            }
        }
        // Transformers 5 moves `rope_theta` and the scaling into `rope_parameters`, where an
        // absent `rope_type` means plain RoPE; in the older `rope_scaling` it is required.
        let rope_parameters = v.get("rope_parameters").filter(|p| !p.is_null());
        for (key, plain_when_absent) in [("rope_scaling", false), ("rope_parameters", true)] {
            let Some(s) = v.get(key).filter(|s| !s.is_null()) else {
                continue;
            };
            let kind = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .map(|t| t.as_str());
            let plain = match kind {
                None => plain_when_absent,
                Some(k) => k == Some("default"),
            };
            if !plain {
                return Err(Error::config(format!(
                    "config.json: {key} {s} is not supported yet (plain RoPE only)"
                )));
            }
        }
        let rope_theta = match rope_parameters.and_then(|p| p.get("rope_theta")) {
            Some(t) if v.get("rope_theta").is_none_or(|x| x.is_null()) => {
                t.as_f64().ok_or_else(|| {
                    Error::config(format!(
                        "config.json: rope_parameters.rope_theta = {t} is not a number"
                    ))
                })?
            }
            _ => float("rope_theta", 10000.0)?,
        };
        if flag("mlp_bias", false)? {
            return Err(Error::config("config.json: mlp_bias is not supported"));
        }
        if flag("use_sliding_window", false)? {
            return Err(Error::config(
                "config.json: use_sliding_window is not supported",
            ));
        }
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let head_dim = match size("head_dim")? {
            Some(d) => d,
            None if num_heads > 0 && hidden_size.is_multiple_of(num_heads) => {
                hidden_size / num_heads
            }
            None => {
                return Err(Error::config(format!(
                    "config.json: hidden_size {hidden_size} is not a multiple of \
                     num_attention_heads {num_heads} and head_dim is absent"
                )));
            }
        };
        let c = LlamaConfig {
            vocab_size: need("vocab_size")?,
            hidden_size,
            num_layers: need("num_hidden_layers")?,
            num_heads,
            num_kv_heads: size("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            intermediate_size: need("intermediate_size")?,
            rms_norm_eps: float("rms_norm_eps", 1e-6)?,
            rope_theta,
            max_context: need("max_position_embeddings")?,
            tie_word_embeddings: flag("tie_word_embeddings", false)?,
            // Qwen2 always has Q/K/V biases (its config has no switch); Llama has a switch.
            attention_bias: qwen2 || flag("attention_bias", false)?,
            rope_layout: RopeLayout::HalfSplit,
        };
        c.validate()?;
        Ok(c)
    }
}
