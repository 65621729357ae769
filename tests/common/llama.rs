//! Helpers for the decoder loading tests: tiny random Llama/Qwen2 checkpoints written as
//! Hugging Face would (config.json, safetensors in F32/F16/BF16, optionally sharded), and the
//! logit check of `tests/llama_decoder.rs`.
#![allow(dead_code)]

use half::{bf16, f16};
use rand::Rng as _;
use rand::rngs::StdRng;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sparq::model::decode::{CausalLm, Chunk, LogitRows};
use sparq::model::llama::{LlamaConfig, LlamaDecoder, LlamaNames, LlamaWeights, Reference};
use std::collections::HashMap;
use std::path::Path;

/// A Hugging Face `config.json` of a tiny model: `arch` is `LlamaForCausalLM` or
/// `Qwen2ForCausalLM` (Q/K/V biases).
pub fn config_json(arch: &str, tied: bool) -> String {
    serde_json::json!({
        "architectures": [arch],
        "model_type": if arch.starts_with("Qwen2") { "qwen2" } else { "llama" },
        "vocab_size": 97,
        "hidden_size": 44,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 10,
        "intermediate_size": 70,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "hidden_act": "silu",
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
    })
    .to_string()
}

/// Rounds `v` to what `dtype` stores.
pub fn round(v: f32, dtype: Dtype) -> f32 {
    match dtype {
        Dtype::BF16 => bf16::from_f32(v).to_f32(),
        Dtype::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Random weights of `c` (norm scales near 1), already rounded to `dtype`.
pub fn random_weights(c: &LlamaConfig, r: &mut StdRng, dtype: Dtype) -> LlamaWeights {
    LlamaNames::default()
        .tensors(c)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let norm = name.contains("norm");
            let data = (0..n)
                .map(|_| {
                    let u: f32 = r.random_range(-1.0..1.0);
                    round(if norm { 1.0 + 0.2 * u } else { 0.3 * u }, dtype)
                })
                .collect();
            (name, (shape, data))
        })
        .collect()
}

fn bytes(v: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::BF16 => v
            .iter()
            .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
            .collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect(),
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        d => panic!("no test writer for {d:?}"),
    }
}

/// A named tensor of [`LlamaWeights`]: name, (shape, values).
pub type Named<'a> = (&'a String, &'a (Vec<usize>, Vec<f32>));

/// Writes `tensors` (name → shape, values) as `dtype` to `path`.
pub fn write_safetensors(path: &Path, tensors: &[Named<'_>], dtype: Dtype) {
    let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| (n.to_string(), s.clone(), bytes(v, dtype)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Writes a Hugging Face checkpoint into `dir`: `config.json` and the weights as `dtype`, in
/// one `model.safetensors` or in `shards` files with `model.safetensors.index.json`.
pub fn write_hf(dir: &Path, config: &str, weights: &LlamaWeights, dtype: Dtype, shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let mut all: Vec<_> = weights.iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    if shards <= 1 {
        write_safetensors(&dir.join("model.safetensors"), &all, dtype);
        return;
    }
    let mut map = serde_json::Map::new();
    let per = all.len().div_ceil(shards);
    for (i, part) in all.chunks(per).enumerate() {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        write_safetensors(&dir.join(&name), part, dtype);
        for (t, _) in part {
            map.insert(t.to_string(), name.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// A fresh folder for this test process.
pub fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sparq-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Random token ids.
pub fn tokens(r: &mut StdRng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| r.random_range(0..vocab as u32)).collect()
}

/// Checks the decoder's prefill logits (every row) of `prompt` against `reference`, with the
/// tolerance of `tests/llama_decoder.rs`: f16 keys and values move a logit by up to
/// `4 · layers · 2^-11` of the largest logit of its row.
pub fn check_prefill(lm: &LlamaDecoder, reference: &Reference, prompt: &[u32], what: &str) {
    let want = reference
        .forward_all(prompt, &mut reference.new_cache())
        .unwrap();
    let seq = lm.open();
    let got = lm
        .step(&[Chunk {
            seq,
            tokens: prompt,
            logits: LogitRows::All,
        }])
        .unwrap()
        .logits;
    lm.close(seq);
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let tol = 4.0 * lm.config().num_layers as f64 * 2f64.powi(-11);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {i} width");
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            let err = (*a as f64 - b).abs();
            assert!(
                a.is_finite() && err <= tol * scale,
                "{what}: row {i} logit {j}: {a} vs {b} (error {err:.3e} > {:.3e})",
                tol * scale
            );
        }
    }
}

/// The tensors of `weights` with one left out, or one replaced.
pub fn edited(
    weights: &LlamaWeights,
    drop: Option<&str>,
    replace: Option<(&str, Vec<usize>, Vec<f32>)>,
) -> LlamaWeights {
    let mut w: HashMap<_, _> = weights.clone().into_iter().collect();
    if let Some(d) = drop {
        w.remove(d);
    }
    if let Some((n, s, v)) = replace {
        w.insert(n.to_string(), (s, v));
    }
    w.into_iter().collect()
}

/// Every adapter (as `common::all_gpus` filters them) opened with exact f32 activations for
/// integer weights (`SPARQ_Q8=0`), so that a decoder's logits can be compared with the
/// reference on the dequantized weights alone.
pub fn exact_gpus() -> Vec<sparq::Gpu> {
    let inst = sparq::gpu::instance();
    let filter = std::env::var("SPARQ_TEST_ADAPTERS").ok();
    let mut config = sparq::Config::from_env().unwrap();
    config.gemm.q8 = false;
    let gpus: Vec<sparq::Gpu> = sparq::gpu::enumerate_adapters(&inst)
        .into_iter()
        .filter(|a| {
            let info = a.get_info();
            filter.as_ref().is_none_or(|f| {
                let f = f.to_ascii_lowercase();
                info.name.to_ascii_lowercase().contains(&f)
                    || format!("{:?}", info.backend).to_ascii_lowercase() == f
            })
        })
        .filter_map(|a| sparq::Gpu::from_adapter_with(a, &inst, config.clone()).ok())
        .collect();
    assert!(!gpus.is_empty(), "no adapter to test on");
    gpus
}
