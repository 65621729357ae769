//! The BERT encoder end to end on a small random model against the f64 CPU reference, in
//! every weight format, with ragged batches; the one-submit / plan-cache / arena machinery;
//! packed (compressed) model files.

mod common;

use common::bert::{config, ragged, random_bert, tmp, write_model};
use common::{all_gpus, cosine, rng};
use sparq::formats::WeightFormat;
use sparq::model::bert;
use sparq::model::config::Architecture;
use sparq::model::loader::{self, WeightFile};
use sparq::model::{Batch, LoadOptions, Model, reference};
use std::collections::HashMap;

fn max_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn encoder_matches_cpu_reference_in_every_format() {
    let mut r = rng("bert");
    let c = config();
    let dir = tmp("bert");
    let path = dir.join("tiny.safetensors");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    let file = WeightFile::open(&path).unwrap();
    // Lengths: one token, a bucket edge, ragged, the longest position.
    let (ids, types) = ragged(&mut r, &c, &[1, 8, 5, 13, 40]);
    for gpu in all_gpus() {
        for format in [
            WeightFormat::F32,
            WeightFormat::F16,
            WeightFormat::Int8,
            WeightFormat::Int4 {
                group: 32,
                asymmetric: true,
            },
        ] {
            let model =
                Model::load_with(&path, &gpu, LoadOptions::default().format(format)).unwrap();
            let host = bert::host_weights(&file, &c, format).unwrap();
            let out = model
                .forward(&Batch::Tokens {
                    ids: ids.clone(),
                    types: Some(types.clone()),
                })
                .unwrap();
            assert_eq!((out.rows, out.cols), (ids.len(), c.hidden_size));
            for (s, (i, t)) in ids.iter().zip(&types).enumerate() {
                let want = reference::bert(&c, &host, i, t);
                let got = out.row(s);
                let err = max_error(got, &want);
                assert!(
                    err < 2e-5,
                    "{} on {}: sequence {s} (len {}): max error {err:.2e}, cosine {:.8}",
                    format.name(),
                    gpu.caps.name,
                    i.len(),
                    cosine(got, &want)
                );
            }
        }
    }
}

#[test]
fn one_submit_per_forward_and_plans_reused() {
    let mut r = rng("bert-exec");
    let c = config();
    let dir = tmp("exec");
    let path = dir.join("tiny.safetensors");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    for gpu in all_gpus() {
        let model = Model::load(&path, &gpu).unwrap();
        let (ids, _) = ragged(&mut r, &c, &[9, 3]);
        let first = model
            .forward(&Batch::Tokens {
                ids: ids.clone(),
                types: None,
            })
            .unwrap();
        let s1 = model.stats();
        let pipelines = gpu.pipelines_compiled();
        assert_eq!((s1.forwards, s1.submits, s1.plans_built), (1, 1, 1));
        // embed, LN, 8 per layer, pool: every layer in one pass.
        assert!(s1.last_dispatches >= 3 + 8 * c.num_hidden_layers, "{s1:?}");
        // Same batch size and bucket (lengths 9..16 pad to 16): the plan is reused.
        let (ids2, _) = ragged(&mut r, &c, &[16, 12]);
        model
            .forward(&Batch::Tokens {
                ids: ids2,
                types: None,
            })
            .unwrap();
        let again = model
            .forward(&Batch::Tokens {
                ids: ids.clone(),
                types: None,
            })
            .unwrap();
        let s2 = model.stats();
        assert_eq!((s2.forwards, s2.submits, s2.plans_built), (3, 3, 1));
        assert_eq!(
            gpu.pipelines_compiled(),
            pipelines,
            "no pipeline compiled after the first pass"
        );
        assert_eq!(
            first.values, again.values,
            "replayed plan gives the same result"
        );
        // A larger batch grows the arena and builds a plan; a smaller one after it reuses
        // the arena without growing it.
        let (big, _) = ragged(&mut r, &c, &[30, 2, 7, 19]);
        model
            .forward(&Batch::Tokens {
                ids: big,
                types: None,
            })
            .unwrap();
        let bytes = model.stats().arena_bytes;
        let (small, _) = ragged(&mut r, &c, &[4]);
        model
            .forward(&Batch::Tokens {
                ids: small,
                types: None,
            })
            .unwrap();
        let s3 = model.stats();
        assert_eq!(s3.plans_built, 3);
        assert_eq!(s3.arena_bytes, bytes, "smaller batch reuses the arena");
        assert_eq!(s3.submits, s3.forwards);
    }
}

