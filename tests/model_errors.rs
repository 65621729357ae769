//! Bad model files and inputs give typed errors naming what is wrong, never a panic.

mod common;

use common::{all_gpus, random, rng};
use rand::Rng;
use sparq::DeviceError;
use sparq::Error;
use sparq::InputError;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::model::config::{Activation, Architecture, BertConfig, MlpConfig, Pooling};
use sparq::model::loader;
use sparq::model::{Batch, Model};
use std::collections::HashMap;
use std::path::PathBuf;

/// Named f32 tensors with shapes.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparq-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mlp_meta(sizes: &[usize]) -> HashMap<String, String> {
    let a = Architecture::Mlp(MlpConfig {
        sizes: sizes.to_vec(),
        activation: Activation::Relu,
    });
    HashMap::from([(loader::CONFIG_KEY.to_string(), a.to_json())])
}

/// A valid 5 → 3 → 2 MLP file's tensors.
fn mlp_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vec![
        ("layers.0.weight".into(), vec![3, 5], vec![0.1; 15]),
        ("layers.0.bias".into(), vec![3], vec![0.0; 3]),
        ("layers.1.weight".into(), vec![2, 3], vec![0.2; 6]),
        ("layers.1.bias".into(), vec![2], vec![0.0; 2]),
    ]
}

