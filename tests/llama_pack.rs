//! `sparq pack` for decoders (`model::llama::pack`) and loading its files
//! (`LlamaDecoder::from_sparq`, `open`): a tiny random checkpoint packed to int8, int4g32,
//! ternary, ternary16, binary with means, 2:4 and CSR, loaded on every adapter, a prefill's logits against the f64 reference run on
//! the weights *as the file stores them* (dequantized), so that what is checked is the file
//! and the kernels, not the quantization error; the tolerance of `tests/llama_decoder.rs`.
//! The devices run integer weights with exact activations (`SPARQ_Q8=0`): int8 activations
//! would add an error of their own that the reference does not model.
//! Truncated or corrupt files give typed errors. SmolLM2's GGUF, where present, packs to int8
//! and reads back.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::{all_gpus, rng};
use llama::{check_prefill, config_json, exact_gpus, random_weights, tmp, tokens, write_hf};
use safetensors::Dtype;
use sparq::formats::WeightFormat;
use sparq::model::compress::{Compression, SparseStorage};
use sparq::model::llama::{
    CheckpointKind, DecoderOptions, LlamaConfig, LlamaDecoder, LlamaNames, LlamaWeights, Reference,
    detect, pack,
};
use sparq::model::loader::WeightFile;
use sparq::{Error, InputError};
use std::path::Path;

fn options() -> DecoderOptions {
    DecoderOptions {
        kv_tokens: Some(128),
        ..DecoderOptions::default()
    }
}

/// The weights of the packed file at `path` as the kernels multiply by them.
fn stored_weights(path: &Path, c: &LlamaConfig) -> LlamaWeights {
    let file = WeightFile::open(path).unwrap();
    LlamaNames::default()
        .tensors(c)
        .into_iter()
        .map(|(name, shape)| {
            let v = match shape[..] {
                [n, k] => file
                    .matrix(&name, n, k, WeightFormat::F32)
                    .unwrap()
                    .dequantize(),
                _ => file.floats(&name, &shape).unwrap(),
            };
            (name, (shape, v))
        })
        .collect()
}

fn compression(format: &str, prune: Option<&str>) -> Compression {
    Compression {
        format: WeightFormat::parse(format).unwrap(),
        sparse: prune.map(|p| SparseStorage::parse(p).unwrap()),
    }
}