#[test]
fn packed_model_file_roundtrip() {
    let mut r = rng("bert-pack");
    let c = config();
    let dir = tmp("pack");
    let src = dir.join("float.safetensors");
    // A Hugging Face style checkpoint: `bert.` prefix, config in config.json.
    let tensors = random_bert(&mut r, &c, "bert.");
    loader::save(&src, &tensors, &[], HashMap::new()).unwrap();
    let mut hf = serde_json::to_value(&c).unwrap();
    hf["model_type"] = "bert".into();
    std::fs::write(dir.join("config.json"), hf.to_string()).unwrap();
    let format = WeightFormat::Int4 {
        group: 32,
        asymmetric: false,
    };
    let (floats, packed) = bert::pack(
        &WeightFile::open(&src).unwrap(),
        &c,
        &mut loader::quantizer(format),
    )
    .unwrap();
    let dst = dir.join("packed.safetensors");
    let meta = HashMap::from([(
        loader::CONFIG_KEY.to_string(),
        Architecture::Bert(c.clone()).to_json(),
    )]);
    loader::save(&dst, &floats, &packed, meta).unwrap();
    // Every linear weight is stored packed, and the file is smaller than the float one.
    let pf = WeightFile::open(&dst).unwrap();
    assert!(pf.is_packed("bert.encoder.layer.1.attention.self.qkv.weight"));
    assert!(pf.is_packed("bert.encoder.layer.0.output.dense.weight"));
    assert!(std::fs::metadata(&dst).unwrap().len() < std::fs::metadata(&src).unwrap().len());
    let (ids, types) = ragged(&mut r, &c, &[6, 11]);
    let batch = Batch::Tokens {
        ids,
        types: Some(types),
    };
    for gpu in all_gpus() {
        let a = Model::load_with(&src, &gpu, LoadOptions::default().format(format))
            .unwrap()
            .forward(&batch)
            .unwrap();
        // The packed file ignores the requested format: its weights are used as stored.
        let b = Model::load_with(&dst, &gpu, LoadOptions::default().format(WeightFormat::F32))
            .unwrap()
            .forward(&batch)
            .unwrap();
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!((x - y).abs() < 1e-6, "packed file differs: {x} vs {y}");
        }
    }
}

/// Encoders packed with pruned, sparse linear weights (2:4, CSR, BSR; float and integer
/// values) or dense binary and ternary ones load from their one self-describing file and
/// match the CPU reference run on the weights as stored.
#[test]
fn sparse_model_files_match_cpu_reference() {
    use sparq::model::compress::{Compression, SparseStorage};
    let mut r = rng("bert-sparse");
    let c = config();
    let dir = tmp("sparse");
    let src = dir.join("float.safetensors");
    write_model(&src, &c, &random_bert(&mut r, &c, ""));
    let file = WeightFile::open(&src).unwrap();
    let int4 = WeightFormat::Int4 {
        group: 32,
        asymmetric: false,
    };
    let low = |name: &str| WeightFormat::parse(name).unwrap();
    let cases = [
        (Some("2:4"), int4, "2:4-int4"),
        (Some("2:4"), WeightFormat::F16, "2:4-f16"),
        (Some("magnitude:0.7"), WeightFormat::F16, "csr-f16"),
        (Some("blocks:1x32:0.5"), WeightFormat::Int8, "bsr1x32-int8"),
        (Some("blocks:2x32:0.5"), int4, "bsr2x32-int4"),
        // Dense binary and ternary files: groups longer than the rows (k = 24 or 40), several
        // a row, and ternary16's five trits a byte.
        (None, low("ternary"), "ternaryg128"),
        (None, low("ternary16g80"), "ternary16g80"),
        (None, low("binarym"), "binaryg128m"),
        (None, low("binaryg32"), "binaryg32"),
    ];
    let (ids, types) = ragged(&mut r, &c, &[3, 9, 17]);
    let batch = Batch::Tokens {
        ids: ids.clone(),
        types: Some(types.clone()),
    };
    for (prune, format, name) in cases {
        let compression = Compression {
            format,
            sparse: prune.map(|p| SparseStorage::parse(p).unwrap()),
        };
        let mut store = |_: &str, w: &[f32], n, k| Ok(compression.store(w, n, k)?.0);
        let (floats, packed) = bert::pack(&file, &c, &mut store).unwrap();
        assert!(packed.iter().all(|(_, w)| w.format_name() == name));
        let dst = dir.join(format!("{}.safetensors", name.replace(':', "_")));
        let meta = HashMap::from([(
            loader::CONFIG_KEY.to_string(),
            Architecture::Bert(c.clone()).to_json(),
        )]);
        loader::save(&dst, &floats, &packed, meta).unwrap();
        let host =
            bert::host_weights(&WeightFile::open(&dst).unwrap(), &c, WeightFormat::F32).unwrap();
        for gpu in all_gpus() {
            let out = Model::load(&dst, &gpu).unwrap().forward(&batch).unwrap();
            for (s, (i, t)) in ids.iter().zip(&types).enumerate() {
                let want = reference::bert(&c, &host, i, t);
                let err = max_error(out.row(s), &want);
                // Integer values go through the dense path here (29 rows): value × scale
                // rounded to f16, relative error ≤ 2⁻¹¹ per weight.
                let tol = if name.ends_with("int4") || name.ends_with("int8") {
                    1e-3
                } else {
                    2e-5
                };
                assert!(
                    err < tol,
                    "{name} on {}: sequence {s}: max error {err:.2e}",
                    gpu.caps.name
                );
            }
        }
    }
}

