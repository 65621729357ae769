//! The real all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh) against the
//! embeddings of the original sentence-transformers / PyTorch model
//! (tests/fixtures/minilm.json, written by scripts/minilm_fixtures.py).

mod common;

use common::minilm::{fixture, model_dir};
use common::{all_gpus, cosine};
use sparq::formats::WeightFormat;
use sparq::model::{Batch, LoadOptions, Model};

#[test]
fn minilm_matches_pytorch() {
    let fx = fixture();
    let dir = model_dir();
    for gpu in all_gpus() {
        let mut formats = vec![
            (WeightFormat::F32, Some(0.9999)),
            (WeightFormat::F16, Some(0.999)),
        ];
        // The quantized formats are only reported (SPARQ_MINILM_ALL=1), to keep CI short.
        if std::env::var_os("SPARQ_MINILM_ALL").is_some() {
            formats.push((WeightFormat::Int8, None));
            formats.push((
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
                None,
            ));
            formats.push((
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: true,
                },
                None,
            ));
        }
        for (format, bound) in formats {
            let model =
                Model::load_with(&dir, &gpu, LoadOptions::default().format(format)).unwrap();
            if format == WeightFormat::F32 {
                let (ids, _) = model.tokenize(&fx.sentences).unwrap();
                assert_eq!(ids, fx.ids, "tokenizer differs from Hugging Face's");
            }
            // All sentences in one padded batch.
            let out = model.forward(&Batch::Text(fx.sentences.clone())).unwrap();
            let cos: Vec<f64> = (0..out.rows)
                .map(|i| cosine(out.row(i), &fx.embeddings[i]))
                .collect();
            let worst = cos.iter().cloned().fold(1.0, f64::min);
            eprintln!(
                "{} ({}) {}: worst cosine to PyTorch {worst:.7} (1 - cos = {:.1e})",
                gpu.caps.name,
                gpu.caps.backend,
                format.name(),
                1.0 - worst
            );
            for i in 0..out.rows {
                let n: f64 = out
                    .row(i)
                    .iter()
                    .map(|v| (*v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!((n - 1.0).abs() < 1e-4, "embedding {i} has norm {n}");
            }
            if let Some(b) = bound {
                assert!(
                    worst >= b,
                    "{} on {}: cosine {worst} < {b}",
                    format.name(),
                    gpu.caps.name
                );
            }
            // Alone, a sentence gives the same vector as inside the padded batch. Its few
            // token rows take the GEMV kernels, which for int8/int4 weights quantize the
            // activations to int8 as well (the batch's GEMM does not): hence the looser bound.
            let one = model.forward(&Batch::text([&fx.sentences[1]])).unwrap();
            let c = cosine(
                one.row(0),
                &out.row(1).iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            let same = if format.bits() >= 16.0 {
                0.99999
            } else {
                0.999
            };
            assert!(
                c > same,
                "{}: batch padding changes the result: cosine {c}",
                format.name()
            );
        }
    }
}
