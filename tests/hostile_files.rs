//! What a hostile or careless model file can get wrong, each refused with a typed error:
//! sparse layouts that pass a shallow check, numbers that overflow once stored or in the
//! arithmetic, tensors the model does not use, configurations that disagree with the file or
//! size absurd allocations, and a JSON file given as the weights.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::bert::{config, random_bert, write_model};
use common::{all_gpus, rng};
use rand::Rng;
use sparq::formats::WeightFormat;
use sparq::model::compress::{Compression, SparseStorage, pack_model};
use sparq::model::config::{Activation, Architecture, MlpConfig};
use sparq::model::loader::{self, WeightFile};
use sparq::model::{Batch, LoadOptions, Model};
use sparq::sparse::{Bsr, Csr, SparseWeights, TwoFour, ValueType};
use sparq::weights::LayerWeights;
use sparq::{Error, InputError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Named f32 tensors with shapes.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tmp(name: &str) -> PathBuf {
    common::bert::tmp("hostile").join(name)
}

fn mlp_meta(sizes: &[usize]) -> HashMap<String, String> {
    let a = Architecture::Mlp(MlpConfig {
        sizes: sizes.to_vec(),
        activation: Activation::Relu,
    });
    HashMap::from([(loader::CONFIG_KEY.to_string(), a.to_json())])
}

/// A 5 → 3 → 2 MLP whose first weight is `w0` (3 × 5).
fn mlp_tensors(w0: Vec<f32>) -> Tensors {
    vec![
        ("layers.0.weight".into(), vec![3, 5], w0),
        ("layers.0.bias".into(), vec![3], vec![0.0; 3]),
        ("layers.1.weight".into(), vec![2, 3], vec![0.2; 6]),
        ("layers.1.bias".into(), vec![2], vec![0.0; 2]),
    ]
}

fn load_err(gpu: &sparq::Gpu, path: &Path, format: WeightFormat) -> Error {
    let options = LoadOptions::default().format(format);
    match Model::load_with(path, gpu, options) {
        Ok(_) => panic!("{} loaded as {}", path.display(), format.name()),
        Err(e) => e,
    }
}

/// `e`'s message, checked to contain every one of `parts`.
fn assert_msg(e: &Error, parts: &[&str]) {
    let m = e.to_string();
    for p in parts {
        assert!(m.contains(p), "'{m}' does not say '{p}'");
    }
}

/// Rewrites the header metadata of the safetensors file at `path` through `edit`.
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut m = meta.metadata().clone().unwrap_or_default();
    edit(&mut m);
    let views = st.tensors();
    let out = path.with_extension("edited");
    safetensors::serialize_to_file(views, Some(m), &out).unwrap();
    std::fs::rename(&out, path).unwrap();
}

/// A 3 × 5 matrix with a zero at every third position and random values elsewhere.
fn sparse_matrix(r: &mut impl Rng) -> Vec<f32> {
    (0..15)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                r.random_range(0.1..1.0)
            }
        })
        .collect()
}