#[test]
fn bad_token_inputs_are_refused() {
    let mut r = rng("bert-inputs");
    let c = config();
    let dir = tmp("inputs");
    let path = dir.join("tiny.safetensors");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    let gpu = &all_gpus()[0];
    let model = Model::load(&path, gpu).unwrap();
    let tokens = |ids: Vec<Vec<u32>>, types: Option<Vec<Vec<u32>>>| Batch::Tokens { ids, types };
    let cases = [
        ("empty batch", tokens(vec![], None)),
        ("empty sequence", tokens(vec![vec![1, 2], vec![]], None)),
        (
            "id outside vocabulary",
            tokens(vec![vec![1, c.vocab_size as u32]], None),
        ),
        (
            "too long",
            tokens(vec![vec![1; c.max_position_embeddings + 1]], None),
        ),
        (
            "type outside range",
            tokens(vec![vec![1, 2]], Some(vec![vec![0, 2]])),
        ),
        (
            "types of other length",
            tokens(vec![vec![1, 2]], Some(vec![vec![0]])),
        ),
        (
            "types for other batch",
            tokens(vec![vec![1, 2]], Some(vec![])),
        ),
        (
            "features to an encoder",
            Batch::Features {
                rows: 1,
                cols: 24,
                data: vec![0.0; 24],
            },
        ),
        (
            "text without tokenizer",
            Batch::text(["no tokenizer.json here"]),
        ),
    ];
    for (what, b) in cases {
        match model.forward(&b) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => eprintln!("{what}: {e}"),
        }
    }
    // The model still works after refusing them.
    model.forward(&tokens(vec![vec![3, 4, 5]], None)).unwrap();
}

