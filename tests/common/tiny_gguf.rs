//! A tiny Llama GGUF file with a working tokenizer (a byte-level vocabulary of 23 tokens and
//! the merges spelling `hello` and `Ġworld`), its weights from a fixed pseudo-random sequence:
//! what the tests of packed decoders carrying their tokenizer pack and generate from. Only
//! `sparq` is used, so that the command line's tests include it too.
#![allow(dead_code)]

use sparq::gguf::writer::Writer;
use sparq::gguf::{Array, GgmlType, Value};
use sparq::model::llama::{LlamaConfig, LlamaNames, RopeLayout};

/// The vocabulary: two control tokens, then byte-level pieces and merges.
pub const TOKENS: [&str; 23] = [
    "<|im_start|>",
    "<|im_end|>",
    "h",
    "e",
    "l",
    "o",
    "w",
    "r",
    "d",
    "Ġ",
    "!",
    "he",
    "ll",
    "hell",
    "hello",
    "Ġw",
    "or",
    "Ġwor",
    "Ġworl",
    "Ġworld",
    "Ġhello",
    "Ã",
    "©",
];

const MERGES: [&str; 10] = [
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "Ġ hello",
];

/// The model's shape.
pub fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: TOKENS.len(),
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        intermediate_size: 48,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_context: 64,
        tie_word_embeddings: false,
        attention_bias: false,
        rope_layout: RopeLayout::Interleaved,
    }
}

/// The `tokenizer.*` metadata of the file.
pub fn tokenizer_metadata() -> Vec<(&'static str, Value)> {
    let tokens: Vec<String> = TOKENS.map(String::from).to_vec();
    let types = (0..tokens.len() as i32)
        .map(|i| if i < 2 { 3 } else { 1 })
        .collect();
    vec![
        ("tokenizer.ggml.model", Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Value::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::Str(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        (
            "tokenizer.ggml.merges",
            Value::Array(Array::Str(MERGES.map(String::from).to_vec())),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::Str("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}".into()),
        ),
    ]
}

/// The file's bytes: llama.cpp's names and metadata, F32 tensors, and (when `tokenizer`) the
/// tokenizer's metadata.
pub fn gguf_bytes(tokenizer: bool) -> Vec<u8> {
    let c = config();
    let mut f = Writer::new();
    llama_header(&mut f, &c, "llama");
    if tokenizer {
        for (k, v) in tokenizer_metadata() {
            f.kv(k, v);
        }
    }
    let shapes: std::collections::HashMap<String, Vec<usize>> =
        LlamaNames::default().tensors(&c).into_iter().collect();
    // A fixed linear congruential sequence: the same file every run, no generator crate.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (g, h) in sparq::model::llama::gguf::tensor_names(&c) {
        let shape = &shapes[&h];
        let n: usize = shape.iter().product();
        let norm = h.contains("norm");
        let data: Vec<u8> = (0..n)
            .flat_map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                (if norm { 1.0 + 0.2 * u } else { 0.5 * u }).to_le_bytes()
            })
            .collect();
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        f.tensor(&g, &dims, GgmlType::F32, data);
    }
    f.to_bytes()
}

/// The architecture and hyper-parameters of `c` under llama.cpp's key names (`arch` as
/// `general.architecture`; the parameters stay under `llama.`).
pub fn llama_header(f: &mut Writer, c: &LlamaConfig, arch: &str) {
    f.kv("general.architecture", Value::Str(arch.into()));
    for (k, v) in [
        ("embedding_length", c.hidden_size),
        ("block_count", c.num_layers),
        ("attention.head_count", c.num_heads),
        ("attention.head_count_kv", c.num_kv_heads),
        ("rope.dimension_count", c.head_dim),
        ("feed_forward_length", c.intermediate_size),
        ("context_length", c.max_context),
    ] {
        f.kv(&format!("llama.{k}"), Value::U32(v as u32));
    }
    f.kv("llama.rope.freq_base", Value::F32(c.rope_theta as f32));
    f.kv(
        "llama.attention.layer_norm_rms_epsilon",
        Value::F32(c.rms_norm_eps as f32),
    );
}