fn validate_err(w: SparseWeights) -> String {
    match w.validate() {
        Ok(()) => panic!("{w:?} passed validation"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn csr_columns_must_ascend_within_a_row() {
    let mut r = rng("csr_columns_must_ascend_within_a_row");
    let w = sparse_matrix(&mut r);
    let good = Csr::from_dense(&w, 3, 5, ValueType::F32).unwrap();
    SparseWeights::from(good.clone()).validate().unwrap();
    // Row 0 holds columns 1, 2, 4 (elements 0..3), 16-bit indices two to a word.
    assert_eq!(good.row_ptr[..2], [0, 3]);
    let put = |c: &mut Csr, e: usize, col: u32| {
        let shift = 16 * (e % 2);
        c.col_idx[e / 2] = (c.col_idx[e / 2] & !(0xFFFF << shift)) | (col << shift);
    };
    let mut swapped = good.clone();
    put(&mut swapped, 0, 2);
    put(&mut swapped, 1, 1);
    let m = validate_err(swapped.clone().into());
    assert!(m.contains("row 0 is not strictly ascending"), "{m}");
    let mut repeated = good.clone();
    put(&mut repeated, 1, 1);
    let m = validate_err(repeated.into());
    assert!(m.contains("not strictly ascending"), "{m}");
    let mut outside = good.clone();
    put(&mut outside, 2, 5);
    let m = validate_err(outside.into());
    assert!(m.contains("column 5 of 5"), "{m}");

    // Read from a file, the same matrix is refused with the tensor's name.
    let gpu = &all_gpus()[0];
    let p = tmp("csr-unsorted.safetensors");
    let mut floats = mlp_tensors(w);
    floats.retain(|t| t.0 != "layers.0.weight");
    let packed = vec![(
        "layers.0.weight".to_string(),
        LayerWeights::from(SparseWeights::from(swapped)),
    )];
    loader::save(&p, &floats, &packed, mlp_meta(&[5, 3, 2])).unwrap();
    let e = load_err(gpu, &p, WeightFormat::F32);
    assert!(
        matches!(&e, Error::Input(InputError::BadTensor { tensor, .. }) if tensor == "layers.0.weight"),
        "{e:?}"
    );
    assert_msg(&e, &["not strictly ascending"]);
}

#[test]
fn sparse_padding_must_be_zero() {
    let mut r = rng("sparse_padding_must_be_zero");
    // 2:4 with k = 5: group 1 holds column 4 only, its second slot points past the matrix.
    let w: Vec<f32> = (0..15)
        .map(|i| {
            if i % 5 == 4 {
                0.0
            } else {
                r.random_range(0.1..1.0)
            }
        })
        .collect();
    let w24 = sparq::prune::n_of_m(&w, 3, 5, 2, 4).unwrap().w;
    let good = TwoFour::from_dense(&w24, 3, 5, ValueType::F32).unwrap();
    SparseWeights::from(good.clone()).validate().unwrap();
    assert_eq!(good.positions(0, 1), [0, 1]);
    let mut bad = good.clone();
    bad.values[3] = 1.0f32.to_bits();
    let m = validate_err(bad.into());
    assert!(m.contains("row 0, group 1: slot 1 is past column 4"), "{m}");

    // BSR 2 × 2 over 3 × 3: the last block's row 3 and column 3 are padding.
    let w: Vec<f32> = (0..9).map(|_| r.random_range(0.1..1.0)).collect();
    let good = Bsr::from_dense(&w, 3, 3, 2, 2, ValueType::F32).unwrap();
    SparseWeights::from(good.clone()).validate().unwrap();
    let last = good.blocks() - 1;
    let mut bad = good.clone();
    bad.values[last * good.block_words() + 3] = 1.0f32.to_bits();
    let m = validate_err(bad.into());
    assert!(
        m.contains("non-zero padding element at row 3, column 3"),
        "{m}"
    );
}

#[test]
fn weights_that_overflow_when_stored_are_named() {
    let gpu = &all_gpus()[0];
    let p = tmp("huge-weights.safetensors");
    let mut w0 = vec![0.1; 15];
    w0[7] = 3e38;
    loader::save(&p, &mlp_tensors(w0), &[], mlp_meta(&[5, 3, 2])).unwrap();
    for format in [
        WeightFormat::F16,
        WeightFormat::Int8G32,
        WeightFormat::Int4Min { group: 32 },
    ] {
        let e = load_err(gpu, &p, format);
        assert!(
            matches!(&e, Error::Input(InputError::BadTensor { tensor, .. }) if tensor == "layers.0.weight"),
            "{}: {e:?}",
            format.name()
        );
        assert_msg(&e, &["row 1", "too large"]);
    }
    // `sparq pack` into f16 values (dense or sparse) names the tensor too.
    let file = WeightFile::open(&p).unwrap();
    let arch = Architecture::from_sparq_json(file.metadata(loader::CONFIG_KEY).unwrap()).unwrap();
    for sparse in [None, Some(SparseStorage::Csr { sparsity: 0.5 })] {
        let c = Compression {
            format: WeightFormat::F16,
            sparse,
        };
        let e = pack_model(&file, &arch, &c, None).expect_err("packed");
        assert!(
            matches!(&e, Error::Input(InputError::BadTensor { tensor, .. }) if tensor == "layers.0.weight"),
            "{sparse:?}: {e:?}"
        );
    }
}

#[test]
fn arithmetic_overflow_is_an_error_not_nulls() {
    let gpu = &all_gpus()[0];
    let p = tmp("overflowing.safetensors");
    // Finite weights whose sums overflow f32: every class's probability would be NaN.
    loader::save(&p, &mlp_tensors(vec![3e38; 15]), &[], mlp_meta(&[5, 3, 2])).unwrap();
    let features = |v: f32| Batch::Features {
        rows: 2,
        cols: 5,
        data: vec![v; 10],
    };
    for format in [WeightFormat::F32, WeightFormat::Int8] {
        let options = LoadOptions::default().format(format);
        let model = Model::load_with(&p, gpu, options).unwrap();
        let e = model.forward(&features(1.0)).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::NonFinite { row: 0, .. })),
            "{}: {e:?}",
            format.name()
        );
        assert_msg(&e, &["overflowed"]);
        // Zero features stay finite: the check is of the results, not of the weights.
        let ok = model.forward(&features(0.0)).unwrap();
        assert!(ok.values.iter().all(|v| v.is_finite()));
    }
    // A non-finite feature never reaches the device, whoever built the batch.
    let model = Model::load(&p, gpu).unwrap();
    let mut data = vec![0.0; 10];
    data[6] = f32::NAN;
    let e = model
        .forward(&Batch::Features {
            rows: 2,
            cols: 5,
            data,
        })
        .unwrap_err();
    assert!(matches!(&e, Error::Input(InputError::Invalid(_))), "{e:?}");
    assert_msg(&e, &["feature 6"]);
}

