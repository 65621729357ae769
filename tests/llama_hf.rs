//! Hugging Face checkpoints on the GPU decoder (`LlamaDecoder::from_hf`, `open`): tiny random
//! Llama (untied, BF16, also sharded) and Qwen2 (Q/K/V biases, tied, F16) checkpoints written
//! here, loaded on every adapter, a prefill's logits against the f64 reference on the same
//! (rounded) values; and the typed errors of bad checkpoints.
//!
//! Without a format the decoder keeps the file's values exactly (BF16 and F32 as f32, F16 as
//! f16), so the only difference from the reference is the decoder's own arithmetic: the
//! tolerance of `tests/llama_decoder.rs`.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::{all_gpus, rng};
use llama::{check_prefill, config_json, edited, random_weights, tmp, tokens, write_hf};
use safetensors::Dtype;
use sparq::model::llama::{
    CheckpointKind, DecoderOptions, LlamaConfig, LlamaDecoder, LlamaNames, Reference, detect,
};
use sparq::{Error, InputError};

fn options() -> DecoderOptions {
    DecoderOptions {
        kv_tokens: Some(128),
        ..DecoderOptions::default()
    }
}

#[test]
fn hf_checkpoints_match_the_reference_on_every_adapter() {
    let mut r = rng("llama hf");
    for (arch, tied, dtype, shards) in [
        ("LlamaForCausalLM", false, Dtype::BF16, 1),
        ("LlamaForCausalLM", false, Dtype::BF16, 3),
        ("Qwen2ForCausalLM", true, Dtype::F16, 1),
    ] {
        let json = config_json(arch, tied);
        let config = LlamaConfig::from_hf_config(&json).unwrap();
        assert_eq!(config.attention_bias, arch.starts_with("Qwen2"));
        let weights = random_weights(&config, &mut r, dtype);
        let dir = tmp(&format!("hf-{arch}-{shards}"));
        write_hf(&dir, &json, &weights, dtype, shards);
        assert_eq!(detect(&dir).unwrap(), CheckpointKind::HuggingFace);
        let reference = Reference::new(config.clone(), weights).unwrap();
        let prompt = tokens(&mut r, 23, config.vocab_size);
        for gpu in all_gpus() {
            let what = format!("{arch} {dtype:?} in {shards} shard(s) on {}", gpu.caps.name);
            let lm = LlamaDecoder::open(&dir, &gpu, options()).unwrap();
            assert_eq!(lm.config(), &config, "{what}");
            let want = if dtype == Dtype::F16 { "f16" } else { "f32" };
            assert!(
                lm.formats().iter().all(|f| f == want),
                "{what}: {:?}",
                lm.formats()
            );
            check_prefill(&lm, &reference, &prompt, &what);
        }
        // A single .safetensors file with config.json beside it loads the same.
        if shards == 1 {
            let gpu = &all_gpus()[0];
            let lm = LlamaDecoder::from_hf(dir.join("model.safetensors"), gpu, options()).unwrap();
            check_prefill(&lm, &reference, &prompt, &format!("{arch} by file"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn load_error(dir: &std::path::Path) -> Error {
    let gpu = &all_gpus()[0];
    match LlamaDecoder::from_hf(dir, gpu, options()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn bad_hf_checkpoints_give_typed_errors() {
    let mut r = rng("llama hf errors");
    let json = config_json("LlamaForCausalLM", false);
    let config = LlamaConfig::from_hf_config(&json).unwrap();
    let weights = random_weights(&config, &mut r, Dtype::F32);
    let names = LlamaNames::default();
    let dir = tmp("hf-errors");

    let missing = names.lm_head();
    write_hf(
        &dir,
        &json,
        &edited(&weights, Some(&missing), None),
        Dtype::F32,
        1,
    );
    match load_error(&dir) {
        Error::Input(InputError::MissingTensor { tensor, .. }) => assert_eq!(tensor, missing),
        e => panic!("missing lm_head: {e}"),
    }

    let k = names
        .linear(1, sparq::model::llama::LlamaLinear::K)
        .weight();
    let wrong = (k.as_str(), vec![21, 44], vec![0.1; 21 * 44]);
    write_hf(
        &dir,
        &json,
        &edited(&weights, None, Some(wrong)),
        Dtype::F32,
        1,
    );
    match load_error(&dir) {
        Error::Input(InputError::BadTensor { tensor, .. }) => assert_eq!(tensor, k),
        e => panic!("wrong shape: {e}"),
    }

    let norm = names.final_norm();
    let mut all: Vec<_> = weights.iter().filter(|(n, _)| **n != norm).collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = all
        .iter()
        .map(|(n, (s, v))| {
            (
                n.to_string(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let ints = vec![0u8; 4 * 44];
    for (n, s, b) in &blobs {
        views.push((
            n.clone(),
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
        ));
    }
    views.push((
        norm.clone(),
        safetensors::tensor::TensorView::new(Dtype::I32, vec![44], &ints).unwrap(),
    ));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    match load_error(&dir) {
        Error::Input(InputError::BadTensor { tensor, found, .. }) => {
            assert_eq!(tensor, norm);
            assert!(found.contains("I32"), "{found}");
        }
        e => panic!("I32 tensor: {e}"),
    }

    write_hf(&dir, &json, &weights, Dtype::F32, 1);
    for bad in [
        json.replace("LlamaForCausalLM", "GPT2LMHeadModel")
            .replace("\"llama\"", "\"gpt2\""),
        json.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":0"),
        json.replace("\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\""),
        "{not json".to_string(),
    ] {
        std::fs::write(dir.join("config.json"), &bad).unwrap();
        assert!(
            matches!(load_error(&dir), Error::Input(InputError::Config(_))),
            "config {bad}"
        );
    }
    std::fs::write(dir.join("config.json"), &json).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(
        matches!(load_error(&dir), Error::Input(InputError::Config(_))),
        "no weights"
    );
    // An index naming a shard outside the folder is refused before any file is opened.
    let index = serde_json::json!({"weight_map": {"model.norm.weight": "../x.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert!(
        matches!(load_error(&dir), Error::Input(InputError::Config(_))),
        "bad index"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
