//! A Llama-family model from a GGUF file (llama.cpp's layout): the configuration from the
//! `llama.*` metadata, the tensors under their Hugging Face names ([`super::LlamaNames`]), and
//! the GPT-2 byte-level BPE tokenizer from the `tokenizer.ggml.*` metadata.
//!
//! llama.cpp's converter permutes the rows of Q and K for its adjacent-pair RoPE; the tensors
//! are kept as stored and the configuration says [`RopeLayout::Interleaved`], so the
//! reference and the GPU runtime rotate pairs the way the weights expect.

use super::reference::LlamaWeights;
use super::{LlamaConfig, LlamaLinear, LlamaNames, RopeLayout};
use crate::error::{Error, Result, TokenizerError};
use crate::gguf::{Array, Gguf, Value};
use crate::model::text::{TextCodec, TextCodecParts};

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

/// The `tokenizer.ggml.*` metadata a tokenizer is built from, read with typed errors.
struct Meta<'a> {
    file: &'a Gguf,
}

impl<'a> Meta<'a> {
    fn missing(key: &str) -> TokenizerError {
        TokenizerError::Missing { key: key.into() }
    }

    fn wrong(key: &str, v: &Value, expected: &str) -> TokenizerError {
        TokenizerError::WrongType {
            key: key.into(),
            found: v.type_name(),
            expected: expected.into(),
        }
    }

    fn str(&self, key: &str) -> std::result::Result<Option<&'a str>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(Self::wrong(key, v, "str")),
        }
    }

    fn strs(&self, key: &str) -> std::result::Result<&'a [String], TokenizerError> {
        match self.file.get(key) {
            None => Err(Self::missing(key)),
            Some(Value::Array(Array::Str(s))) => Ok(s),
            Some(v) => Err(Self::wrong(key, v, "array of str")),
        }
    }

    fn token_types(&self, key: &str) -> std::result::Result<Option<Vec<i64>>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::I32(t))) => Ok(Some(t.iter().map(|&x| x.into()).collect())),
            Some(Value::Array(Array::U32(t))) => Ok(Some(t.iter().map(|&x| x.into()).collect())),
            Some(v) => Err(Self::wrong(key, v, "array of i32")),
        }
    }

    fn id(&self, key: &str, vocab: usize) -> std::result::Result<Option<u32>, TokenizerError> {
        let Some(v) = self.file.get(key) else {
            return Ok(None);
        };
        let id = v
            .as_uint()
            .ok_or_else(|| Self::wrong(key, v, "a non-negative integer"))?;
        match id < vocab as u64 {
            true => Ok(Some(id as u32)),
            false => Err(TokenizerError::BadTokenId {
                what: key.into(),
                id,
                vocab,
            }),
        }
    }

    fn flag(&self, key: &str) -> std::result::Result<Option<bool>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::wrong(key, v, "bool")),
        }
    }
}

/// llama.cpp's token type of a control token (`<|im_start|>`): matched whole in text only when
/// special tokens are parsed, written out as its own text.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// llama.cpp's token type of a user-defined token: matched whole in text always.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's split of text into words (llama.cpp's `gpt2` pre-tokenizer). llama.cpp writes it
/// without GPT-2's final `|\s+`: the whitespace that alternative would take is left between
/// two matches, and llama.cpp (like an isolating split) keeps such a gap as a piece of its own.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The regex splits llama.cpp applies, in order, for the pre-tokenizer `pre`
/// (`tokenizer.ggml.pre`; src/llama-vocab.cpp, `llm_tokenizer_bpe`); `None` for one sparq does
/// not know.
fn pre_splits(pre: Option<&str>) -> Option<Vec<&'static str>> {
    Some(match pre {
        Some(
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b"
            | "mellum2",
        ) => vec![r"\p{N}", GPT2_SPLIT],
        Some("gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling") => {
            vec![GPT2_SPLIT]
        }
        // llama.cpp's fallback for a file that names no pre-tokenizer.
        None | Some("default") => vec![
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_SPLIT,
            r"\p{N}+",
            "[0-9][0-9][0-9]",
        ],
        Some(_) => return None,
    })
}

/// The GPT-2 byte-level BPE tokenizer of a GGUF file (`tokenizer.ggml.model = gpt2`): the
/// vocabulary, merges and control tokens of its metadata, with the regex splits llama.cpp uses
/// for the pre-tokenizer `tokenizer.ggml.pre` names (`smollm`: each digit alone, then GPT-2's
/// split), then the byte-level mapping. Missing, mistyped or inconsistent metadata is a
/// [`TokenizerError`].
pub fn tokenizer(file: &Gguf) -> Result<tokenizers::Tokenizer> {
    Ok(build(file)?.0)
}

