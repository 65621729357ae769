//! A Llama-family model from a GGUF file (llama.cpp's layout): the configuration from the
//! `llama.*` metadata, the tensors under their Hugging Face names ([`super::LlamaNames`]), and
//! the GPT-2 byte-level BPE tokenizer from the `tokenizer.ggml.*` metadata.
//!
//! llama.cpp's converter permutes the rows of Q and K for its adjacent-pair RoPE; the tensors
//! are kept as stored and the configuration says [`RopeLayout::Interleaved`], so the
//! reference and the GPU runtime rotate pairs the way the weights expect.

use super::reference::LlamaWeights;
use super::{LlamaConfig, LlamaLinear, LlamaNames, RopeLayout};
use crate::error::{Error, Result};
use crate::gguf::Gguf;

impl LlamaConfig {
    /// The configuration of a GGUF file whose `general.architecture` is `llama`.
    pub fn from_gguf(file: &Gguf) -> Result<Self> {
        let arch = file.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::config(format!(
                "general.architecture is '{arch}', sparq reads 'llama' GGUF files"
            )));
        }
        let key = |k: &str| format!("llama.{k}");
        // An absent optional key takes its default; one present with a wrong type is an error.
        let present = |k: &str| file.get(&key(k)).is_some();
        let opt_uint = |k: &str| -> Result<Option<usize>> {
            present(k)
                .then(|| file.get_uint(&key(k)).map(|v| v as usize))
                .transpose()
        };
        let uint = |k: &str| -> Result<usize> { Ok(file.get_uint(&key(k))? as usize) };
        let float = |k: &str, default: f64| -> Result<f64> {
            match present(k) {
                true => Ok(file.get_f32(&key(k))? as f64),
                false => Ok(default),
            }
        };
        let hidden = uint("embedding_length")?;
        let heads = uint("attention.head_count")?;
        let head_dim = opt_uint("rope.dimension_count")?.unwrap_or(hidden / heads.max(1));
        let vocab = match opt_uint("vocab_size")? {
            Some(v) => v,
            None => file.tensor("token_embd.weight")?.shape()[0],
        };
        let c = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            num_layers: uint("block_count")?,
            num_heads: heads,
            num_kv_heads: opt_uint("attention.head_count_kv")?.unwrap_or(heads),
            head_dim,
            intermediate_size: uint("feed_forward_length")?,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            rope_theta: float("rope.freq_base", 1e4)?,
            max_context: uint("context_length")?,
            tie_word_embeddings: file.tensor("output.weight").is_err(),
            attention_bias: file.tensor("blk.0.attn_q.bias").is_ok(),
            rope_layout: RopeLayout::Interleaved,
        };
        c.validate()?;
        Ok(c)
    }
}

/// llama.cpp's name of a linear layer's tensors in block `l` (`blk.{l}.attn_q`, ...).
pub(crate) fn gguf_linear(l: usize, site: LlamaLinear) -> String {
    let part = match site {
        LlamaLinear::Q => "attn_q",
        LlamaLinear::K => "attn_k",
        LlamaLinear::V => "attn_v",
        LlamaLinear::O => "attn_output",
        LlamaLinear::Gate => "ffn_gate",
        LlamaLinear::Up => "ffn_up",
        LlamaLinear::Down => "ffn_down",
    };
    format!("blk.{l}.{part}")
}

/// Every tensor the model of `c` needs, as (GGUF name, Hugging Face name).
pub fn tensor_names(c: &LlamaConfig) -> Vec<(String, String)> {
    let hf = LlamaNames::default();
    let mut out = vec![("token_embd.weight".to_string(), hf.embedding())];
    for l in 0..c.num_layers {
        out.push((format!("blk.{l}.attn_norm.weight"), hf.norm(l, 0)));
        out.push((format!("blk.{l}.ffn_norm.weight"), hf.norm(l, 1)));
        for site in LlamaLinear::ALL {
            let (g, h) = (gguf_linear(l, site), hf.linear(l, site));
            out.push((format!("{g}.weight"), h.weight()));
            if site.has_bias(c) {
                out.push((format!("{g}.bias"), h.bias()));
            }
        }
    }
    out.push(("output_norm.weight".into(), hf.final_norm()));
    if !c.tie_word_embeddings {
        out.push(("output.weight".into(), hf.lm_head()));
    }
    out
}

/// The tensors of `file` dequantized to f32 under their Hugging Face names, for the host
/// reference ([`super::reference::Reference`]).
pub fn host_weights(file: &Gguf, c: &LlamaConfig) -> Result<LlamaWeights> {
    tensor_names(c)
        .into_iter()
        .map(|(g, h)| {
            let shape = file.tensor(&g)?.shape();
            Ok((h, (shape, file.dequantize(&g)?)))
        })
        .collect()
}

/// The GPT-2 byte-level BPE tokenizer of a GGUF file (`tokenizer.ggml.model = gpt2`): the
/// vocabulary, merges and control tokens of its metadata, with the pre-tokenizer its
/// `tokenizer.ggml.pre` names (`smollm`, `gpt2` and the like: digits one by one for `smollm`,
/// then GPT-2's byte-level split).
pub fn tokenizer(file: &Gguf) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence};
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::config(format!(
            "tokenizer.ggml.model is '{model}'; sparq reads byte-level BPE ('gpt2') tokenizers"
        )));
    }
    let tokens = file.get_array_str("tokenizer.ggml.tokens")?;
    let merges = file.get_array_str("tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    if vocab.len() != tokens.len() {
        return Err(Error::config("tokenizer.ggml.tokens repeats a token"));
    }
    let merges = merges
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_string(), b.to_string())),
            None => Err(Error::config(format!(
                "tokenizer merge '{m}' is not two tokens"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::config(format!("tokenizer: {e}")))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = match file.get("tokenizer.ggml.pre") {
        Some(_) => file.get_str("tokenizer.ggml.pre")?,
        None => "gpt2",
    };
    if pre == "smollm" {
        tok.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level.into(),
        ])));
    } else {
        tok.with_pre_tokenizer(Some(byte_level));
    }
    tok.with_decoder(Some(byte_level));
    // Control tokens (type 3: `<|im_start|>`, `<|endoftext|>`, ...) are matched whole.
    if file.get("tokenizer.ggml.token_type").is_some() {
        let types = file.get_array_i32("tokenizer.ggml.token_type")?;
        let special: Vec<tokenizers::AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, ty)| **ty == 3)
            .map(|(t, _)| tokenizers::AddedToken::from(t.clone(), true))
            .collect();
        tok.add_special_tokens(special)
            .map_err(|e| Error::config(format!("tokenizer special tokens: {e}")))?;
    }
    Ok(tok)
}