#[test]
fn a_relabelled_layout_is_refused() {
    let mut r = rng("a_relabelled_layout_is_refused");
    let gpu = &all_gpus()[0];
    let w = sparse_matrix(&mut r);
    let w24 = sparq::prune::n_of_m(&w, 3, 5, 2, 4).unwrap().w;
    let tf = TwoFour::from_dense(&w24, 3, 5, ValueType::Int4).unwrap();
    let p = tmp("relabelled.safetensors");
    let mut floats = mlp_tensors(w);
    floats.retain(|t| t.0 != "layers.0.weight");
    let packed = vec![(
        "layers.0.weight".to_string(),
        LayerWeights::from(SparseWeights::from(tf)),
    )];
    loader::save(&p, &floats, &packed, mlp_meta(&[5, 3, 2])).unwrap();
    Model::load(&p, gpu).unwrap();
    edit_metadata(&p, |m| {
        let t = m.get_mut(loader::PACKED_KEY).unwrap();
        *t = t.replace("2:4-int4", "int4g32");
    });
    let e = match WeightFile::open(&p) {
        Ok(_) => panic!("opened"),
        Err(e) => e,
    };
    assert!(
        matches!(&e, Error::Input(InputError::BadTensor { tensor, .. }) if tensor == "layers.0.weight"),
        "{e:?}"
    );
    assert_msg(&e, &["layers.0.weight.meta", "mislabels"]);

    // A dense packed entry whose shape disagrees with its n × k.
    let q = tmp("packed-shape.safetensors");
    let int8 =
        sparq::formats::PackedWeights::quantize(&[0.5; 15], 3, 5, WeightFormat::Int8).unwrap();
    let mut floats = mlp_tensors(vec![]);
    floats.retain(|t| t.0 != "layers.0.weight");
    let packed = vec![("layers.0.weight".to_string(), LayerWeights::from(int8))];
    loader::save(&q, &floats, &packed, mlp_meta(&[5, 3, 2])).unwrap();
    edit_metadata(&q, |m| {
        let t = m.get_mut(loader::PACKED_KEY).unwrap();
        *t = t.replace("\"n\":3", "\"n\":4");
    });
    let e = WeightFile::open(&q).err().expect("opened");
    assert_msg(&e, &["layers.0.weight", "for a 4 × 5 int8 matrix"]);
}