/// The tokenizer and the indices of its control tokens.
fn build(file: &Gguf) -> Result<(tokenizers::Tokenizer, Vec<i64>)> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    let meta = Meta { file };
    let model = meta
        .str("tokenizer.ggml.model")?
        .ok_or_else(|| Meta::missing("tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(TokenizerError::Unsupported {
            key: "tokenizer.ggml.model".into(),
            value: model.into(),
            supported: "byte-level BPE, 'gpt2'".into(),
        }
        .into());
    }
    let pre = meta.str("tokenizer.ggml.pre")?;
    let splits = pre_splits(pre).ok_or_else(|| TokenizerError::Unsupported {
        key: "tokenizer.ggml.pre".into(),
        value: pre.unwrap_or_default().into(),
        supported: "smollm, gpt2 and their aliases".into(),
    })?;
    let tokens = meta.strs("tokenizer.ggml.tokens")?;
    let types = meta
        .token_types("tokenizer.ggml.token_type")?
        .unwrap_or_else(|| vec![1; tokens.len()]);
    if types.len() != tokens.len() {
        return Err(TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.token_type".into(),
            len: types.len(),
            tokens: tokens.len(),
        }
        .into());
    }
    let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), id as u32).is_some() {
            return Err(TokenizerError::DuplicateToken {
                id,
                token: t.clone(),
            }
            .into());
        }
    }
    let merges = meta.strs("tokenizer.ggml.merges")?;
    let merges = merges
        .iter()
        .map(|m| {
            let bad = |reason: String| TokenizerError::BadMerge {
                merge: m.clone(),
                reason,
            };
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| bad("not two tokens separated by a space".into()))?;
            for part in [a, b, &format!("{a}{b}")] {
                if !vocab.contains_key(part) {
                    return Err(bad(format!("'{part}' is not in the vocabulary")));
                }
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::invariant(format!("BPE of checked vocabulary and merges: {e}")))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let mut pre_tokenizers = Vec::new();
    for pattern in splits {
        let split = Split::new(
            SplitPattern::Regex(pattern.into()),
            tokenizers::SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::invariant(format!("pre-tokenizer regex {pattern}: {e}")))?;
        pre_tokenizers.push(split.into());
    }
    pre_tokenizers.push(ByteLevel::new(false, false, false).into());
    tok.with_pre_tokenizer(Some(Sequence::new(pre_tokenizers)));
    tok.with_decoder(Some(ByteLevel::new(false, false, false)));
    // Control tokens are special (set aside when special tokens are not parsed);
    // user-defined tokens are matched whole always, as llama.cpp matches them.
    let added = |ty: i64| -> Vec<tokenizers::AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == ty)
            .map(|(t, _)| tokenizers::AddedToken::from(t.clone(), ty == TOKEN_TYPE_CONTROL))
            .collect()
    };
    let added_error = |e: tokenizers::Error| Error::invariant(format!("added tokens: {e}"));
    tok.add_special_tokens(added(TOKEN_TYPE_CONTROL))
        .map_err(added_error)?;
    tok.add_tokens(added(TOKEN_TYPE_USER_DEFINED))
        .map_err(added_error)?;
    Ok((tok, types))
}

/// GPT-2's byte-level alphabet undone: the character each byte was written as, inverted.
fn byte_of_char() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| match printable(b) {
            true => (char::from(b), b),
            false => {
                next += 1;
                (char::from_u32(next - 1).unwrap_or('\0'), b)
            }
        })
        .collect()
}

/// The [`TextCodec`] of a GGUF file: the [`tokenizer`], BOS/EOS and their `add_*` flags, the
/// end-of-generation ids llama.cpp stops at (EOS and the end-of-turn tokens it knows by name,
/// `<|im_end|>`, `<|endoftext|>`, ...) and the chat template `tokenizer.chat_template`.
pub fn text_codec(file: &Gguf) -> Result<TextCodec> {
    let (tokenizer, types) = build(file)?;
    let meta = Meta { file };
    let tokens = meta.strs("tokenizer.ggml.tokens")?;
    let vocab = tokens.len();
    let bytes = byte_of_char();
    let pieces = tokens
        .iter()
        .zip(&types)
        .map(|(t, &ty)| match ty {
            TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED => t.as_bytes().to_vec(),
            // A character outside the alphabet stands for itself, as transformers decodes it.
            _ => t
                .chars()
                .flat_map(|c| match bytes.get(&c) {
                    Some(&b) => vec![b],
                    None => c.to_string().into_bytes(),
                })
                .collect(),
        })
        .collect();
    let bos = meta.id("tokenizer.ggml.bos_token_id", vocab)?;
    let eos = meta.id("tokenizer.ggml.eos_token_id", vocab)?;
    let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
    let named = END_OF_TURN
        .iter()
        .filter_map(|name| tokens.iter().position(|t| t == name).map(|id| id as u32));
    let mut ids: Vec<u32> = named.collect();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        ids.extend(meta.id(key, vocab)?);
    }
    for id in ids {
        if !end_of_generation.contains(&id) {
            end_of_generation.push(id);
        }
    }
    let chat_template = meta.str("tokenizer.chat_template")?.map(str::to_string);
    let control = (0..vocab as u32)
        .filter(|&i| types[i as usize] == TOKEN_TYPE_CONTROL)
        .collect();
    TextCodec::new(TextCodecParts {
        tokenizer,
        pieces,
        bos,
        eos,
        end_of_generation,
        control,
        // llama.cpp's defaults for a BPE vocabulary when the file does not say.
        add_bos: meta.flag("tokenizer.ggml.add_bos_token")?.unwrap_or(false),
        add_eos: meta.flag("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        chat_template,
    })
}

/// Tokens llama.cpp treats as ending generation by their text (src/llama-vocab.cpp).
const END_OF_TURN: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];