#[test]
fn packed_decoders_match_the_reference_on_their_stored_weights() {
    let mut r = rng("llama pack");
    for (arch, tied) in [("LlamaForCausalLM", false), ("Qwen2ForCausalLM", true)] {
        let json = config_json(arch, tied);
        let config = LlamaConfig::from_hf_config(&json).unwrap();
        let dir = tmp(&format!("pack-{arch}"));
        write_hf(
            &dir,
            &json,
            &random_weights(&config, &mut r, Dtype::F32),
            Dtype::F32,
            1,
        );
        let prompt = tokens(&mut r, 21, config.vocab_size);
        let mut cases = vec![
            ("int8", None, "int8"),
            ("int4", None, "int4g32"),
            ("int8", Some("2:4"), "2:4-int8"),
            ("f16", Some("magnitude:0.5"), "csr-f16"),
        ];
        // The binary and ternary formats on one architecture only: the file and loader paths
        // are the same for both, and every format costs pipelines to compile.
        if !tied {
            cases.extend([
                ("ternary", None, "ternaryg128"),
                ("ternary16", None, "ternary16g160"),
                ("binarym", None, "binaryg128m"),
            ]);
        }
        for (format, prune, linear_format) in cases {
            let what = format!("{arch} {format} {prune:?}");
            let out = dir.join(format!("packed-{format}-{}.safetensors", prune.is_some()));
            let (c, floats, linears, report) =
                pack::pack(&dir, &compression(format, prune), None, |_, _, _| {}).unwrap();
            assert_eq!(c, config, "{what}");
            assert_eq!(report.layers, linears.len(), "{what}");
            pack::write(&out, &c, &floats, &linears).unwrap();
            assert_eq!(detect(&out).unwrap(), CheckpointKind::Sparq, "{what}");
            // The linear layers carry the asked format; the embedding stays dense.
            let file = WeightFile::open(&out).unwrap();
            let names = LlamaNames::default();
            let q = names
                .linear(0, sparq::model::llama::LlamaLinear::Q)
                .weight();
            let (qn, qk) = (config.q_width(), config.hidden_size);
            let qw = file.matrix(&q, qn, qk, WeightFormat::F32).unwrap();
            assert_eq!(qw.format_name(), linear_format, "{what}");
            let e = file
                .matrix(&names.embedding(), config.vocab_size, qk, WeightFormat::F32)
                .unwrap();
            assert!(
                matches!(e, sparq::weights::LayerWeights::Dense(_)),
                "{what}"
            );
            let reference = Reference::new(config.clone(), stored_weights(&out, &config)).unwrap();
            for gpu in exact_gpus() {
                let what = format!("{what} on {}", gpu.caps.name);
                // A format asked for at load time does not re-quantize packed weights.
                let asked = DecoderOptions {
                    format: Some(WeightFormat::F32),
                    ..options()
                };
                let lm = LlamaDecoder::open(&out, &gpu, asked).unwrap();
                assert!(
                    lm.formats().iter().any(|f| f.as_str() == linear_format),
                    "{what}: {:?}",
                    lm.formats()
                );
                check_prefill(&lm, &reference, &prompt, &what);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn sparq_error(path: &Path) -> Error {
    let gpu = &all_gpus()[0];
    match LlamaDecoder::from_sparq(path, gpu, options()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_or_corrupt_packed_files_give_typed_errors() {
    let mut r = rng("llama pack errors");
    let json = config_json("LlamaForCausalLM", false);
    let config = LlamaConfig::from_hf_config(&json).unwrap();
    let dir = tmp("pack-errors");
    write_hf(
        &dir,
        &json,
        &random_weights(&config, &mut r, Dtype::F32),
        Dtype::F32,
        1,
    );
    let (c, floats, linears, _) =
        pack::pack(&dir, &compression("int8", None), None, |_, _, _| {}).unwrap();
    let good = dir.join("good.safetensors");
    pack::write(&good, &c, &floats, &linears).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.join("bad.safetensors");

    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    let e = sparq_error(&bad);
    assert!(
        matches!(e, Error::Input(InputError::SafeTensors(_))),
        "truncated: {e}"
    );

    let mut garbled = bytes.clone();
    garbled[8..24].copy_from_slice(b"}}}}}}}}}}}}}}}}");
    std::fs::write(&bad, &garbled).unwrap();
    let e = sparq_error(&bad);
    assert!(
        matches!(e, Error::Input(InputError::SafeTensors(_))),
        "garbled header: {e}"
    );

    // A linear weight missing from the file.
    let down = LlamaNames::default()
        .linear(1, sparq::model::llama::LlamaLinear::Down)
        .weight();
    let fewer: Vec<_> = linears
        .iter()
        .filter(|(n, _)| *n != down)
        .cloned()
        .collect();
    pack::write(&bad, &c, &floats, &fewer).unwrap();
    match sparq_error(&bad) {
        Error::Input(InputError::MissingTensor { tensor, .. }) => assert_eq!(tensor, down),
        e => panic!("missing weight: {e}"),
    }

    // A packed weight whose words do not match its description.
    let mut wrong = linears.clone();
    let slot = wrong.iter_mut().find(|(n, _)| *n == down).unwrap();
    let sparq::weights::LayerWeights::Dense(p) = &mut slot.1 else {
        panic!("dense int8 expected")
    };
    p.data.truncate(p.data.len() - p.row_words());
    p.n -= 1;
    pack::write(&bad, &c, &floats, &wrong).unwrap();
    match sparq_error(&bad) {
        Error::Input(InputError::BadTensor { tensor, .. }) => assert_eq!(tensor, down),
        e => panic!("wrong packed shape: {e}"),
    }

    // A float checkpoint is not a sparq file, and a bad config in one is refused.
    let e = sparq_error(&dir.join("model.safetensors"));
    assert!(
        matches!(e, Error::Input(InputError::Config(_))),
        "not sparq: {e}"
    );
    let mut bad_config = c.clone();
    bad_config.num_heads = 5;
    pack::write(&bad, &bad_config, &floats, &linears).unwrap();
    let e = sparq_error(&bad);
    assert!(
        matches!(e, Error::Input(InputError::Config(_))),
        "bad config: {e}"
    );
    // The encoder runtime refuses a decoder file, naming the decoder.
    let gpu = &all_gpus()[0];
    match sparq::model::Model::load(&good, gpu) {
        Err(e @ Error::Input(InputError::Config(_))) => {
            assert!(e.to_string().contains("LlamaDecoder"), "{e}")
        }
        Err(e) => panic!("Model::load of a decoder: {e}"),
        Ok(_) => panic!("Model::load of a decoder loaded"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn smollm2_gguf_packs_to_int8_and_reads_back() {
    let gguf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct/model.gguf");
    if !gguf.exists() {
        eprintln!("skipping: {} is not there", gguf.display());
        return;
    }
    let dir = tmp("pack-smollm2");
    let out = dir.join("smollm2-int8.safetensors");
    let (c, floats, linears, report) =
        pack::pack(&gguf, &compression("int8", None), None, |_, _, _| {}).unwrap();
    assert_eq!(report.formats, vec!["int8".to_string()]);
    pack::write(&out, &c, &floats, &linears).unwrap();
    let file = sparq::gguf::Gguf::open(&gguf).unwrap();
    assert_eq!(c, LlamaConfig::from_gguf(&file).unwrap());
    let packed = WeightFile::open(&out).unwrap();
    assert_eq!(pack_config(&packed), c);
    // Every tensor reads back as written.
    for (name, w) in &linears {
        let back = packed
            .matrix(name, w.n(), w.k(), WeightFormat::F32)
            .unwrap();
        let (sparq::weights::LayerWeights::Dense(a), sparq::weights::LayerWeights::Dense(b)) =
            (&back, w)
        else {
            panic!("{name}: not dense")
        };
        assert!(
            a.format == b.format && a.data == b.data && a.scales == b.scales,
            "{name}"
        );
    }
    for (name, shape, v) in &floats {
        assert_eq!(&packed.floats(name, shape).unwrap(), v, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn pack_config(file: &WeightFile) -> LlamaConfig {
    sparq::model::llama::hf::sparq_config(file).unwrap()
}