fn load_err(gpu: &sparq::Gpu, path: &std::path::Path) -> Error {
    match Model::load(path, gpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn broken_files_are_refused() {
    let gpu = &all_gpus()[0];
    let good = tmp("good.safetensors");
    loader::save(&good, &mlp_tensors(), &[], mlp_meta(&[5, 3, 2])).unwrap();
    Model::load(&good, gpu).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Truncated anywhere: header, data.
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = tmp(&format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = load_err(gpu, &p);
        assert!(
            matches!(e, Error::Input(InputError::SafeTensors(_))),
            "cut at {cut}: {e}"
        );
    }
    // Garbage.
    let p = tmp("garbage.safetensors");
    std::fs::write(
        &p,
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a safetensors file",
    )
    .unwrap();
    assert!(matches!(
        load_err(gpu, &p),
        Error::Input(InputError::SafeTensors(_))
    ));
    // A file that does not exist.
    assert!(matches!(
        load_err(gpu, &tmp("absent.safetensors")),
        Error::Input(InputError::Config(_))
    ));
}

#[test]
fn random_corruption_never_panics() {
    let gpu = &all_gpus()[0];
    let mut r = rng("corrupt");
    // A float file, and one with a sparse (2:4 int4) and a packed (int8) layer.
    let good = tmp("fuzz-src.safetensors");
    loader::save(&good, &mlp_tensors(), &[], mlp_meta(&[5, 3, 2])).unwrap();
    let sparse = tmp("fuzz-sparse-src.safetensors");
    let w = vec![
        0.5f32, 0.0, -0.25, 0.0, 1.0, 0.0, 0.75, 0.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.3, 0.2,
    ];
    let two_four =
        sparq::sparse::TwoFour::from_dense(&w, 3, 5, sparq::sparse::ValueType::Int4).unwrap();
    let dense = PackedWeights::quantize(&[0.2; 6], 2, 3, WeightFormat::Int8).unwrap();
    let mut floats = mlp_tensors();
    floats.retain(|t| !t.0.ends_with("weight"));
    let packed: Vec<(String, sparq::weights::LayerWeights)> = vec![
        (
            "layers.0.weight".into(),
            sparq::sparse::SparseWeights::from(two_four).into(),
        ),
        ("layers.1.weight".into(), dense.into()),
    ];
    loader::save(&sparse, &floats, &packed, mlp_meta(&[5, 3, 2])).unwrap();
    Model::load(&sparse, gpu).unwrap();
    for (i, src) in [good, sparse].iter().enumerate() {
        fuzz(gpu, &mut r, src, &tmp(&format!("fuzz{i}.safetensors")));
    }
}

/// Loads and runs 150 copies of `src` with a few random bytes changed, written to `p`.
fn fuzz(gpu: &sparq::Gpu, r: &mut rand::rngs::StdRng, src: &std::path::Path, p: &std::path::Path) {
    let bytes = std::fs::read(src).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    for _ in 0..150 {
        let mut b = bytes.clone();
        for _ in 0..r.random_range(1..4) {
            // Mostly in the header, where structure lives.
            let i = if r.random_bool(0.8) {
                r.random_range(0..header)
            } else {
                r.random_range(0..b.len())
            };
            b[i] = r.random();
        }
        std::fs::write(p, &b).unwrap();
        // Any outcome but a panic is fine: corrupted data can still be a valid model.
        if let Ok(m) = Model::load(p, gpu) {
            let _ = m.forward(&Batch::Features {
                rows: 1,
                cols: 5,
                data: vec![1.0; 5],
            });
        }
    }
}

#[test]
fn missing_and_mismatched_tensors_are_named() {
    let gpu = &all_gpus()[0];
    let cases: Vec<(&str, Tensors, &str)> = vec![
        (
            "missing",
            mlp_tensors()
                .into_iter()
                .filter(|t| t.0 != "layers.1.bias")
                .collect(),
            "layers.1.bias",
        ),
        (
            "shape",
            mlp_tensors()
                .into_iter()
                .map(|t| {
                    if t.0 == "layers.0.weight" {
                        (t.0, vec![5, 3], t.2)
                    } else {
                        t
                    }
                })
                .collect(),
            "layers.0.weight",
        ),
        (
            "nan",
            mlp_tensors()
                .into_iter()
                .map(|mut t| {
                    if t.0 == "layers.1.weight" {
                        t.2[4] = f32::NAN;
                    }
                    t
                })
                .collect(),
            "layers.1.weight",
        ),
    ];
    for (what, tensors, name) in cases {
        let p = tmp(&format!("{what}.safetensors"));
        loader::save(&p, &tensors, &[], mlp_meta(&[5, 3, 2])).unwrap();
        let e = load_err(gpu, &p);
        assert!(
            matches!(
                e,
                Error::Input(InputError::MissingTensor { .. })
                    | Error::Input(InputError::BadTensor { .. })
            ) && e.to_string().contains(name),
            "{what}: {e}"
        );
    }
    // An extra layer the config does not have.
    let p = tmp("extra.safetensors");
    loader::save(&p, &mlp_tensors(), &[], mlp_meta(&[5, 3])).unwrap();
    let e = load_err(gpu, &p);
    assert!(
        matches!(e, Error::Input(InputError::BadTensor { .. })),
        "{e}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let gpu = &all_gpus()[0];
    // A U32 tensor where floats belong: written as a packed matrix under another name.
    let p = tmp("dtype.safetensors");
    let packed = PackedWeights::quantize(&[0.5; 15], 3, 5, WeightFormat::Int8).unwrap();
    let mut tensors = mlp_tensors();
    tensors.retain(|t| t.0 != "layers.0.bias");
    loader::save(
        &p,
        &tensors,
        &[("layers.0.bias".into(), packed.into())],
        mlp_meta(&[5, 3, 2]),
    )
    .unwrap();
    let e = load_err(gpu, &p);
    assert!(e.to_string().contains("layers.0.bias"), "{e}");
}

#[test]
fn corrupt_packed_layout_is_refused() {
    let gpu = &all_gpus()[0];
    let format = WeightFormat::Int4 {
        group: 32,
        asymmetric: true,
    };
    let w = vec![0.25f32; 3 * 5];
    let mut packed = PackedWeights::quantize(&w, 3, 5, format).unwrap();
    packed.zeros.clear(); // asymmetric without zero points
    let mut tensors = mlp_tensors();
    tensors.retain(|t| t.0 != "layers.0.weight");
    let p = tmp("packed.safetensors");
    loader::save(
        &p,
        &tensors,
        &[("layers.0.weight".into(), packed.into())],
        mlp_meta(&[5, 3, 2]),
    )
    .unwrap();
    let e = load_err(gpu, &p);
    assert!(
        matches!(e, Error::Input(InputError::MissingTensor { .. }))
            && e.to_string().contains("layers.0.weight.zeros"),
        "{e}"
    );
    // Described with the wrong shape.
    let ok = PackedWeights::quantize(&w, 3, 5, WeightFormat::Int8).unwrap();
    let p = tmp("packed2.safetensors");
    let mut tensors = mlp_tensors();
    tensors.retain(|t| t.0 != "layers.1.weight");
    loader::save(
        &p,
        &tensors,
        &[("layers.1.weight".into(), ok.into())],
        mlp_meta(&[5, 3, 2]),
    )
    .unwrap();
    let e = load_err(gpu, &p);
    assert!(
        matches!(e, Error::Input(InputError::BadTensor { .. }))
            && e.to_string().contains("layers.1.weight"),
        "{e}"
    );
}

/// A model file whose sparse weights were damaged: each case is refused with an error naming
/// the tensor; the undamaged file loads and runs.
#[test]
fn corrupt_sparse_layout_is_refused() {
    use sparq::sparse::{Csr, SparseWeights, TwoFour, ValueType};
    use sparq::weights::LayerWeights;
    let gpu = &all_gpus()[0];
    let mut rng = rng("corrupt_sparse_layout_is_refused");
    let (n, k) = (3, 5);
    let w: Vec<f32> = (0..n * k)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                rng.random_range(-1.0..1.0)
            }
        })
        .collect();
    let csr = Csr::from_dense(&w, n, k, ValueType::F16).unwrap();
    let w24 = sparq::prune::n_of_m(&w, n, k, 2, 4).unwrap().w;
    let tf = TwoFour::from_dense(&w24, n, k, ValueType::Int4).unwrap();
    let save = |file: &str, weights: SparseWeights| {
        let mut tensors = mlp_tensors();
        tensors.retain(|t| t.0 != "layers.0.weight");
        let p = tmp(file);
        let packed: Vec<(String, LayerWeights)> = vec![("layers.0.weight".into(), weights.into())];
        loader::save(&p, &tensors, &packed, mlp_meta(&[5, 3, 2])).unwrap();
        p
    };
    let fine = save("sparse-ok.safetensors", csr.clone().into());
    let out = Model::load(&fine, gpu)
        .unwrap()
        .forward(&Batch::Features {
            rows: 1,
            cols: 5,
            data: vec![1.0; 5],
        })
        .unwrap();
    assert_eq!(out.cols, 2);
    let mut bad_col = csr.clone();
    bad_col.col_idx[0] |= 9; // column ≥ 5
    let mut bad_ptr = csr.clone();
    bad_ptr.row_ptr[1] = bad_ptr.row_ptr[3] + 1;
    let mut bad_meta = tf.clone();
    bad_meta.meta[0] = 0xF; // positions 3 and 3
    let mut short = tf.clone();
    short.values.truncate(2);
    for (i, damaged) in [
        bad_col.into(),
        bad_ptr.into(),
        bad_meta.into(),
        short.into(),
    ]
    .into_iter()
    .enumerate()
    {
        let p = save(&format!("sparse-bad{i}.safetensors"), damaged);
        let e = load_err(gpu, &p);
        assert!(
            matches!(e, Error::Input(InputError::BadTensor { .. }))
                && e.to_string().contains("layers.0.weight"),
            "case {i}: {e}"
        );
    }
}

