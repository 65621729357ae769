//! A small random BERT encoder for the model tests: its config, tensors with Hugging Face
//! names, a self-describing file of them, and ragged token batches.

use super::random;
use rand::Rng;
use rand::rngs::StdRng;
use sparq::model::config::{Architecture, BertConfig, Pooling};
use sparq::model::loader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A small encoder: 2 layers, 24 wide, 3 heads, FFN 40, 40 positions.
pub fn config() -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 40,
        hidden_act: "gelu".into(),
        max_position_embeddings: 40,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pooling: Pooling::Mean,
        normalize: true,
        max_seq_length: None,
    }
}

/// Random BERT tensors with Hugging Face names (`prefix` + name).
pub fn random_bert(
    r: &mut StdRng,
    c: &BertConfig,
    prefix: &str,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut t = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v = random(r, n).iter().map(|x| x * scale + offset).collect();
        t.push((format!("{prefix}{name}"), shape, v));
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        vec![c.vocab_size, h],
        1.0,
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        vec![c.max_position_embeddings, h],
        0.5,
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        vec![c.type_vocab_size, h],
        0.5,
        0.0,
    );
    add("embeddings.LayerNorm.weight".into(), vec![h], 0.2, 1.0);
    add("embeddings.LayerNorm.bias".into(), vec![h], 0.1, 0.0);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        for part in ["query", "key", "value"] {
            add(
                format!("{p}attention.self.{part}.weight"),
                vec![h, h],
                0.4,
                0.0,
            );
            add(format!("{p}attention.self.{part}.bias"), vec![h], 0.1, 0.0);
        }
        add(
            format!("{p}attention.output.dense.weight"),
            vec![h, h],
            0.3,
            0.0,
        );
        add(format!("{p}attention.output.dense.bias"), vec![h], 0.1, 0.0);
        add(
            format!("{p}attention.output.LayerNorm.weight"),
            vec![h],
            0.2,
            1.0,
        );
        add(
            format!("{p}attention.output.LayerNorm.bias"),
            vec![h],
            0.1,
            0.0,
        );
        add(
            format!("{p}intermediate.dense.weight"),
            vec![i, h],
            0.3,
            0.0,
        );
        add(format!("{p}intermediate.dense.bias"), vec![i], 0.1, 0.0);
        add(format!("{p}output.dense.weight"), vec![h, i], 0.2, 0.0);
        add(format!("{p}output.dense.bias"), vec![h], 0.1, 0.0);
        add(format!("{p}output.LayerNorm.weight"), vec![h], 0.2, 1.0);
        add(format!("{p}output.LayerNorm.bias"), vec![h], 0.1, 0.0);
    }
    t
}

/// A fresh folder for this test process.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparq-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a self-describing model file (architecture in the metadata).
pub fn write_model(path: &Path, c: &BertConfig, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let meta = HashMap::from([(
        loader::CONFIG_KEY.to_string(),
        Architecture::Bert(c.clone()).to_json(),
    )]);
    loader::save(path, tensors, &[], meta).unwrap();
}

/// Random token ids and types of the given lengths.
pub fn ragged(r: &mut StdRng, c: &BertConfig, lens: &[usize]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    lens.iter()
        .map(|&n| {
            let ids = (0..n)
                .map(|_| r.random_range(0..c.vocab_size as u32))
                .collect();
            let types = (0..n)
                .map(|_| r.random_range(0..c.type_vocab_size as u32))
                .collect();
            (ids, types)
        })
        .unzip()
}

/// Writes a word-level `tokenizer.json` for `c`: `[UNK]` is id 0 and `w{i}` id `(i + shift)
/// % vocab` (lower-cased, split at white space), so two shifts tokenise alike texts apart.
pub fn write_tokenizer(path: &Path, c: &BertConfig, shift: usize) {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for i in 1..c.vocab_size {
        let id = 1 + (i - 1 + shift) % (c.vocab_size - 1);
        vocab.insert(format!("w{i}"), id.into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(path, json.to_string()).unwrap();
}