#[test]
fn unused_tensors_that_look_like_the_models_are_refused() {
    let mut r = rng("unused_tensors_that_look_like_the_models_are_refused");
    let gpu = &all_gpus()[0];
    let unused = |e: &Error| match e {
        Error::Input(InputError::UnusedTensor { tensor, .. }) => tensor.clone(),
        e => panic!("not an unused tensor: {e:?}"),
    };

    // A part of a tensor that was read as floats.
    let p = tmp("sidecar.safetensors");
    let mut t = mlp_tensors(vec![0.1; 15]);
    t.push(("layers.0.weight.meta".into(), vec![4], vec![0.0; 4]));
    loader::save(&p, &t, &[], mlp_meta(&[5, 3, 2])).unwrap();
    let e = load_err(gpu, &p, WeightFormat::F32);
    assert_eq!(unused(&e), "layers.0.weight.meta");

    // A packed entry the model never reads.
    let p = tmp("packed-extra.safetensors");
    let extra =
        sparq::formats::PackedWeights::quantize(&[0.5; 8], 2, 4, WeightFormat::F16).unwrap();
    let packed = vec![("head.weight".to_string(), LayerWeights::from(extra))];
    loader::save(
        &p,
        &mlp_tensors(vec![0.1; 15]),
        &packed,
        mlp_meta(&[5, 3, 2]),
    )
    .unwrap();
    let e = load_err(gpu, &p, WeightFormat::F32);
    assert_eq!(unused(&e), "head.weight");
    assert_msg(&e, &["sparq.packed"]);

    // A BERT config of one layer over a file of two: the second layer is named.
    let c2 = config();
    let tensors = random_bert(&mut r, &c2, "");
    let mut c1 = c2.clone();
    c1.num_hidden_layers = 1;
    let p = tmp("bert-fewer-layers.safetensors");
    write_model(&p, &c1, &tensors);
    let e = load_err(gpu, &p, WeightFormat::F32);
    assert!(unused(&e).starts_with("encoder.layer.1."), "{e}");
    assert_msg(&e, &["fewer layers"]);
    // `sparq pack` reads the file through the same path and refuses it too.
    let file = WeightFile::open(&p).unwrap();
    let arch = Architecture::Bert(c1);
    let compression = Compression {
        format: WeightFormat::F32,
        sparse: None,
    };
    let e = pack_model(&file, &arch, &compression, None).expect_err("packed");
    assert!(unused(&e).starts_with("encoder.layer.1."), "{e}");

    // Tensors unlike the model's own (a pooler the encoder never runs, a head it does not
    // know) are only logged: the file still loads.
    let p = tmp("bert-pooler.safetensors");
    let mut t = tensors.clone();
    t.push(("pooler.dense.weight".into(), vec![24, 24], vec![0.1; 576]));
    t.push(("pooler.dense.bias".into(), vec![24], vec![0.0; 24]));
    t.push(("classifier.weight".into(), vec![2, 24], vec![0.1; 48]));
    write_model(&p, &c2, &t);
    Model::load(&p, gpu).unwrap();
}

#[test]
fn minilm_with_its_pooler_still_loads() {
    let gpu = &all_gpus()[0];
    let dir = common::minilm::model_dir();
    let file = WeightFile::open(&dir.join("model.safetensors")).unwrap();
    assert!(file.contains("pooler.dense.weight"));
    let model = Model::load(&dir, gpu).unwrap();
    let out = model.forward(&Batch::text(["A test."])).unwrap();
    assert_eq!(out.cols, 384);
}