#[test]
fn bad_configs_are_refused() {
    let gpu = &all_gpus()[0];
    let base = BertConfig {
        vocab_size: 10,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        hidden_act: "gelu".into(),
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pooling: Pooling::Mean,
        normalize: false,
        max_seq_length: None,
    };
    let bad = [
        BertConfig {
            num_attention_heads: 3,
            ..base.clone()
        },
        BertConfig {
            hidden_act: "tanhshrink".into(),
            ..base.clone()
        },
        BertConfig {
            hidden_size: 0,
            ..base.clone()
        },
        BertConfig {
            layer_norm_eps: -1.0,
            ..base.clone()
        },
        BertConfig {
            max_position_embeddings: 100_000,
            ..base.clone()
        },
        BertConfig {
            hidden_size: 512,
            num_attention_heads: 2,
            ..base.clone()
        },
    ];
    for c in bad {
        assert!(
            matches!(
                Architecture::Bert(c.clone()).validate(),
                Err(Error::Input(InputError::Config(_)))
            ),
            "{c:?}"
        );
    }
    // Unparseable JSON in the metadata, an unknown architecture, a directory without config.
    for meta in [
        "{not json",
        r#"{"architecture": "gpt"}"#,
        r#"{"architecture": "mlp", "sizes": [4], "activation": "relu"}"#,
    ] {
        let p = tmp("cfg.safetensors");
        loader::save(
            &p,
            &mlp_tensors(),
            &[],
            HashMap::from([(loader::CONFIG_KEY.to_string(), meta.to_string())]),
        )
        .unwrap();
        assert!(
            matches!(load_err(gpu, &p), Error::Input(InputError::Config(_))),
            "{meta}"
        );
    }
    let dir = tmp("noconfig");
    std::fs::create_dir_all(&dir).unwrap();
    loader::save(
        &dir.join("model.safetensors"),
        &mlp_tensors(),
        &[],
        HashMap::new(),
    )
    .unwrap();
    assert!(matches!(
        load_err(gpu, &dir),
        Error::Input(InputError::Config(_))
    ));
}

