//! The MLP classifier trained by scripts/train_digits.py on scikit-learn's 8×8 digits:
//! sparq's logits and test accuracy against the script's.

mod common;

use common::all_gpus;
use sparq::formats::WeightFormat;
use sparq::model::{Batch, LoadOptions, Model};
use std::path::PathBuf;

#[test]
fn digits_mlp_matches_training_script() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("digits_mlp.json")).unwrap())
            .unwrap();
    let scale = v["x_scale"].as_f64().unwrap() as f32;
    let x: Vec<f32> = v["x"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() as f32 * scale)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels: Vec<usize> = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect();
    let logits: Vec<f64> = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let script_accuracy = v["test_accuracy"].as_f64().unwrap();
    let rows = labels.len();
    for gpu in all_gpus() {
        for format in [
            WeightFormat::F32,
            WeightFormat::F16,
            WeightFormat::Int8,
            WeightFormat::Int4 {
                group: 32,
                asymmetric: false,
            },
        ] {
            let model = Model::load_with(
                root.join("digits_mlp.safetensors"),
                &gpu,
                LoadOptions::default().format(format),
            )
            .unwrap();
            let out = model
                .forward(&Batch::Features {
                    rows,
                    cols: 64,
                    data: x.clone(),
                })
                .unwrap();
            assert_eq!((out.rows, out.cols), (rows, 10));
            let pred: Vec<usize> = (0..rows)
                .map(|i| {
                    let r = out.row(i);
                    (0..10).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap()
                })
                .collect();
            let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / rows as f64;
            eprintln!(
                "{} {}: test accuracy {acc:.4} (script {script_accuracy:.4})",
                gpu.caps.name,
                format.name()
            );
            let probs = out.probabilities.as_ref().unwrap();
            for i in 0..rows {
                let s: f32 = probs[i * 10..i * 10 + 10].iter().sum();
                assert!(
                    (s - 1.0).abs() < 1e-5,
                    "probabilities of row {i} sum to {s}"
                );
            }
            if format == WeightFormat::F32 {
                for (i, (g, w)) in out.values.iter().zip(&logits).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "logit {i}: {g} vs {w}"
                    );
                }
                assert_eq!(
                    acc, script_accuracy,
                    "f32 accuracy differs from the script's"
                );
            } else {
                assert!(
                    acc >= script_accuracy - 0.02,
                    "{}: accuracy {acc}",
                    format.name()
                );
            }
        }
    }
}

/// Several passes in flight on one device (different batch sizes, so different plans over one
/// arena, waited for out of order) give exactly what one pass at a time gives.
#[test]
fn passes_in_flight_equal_passes_one_at_a_time() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut rng = common::rng("passes_in_flight");
    let batches: Vec<Batch> = [5usize, 1, 33, 5]
        .iter()
        .map(|&rows| Batch::Features {
            rows,
            cols: 64,
            data: common::random(&mut rng, rows * 64),
        })
        .collect();
    for gpu in all_gpus() {
        let model = Model::load(root.join("digits_mlp.safetensors"), &gpu).unwrap();
        let alone: Vec<_> = batches.iter().map(|b| model.forward(b).unwrap()).collect();
        let pending: Vec<_> = batches.iter().map(|b| model.submit(b).unwrap()).collect();
        let mut overlapped: Vec<_> = pending
            .into_iter()
            .rev()
            .map(|p| model.wait(p).unwrap())
            .collect();
        overlapped.reverse();
        for (i, (a, b)) in alone.iter().zip(&overlapped).enumerate() {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!((a.rows, a.cols), (b.rows, b.cols), "batch {i}");
            assert_eq!(
                bits(&a.values),
                bits(&b.values),
                "{}: batch {i}",
                gpu.caps.name
            );
            assert_eq!(a.gpu_seconds.is_some(), gpu.caps.timestamps);
        }
    }
}

/// Global magnitude pruning through `compress::pack_model`: one threshold over both layers,
/// exactly the requested share of all weights zeroed (but not of each layer), stored as CSR,
/// and the packed file loads with those formats.
#[test]
fn global_pruning_packs_a_classifier() {
    use sparq::model::compress::{Compression, SparseStorage, pack_model};
    use sparq::model::config::Architecture;
    use sparq::model::loader::{self, WeightFile};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let file = WeightFile::open(&root.join("digits_mlp.safetensors")).unwrap();
    let arch = Architecture::from_sparq_json(file.metadata(loader::CONFIG_KEY).unwrap()).unwrap();
    let c = Compression {
        format: WeightFormat::F32,
        sparse: Some(SparseStorage::parse("global:0.6").unwrap()),
    };
    let (floats, packed, report) = pack_model(&file, &arch, &c, None).unwrap();
    assert_eq!(report.formats, ["csr-f32"]);
    assert_eq!(report.kept, 0);
    let total = 64 * 64 + 10 * 64;
    assert_eq!(report.len, total);
    assert_eq!(report.zeros, (0.6 * total as f64).round() as usize);
    let per_layer: Vec<f64> = packed
        .iter()
        .map(|(_, w)| {
            let d = w.dequantize();
            d.iter().filter(|v| **v == 0.0).count() as f64 / d.len() as f64
        })
        .collect();
    assert!(
        per_layer.iter().any(|s| (s - 0.6).abs() > 0.01),
        "one threshold should not zero 60 % of every layer: {per_layer:?}"
    );
    let dst = std::env::temp_dir().join(format!("sparq-global-{}.safetensors", std::process::id()));
    let meta = std::collections::HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    loader::save(&dst, &floats, &packed, meta).unwrap();
    let gpu = &all_gpus()[0];
    let model = Model::load(&dst, gpu).unwrap();
    assert_eq!(model.layer_formats(), ["csr-f32"]);
    let _ = std::fs::remove_file(&dst);
}