/// Dropping FFN neurons (`shrink::drop_neurons`) makes a smaller encoder that computes exactly
/// what the original computes with those neurons' input rows and biases zeroed (GELU(0) = 0).
#[test]
fn dropped_neurons_equal_zeroed_neurons() {
    use sparq::model::shrink::drop_neurons;
    let mut r = rng("bert-shrink");
    let c = config();
    let dir = tmp("shrink");
    let src = dir.join("float.safetensors");
    let tensors = random_bert(&mut r, &c, "");
    write_model(&src, &c, &tensors);
    let file = WeightFile::open(&src).unwrap();
    let (arch, small, cut) = drop_neurons(&file, &Architecture::Bert(c.clone()), 0.5).unwrap();
    let Architecture::Bert(sc) = &arch else {
        panic!("not an encoder")
    };
    assert_eq!(sc.intermediate_size, c.intermediate_size / 2);
    assert!(cut.sparsity > 0.49 && cut.sparsity < 0.51, "{cut:?}");
    // The original with the dropped neurons zeroed: rows of the input weights not kept.
    let mut zeroed = tensors.clone();
    let h = c.hidden_size;
    for l in 0..c.num_hidden_layers {
        let name = format!("encoder.layer.{l}.intermediate.dense.weight");
        let kept = &small.iter().find(|t| t.0 == name).unwrap().2;
        let (w, b) = {
            let w = zeroed.iter().position(|t| t.0 == name).unwrap();
            let b = zeroed
                .iter()
                .position(|t| t.0 == format!("encoder.layer.{l}.intermediate.dense.bias"))
                .unwrap();
            (w, b)
        };
        for row in 0..c.intermediate_size {
            let orig = zeroed[w].2[row * h..(row + 1) * h].to_vec();
            if !kept.chunks(h).any(|k| k == orig.as_slice()) {
                zeroed[w].2[row * h..(row + 1) * h].fill(0.0);
                zeroed[b].2[row] = 0.0;
            }
        }
    }
    let zsrc = dir.join("zeroed.safetensors");
    write_model(&zsrc, &c, &zeroed);
    let ssrc = dir.join("small.safetensors");
    write_model(&ssrc, sc, &small);
    let (ids, types) = ragged(&mut r, &c, &[5, 12]);
    let batch = Batch::Tokens {
        ids,
        types: Some(types),
    };
    for gpu in all_gpus() {
        let a = Model::load(&zsrc, &gpu).unwrap().forward(&batch).unwrap();
        let b = Model::load(&ssrc, &gpu).unwrap().forward(&batch).unwrap();
        let err = max_error(
            &b.values,
            &a.values.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        assert!(
            err < 1e-5,
            "{}: shrunk vs zeroed differ by {err:.2e}",
            gpu.caps.name
        );
    }
}

/// An encoder calibrated on token sequences (`sparq pack --calibrate`): int4 rounded by GPTQ,
/// 2:4 and 50 % CSR pruned by SparseGPT. Each is an ordinary file of its format whose weights
/// differ from the uncalibrated ones in every layer, and it loads and matches the CPU
/// reference run on its weights as stored. What calibration cannot do is refused.
#[test]
fn calibrated_files_match_cpu_reference() {
    use sparq::Error;
    use sparq::InputError;
    use sparq::model::calibrate;
    use sparq::model::compress::{Compression, SparseStorage, pack_model};
    let mut r = rng("bert-calibrate");
    let c = config();
    let dir = tmp("calibrate");
    let src = dir.join("float.safetensors");
    write_model(&src, &c, &random_bert(&mut r, &c, ""));
    let file = WeightFile::open(&src).unwrap();
    let arch = Architecture::Bert(c.clone());
    let (ids, types) = ragged(&mut r, &c, &[12, 30, 7, 25, 40, 18, 33]);
    let sequences: Vec<_> = ids.into_iter().zip(types).collect();
    let tokens: usize = sequences.iter().map(|(i, _)| i.len()).sum();
    let hessians = calibrate::bert_hessians(&file, &c, &sequences, |_, _, _| {}).unwrap();
    assert_eq!(hessians.len(), 4 * c.num_hidden_layers);
    assert!(hessians.values().all(|h| h.rows() == tokens));
    // Over 64 token rows, so that int4 runs the GEMM with exact activations (fewer rows take
    // the GEMV, which rounds activations to int8 for int4 weights).
    let (ids, types) = ragged(&mut r, &c, &[5, 40, 24]);
    let batch = Batch::Tokens {
        ids: ids.clone(),
        types: Some(types.clone()),
    };
    let meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    let cases = [
        (
            WeightFormat::Int4 {
                group: 32,
                asymmetric: true,
            },
            None,
            "int4g32a",
        ),
        (
            WeightFormat::parse("ternary16").unwrap(),
            None,
            "ternary16g160",
        ),
        (WeightFormat::F16, Some(SparseStorage::TwoFour), "2:4-f16"),
        (
            WeightFormat::F16,
            Some(SparseStorage::Csr { sparsity: 0.5 }),
            "csr-f16",
        ),
    ];
    for (format, sparse, name) in cases {
        let compression = Compression { format, sparse };
        let (_, plain, _) = pack_model(&file, &arch, &compression, None).unwrap();
        let (floats, packed, report) =
            pack_model(&file, &arch, &compression, Some(&hessians)).unwrap();
        assert_eq!(report.layers, 4 * c.num_hidden_layers);
        if sparse.is_some() {
            assert!(
                (report.zeros as f64 / report.len as f64 - 0.5).abs() < 0.01,
                "{name}"
            );
        }
        for ((layer, a), (_, b)) in packed.iter().zip(&plain) {
            assert_eq!(a.format_name(), name);
            assert_ne!(
                a.dequantize(),
                b.dequantize(),
                "{name} {layer}: calibration changed nothing"
            );
        }
        let dst = dir.join(format!("calibrated-{}.safetensors", name.replace(':', "_")));
        loader::save(&dst, &floats, &packed, meta.clone()).unwrap();
        let host =
            bert::host_weights(&WeightFile::open(&dst).unwrap(), &c, WeightFormat::F32).unwrap();
        for gpu in all_gpus() {
            let out = Model::load(&dst, &gpu).unwrap().forward(&batch).unwrap();
            for (s, (i, t)) in ids.iter().zip(&types).enumerate() {
                let err = max_error(out.row(s), &reference::bert(&c, &host, i, t));
                assert!(
                    err < 2e-5,
                    "{name} on {}: sequence {s}: max error {err:.2e}",
                    gpu.caps.name
                );
            }
        }
    }
    // Calibration rounds int4 and prunes to 2:4 or a fraction per row; it needs tokens.
    for refused in [
        Compression::dense(WeightFormat::Int8),
        Compression {
            format: WeightFormat::F16,
            sparse: Some(SparseStorage::Random { sparsity: 0.5 }),
        },
        Compression {
            format: WeightFormat::Int8,
            sparse: Some(SparseStorage::Bsr {
                rows: 1,
                cols: 32,
                sparsity: 0.5,
            }),
        },
    ] {
        let e = pack_model(&file, &arch, &refused, Some(&hessians)).err();
        assert!(
            matches!(e, Some(Error::Input(InputError::Invalid(_)))),
            "{refused:?}: {e:?}"
        );
    }
    let e = calibrate::bert_hessians(&file, &c, &[(vec![], vec![])], |_, _, _| {}).err();
    assert!(
        matches!(e, Some(Error::Input(InputError::Invalid(_)))),
        "{e:?}"
    );
}

/// A checkpoint whose LayerNorms are spelled `gamma`/`beta` (older TensorFlow conversions)
/// loads, packs through the library's pack entry point, and the packed file loads and matches
/// both the float model and the CPU reference: loading, packing and the host reference read
/// names through one accessor.
#[test]
fn gamma_beta_checkpoints_pack_and_match() {
    use sparq::model::compress::{Compression, pack_model};
    let mut r = rng("bert-gamma-beta");
    let c = config();
    let dir = tmp("gamma-beta");
    let src = dir.join("float.safetensors");
    let tensors: Vec<_> = random_bert(&mut r, &c, "bert.")
        .into_iter()
        .map(|(name, shape, v)| {
            let name = match name.strip_suffix("LayerNorm.weight") {
                Some(stem) => format!("{stem}LayerNorm.gamma"),
                None => match name.strip_suffix("LayerNorm.bias") {
                    Some(stem) => format!("{stem}LayerNorm.beta"),
                    None => name,
                },
            };
            (name, shape, v)
        })
        .collect();
    assert!(tensors.iter().any(|t| t.0.ends_with("LayerNorm.gamma")));
    write_model(&src, &c, &tensors);
    let file = WeightFile::open(&src).unwrap();
    let arch = Architecture::Bert(c.clone());
    let (floats, packed, report) =
        pack_model(&file, &arch, &Compression::dense(WeightFormat::F16), None).unwrap();
    assert_eq!(report.layers, 4 * c.num_hidden_layers);
    let dst = dir.join("packed.safetensors");
    let meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    loader::save(&dst, &floats, &packed, meta).unwrap();
    let host = bert::host_weights(&WeightFile::open(&dst).unwrap(), &c, WeightFormat::F32).unwrap();
    let (ids, types) = ragged(&mut r, &c, &[4, 13]);
    let batch = Batch::Tokens {
        ids: ids.clone(),
        types: Some(types.clone()),
    };
    for gpu in all_gpus() {
        let f16 = LoadOptions::default().format(WeightFormat::F16);
        let a = Model::load_with(&src, &gpu, f16)
            .unwrap()
            .forward(&batch)
            .unwrap();
        let b = Model::load(&dst, &gpu).unwrap().forward(&batch).unwrap();
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!((x - y).abs() < 1e-6, "packed file differs: {x} vs {y}");
        }
        for (s, (i, t)) in ids.iter().zip(&types).enumerate() {
            let err = max_error(b.row(s), &reference::bert(&c, &host, i, t));
            assert!(
                err < 2e-5,
                "on {}: sequence {s}: max error {err:.2e}",
                gpu.caps.name
            );
        }
    }
}