#[test]
fn bad_inputs_are_refused() {
    let gpu = &all_gpus()[0];
    let mut r = rng("inputs");
    let p = tmp("inputs.safetensors");
    loader::save(&p, &mlp_tensors(), &[], mlp_meta(&[5, 3, 2])).unwrap();
    let m = Model::load(&p, gpu).unwrap();
    let ok = Batch::Features {
        rows: 2,
        cols: 5,
        data: random(&mut r, 10),
    };
    m.forward(&ok).unwrap();
    for b in [
        Batch::Features {
            rows: 0,
            cols: 5,
            data: vec![],
        },
        Batch::Features {
            rows: 2,
            cols: 4,
            data: vec![0.0; 8],
        },
        Batch::Features {
            rows: 2,
            cols: 5,
            data: vec![0.0; 9],
        },
        Batch::Features {
            rows: 1,
            cols: 5,
            data: vec![0.0, 1.0, f32::INFINITY, 0.0, 0.0],
        },
        Batch::text(["a classifier takes no text"]),
    ] {
        assert!(m.forward(&b).is_err(), "{b:?}");
    }
}

/// A device lost under a loaded model (dense and sparse layers): forward passes, in flight or
/// new, return `sparq::DeviceError::Lost`, never a panic.
#[test]
fn lost_device_is_an_error() {
    use sparq::sparse::{Csr, ValueType};
    let mut tensors = mlp_tensors();
    tensors.retain(|t| t.0 != "layers.1.weight");
    let sparse = Csr::from_dense(&[0.2; 6], 2, 3, ValueType::F16).unwrap();
    let p = tmp("lost.safetensors");
    let packed: Vec<(String, sparq::weights::LayerWeights)> = vec![(
        "layers.1.weight".into(),
        sparq::sparse::SparseWeights::from(sparse).into(),
    )];
    loader::save(&p, &tensors, &packed, mlp_meta(&[5, 3, 2])).unwrap();
    for gpu in all_gpus() {
        let model = Model::load(&p, &gpu).unwrap();
        let batch = Batch::Features {
            rows: 2,
            cols: 5,
            data: vec![0.5; 10],
        };
        model.forward(&batch).unwrap();
        let in_flight = model.submit(&batch).unwrap();
        gpu.device.destroy();
        let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
        for r in [model.wait(in_flight), model.forward(&batch)] {
            match r {
                Err(Error::Device(DeviceError::Lost(_))) => {}
                other => panic!("{}: {other:?}", gpu.caps.name),
            }
        }
    }
}