/// A Hugging Face style folder of the small BERT: weights, `config.json` and
/// `sentence_bert_config.json` with `max_seq_length`.
fn hf_dir(name: &str, max_seq_length: serde_json::Value) -> PathBuf {
    let mut r = rng(name);
    let dir = common::bert::tmp(name);
    let c = config();
    loader::save(
        &dir.join("model.safetensors"),
        &random_bert(&mut r, &c, ""),
        &[],
        HashMap::new(),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        serde_json::json!({ "max_seq_length": max_seq_length }).to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn max_seq_length_out_of_range_is_refused() {
    // The file and the field, as the message names them.
    let field_of = |e: &Error| match e {
        Error::Input(InputError::Config(m)) => {
            let (file, rest) = m.split_once(": '").expect("names a field");
            (
                file.to_string(),
                rest.split('\'').next().unwrap().to_string(),
            )
        }
        e => panic!("not a config error: {e:?}"),
    };
    for (i, bad) in [
        serde_json::json!(0),
        serde_json::json!(3),
        serde_json::json!(41),
        serde_json::json!(-1),
        serde_json::json!("long"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = hf_dir(&format!("seq-bad-{i}"), bad.clone());
        let e = Architecture::from_hf_dir(&dir).expect_err("accepted");
        let (file, field) = field_of(&e);
        assert!(file.ends_with("sentence_bert_config.json"), "{bad}: {e}");
        assert_eq!(field, "max_seq_length", "{bad}: {e}");
    }
    for ok in [4, 40] {
        let dir = hf_dir(&format!("seq-ok-{ok}"), serde_json::json!(ok));
        Architecture::from_hf_dir(&dir).unwrap();
    }
}

#[test]
fn config_sizes_have_sane_maxima() {
    let field_of = |json: String| match Architecture::from_sparq_json(&json) {
        Err(Error::Input(InputError::Config(m))) => {
            let (file, rest) = m.split_once(": '").expect("names a field");
            assert_eq!(file, "sparq.config", "{m}");
            rest.split('\'').next().unwrap().to_string()
        }
        r => panic!("{json}: {r:?}"),
    };
    let bert = |edit: &dyn Fn(&mut sparq::model::config::BertConfig)| {
        let mut c = config();
        edit(&mut c);
        Architecture::Bert(c).to_json()
    };
    assert_eq!(field_of(bert(&|c| c.hidden_size = 1 << 20)), "hidden_size");
    assert_eq!(
        field_of(bert(&|c| c.num_hidden_layers = 1 << 20)),
        "num_hidden_layers"
    );
    assert_eq!(field_of(bert(&|c| c.vocab_size = usize::MAX)), "vocab_size");
    assert_eq!(
        field_of(bert(&|c| c.intermediate_size = 0)),
        "intermediate_size"
    );
    // Each field within its maximum, the model they describe is still too large.
    assert_eq!(
        field_of(bert(&|c| {
            c.vocab_size = 1 << 22;
            c.hidden_size = 1 << 15;
            c.num_attention_heads = 512;
            c.intermediate_size = 1 << 17;
            c.num_hidden_layers = 1 << 10;
        })),
        "hidden_size"
    );
    let mlp = |sizes: Vec<usize>| {
        Architecture::Mlp(MlpConfig {
            sizes,
            activation: Activation::Relu,
        })
        .to_json()
    };
    assert_eq!(field_of(mlp(vec![5, 1 << 25])), "sizes[1]");
    assert_eq!(field_of(mlp(vec![1 << 24, 1 << 24])), "sizes[1]");
    assert_eq!(field_of(mlp(vec![5])), "sizes");
}

#[test]
fn a_json_file_as_the_weights_says_so() {
    let dir = hf_dir("json-path", serde_json::json!(16));
    let e = WeightFile::open(&dir.join("config.json"))
        .err()
        .expect("opened");
    assert!(
        matches!(&e, Error::Input(InputError::SafeTensors(_))),
        "{e:?}"
    );
    assert_msg(&e, &["config.json is a JSON file", "model.safetensors"]);
    // What header corruption says is unchanged.
    let p = dir.join("garbage.safetensors");
    std::fs::write(&p, [0xFFu8; 64]).unwrap();
    let e = WeightFile::open(&p).err().expect("opened");
    assert!(!e.to_string().contains("JSON"), "{e}");
}

#[test]
fn a_decoder_config_with_fewer_layers_than_its_shards_is_refused() {
    use sparq::model::llama::{DecoderOptions, LlamaConfig, LlamaDecoder};
    let mut r = rng("a_decoder_config_with_fewer_layers_than_its_shards_is_refused");
    let gpu = &all_gpus()[0];
    let json = llama::config_json("LlamaForCausalLM", false);
    let weights = llama::random_weights(
        &LlamaConfig::from_hf_config(&json).unwrap(),
        &mut r,
        safetensors::Dtype::F32,
    );
    let mut fewer: serde_json::Value = serde_json::from_str(&json).unwrap();
    fewer["num_hidden_layers"] = 1.into();
    let options = DecoderOptions {
        kv_tokens: Some(64),
        ..DecoderOptions::default()
    };
    let dir = llama::tmp("hostile-llama");
    llama::write_hf(&dir, &json, &weights, safetensors::Dtype::F32, 2);
    LlamaDecoder::from_hf(&dir, gpu, options).unwrap();
    std::fs::write(dir.join("config.json"), fewer.to_string()).unwrap();
    match LlamaDecoder::from_hf(&dir, gpu, options) {
        Err(Error::Input(InputError::UnusedTensor { tensor, .. })) => {
            assert!(tensor.starts_with("model.layers.1."), "{tensor}")
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded"),
    }
}
