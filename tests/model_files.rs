//! Self-describing model files: a packed encoder carries its tokenizer, so it embeds text
//! alone wherever it is moved; `LoadOptions::tokenizer` overrides it; text without any
//! tokenizer, a corrupt one inside a file, and inputs longer than the model reads are typed
//! errors; files that are not models say what they are.

mod common;

use common::bert;
use sparq::formats::WeightFormat;
use sparq::model::compress::{self, Compression};
use sparq::model::config::Architecture;
use sparq::model::loader::{self, WeightFile};
use sparq::model::tokenizer_source::{self, TOKENIZER_KEY};
use sparq::model::{Batch, LoadOptions, Model};
use sparq::{Error, InputError, TokenizerError};
use std::collections::HashMap;
use std::path::Path;

/// A float model with its tokenizer in `dir`, packed as int4 into `out` (alone in its
/// folder), with `tokenizer` as its metadata entry (`None`: the one beside the source).
fn packed(dir: &Path, out: &Path, tokenizer: Option<String>) -> sparq::model::config::BertConfig {
    let c = bert::config();
    let mut r = common::rng("model_files");
    bert::write_model(
        &dir.join("model.safetensors"),
        &c,
        &bert::random_bert(&mut r, &c, ""),
    );
    bert::write_tokenizer(&dir.join("tokenizer.json"), &c, 0);
    let file = WeightFile::open(&dir.join("model.safetensors")).unwrap();
    let arch = Architecture::Bert(c.clone());
    let compression = Compression {
        format: WeightFormat::parse("int4").unwrap(),
        sparse: None,
    };
    let (floats, linears, _) = compress::pack_model(&file, &arch, &compression, None).unwrap();
    let text = match tokenizer {
        Some(t) => t,
        None => tokenizer_source::for_pack(&file, dir, None)
            .unwrap()
            .unwrap(),
    };
    let meta = HashMap::from([
        (loader::CONFIG_KEY.to_string(), arch.to_json()),
        (TOKENIZER_KEY.to_string(), text),
    ]);
    loader::save(out, &floats, &linears, meta).unwrap();
    c
}

fn sentences() -> Vec<String> {
    vec!["w1 w2 w3".into(), "W7 w8 w9 w10 w11".into()]
}

#[test]
fn a_moved_packed_file_embeds_text_with_the_tokenizer_inside() {
    let (src, alone) = (bert::tmp("files-src"), bert::tmp("files-alone"));
    let out = alone.join("m.safetensors");
    packed(&src, &out, None);
    assert!(!alone.join("tokenizer.json").exists());
    for gpu in common::all_gpus() {
        let m = Model::load(&out, &gpu).unwrap();
        let got = m.forward(&Batch::Text(sentences())).unwrap();
        // The source quantized to int4 at load, tokenised by its tokenizer.json beside it.
        let options = LoadOptions::default().format(WeightFormat::parse("int4").unwrap());
        let want = Model::load_with(&src, &gpu, options)
            .unwrap()
            .forward(&Batch::Text(sentences()))
            .unwrap();
        assert_eq!(got.rows, 2);
        for (a, b) in got.values.iter().zip(&want.values) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // An explicit tokenizer wins over the one inside: other ids for the same words.
        let other = alone.join("other.json");
        bert::write_tokenizer(&other, &bert::config(), 5);
        let options = LoadOptions::default().tokenizer(other);
        let m2 = Model::load_with(&out, &gpu, options).unwrap();
        let (inside, _) = m.tokenize(&sentences()).unwrap();
        let (explicit, _) = m2.tokenize(&sentences()).unwrap();
        assert_eq!(inside[0], vec![1, 2, 3]);
        assert_eq!(explicit[0], vec![6, 7, 8]);
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&alone);
}

#[test]
fn text_without_a_tokenizer_names_every_place_looked_at() {
    let dir = bert::tmp("files-none");
    let c = bert::config();
    let path = dir.join("m.safetensors");
    bert::write_model(
        &path,
        &c,
        &bert::random_bert(&mut common::rng("none"), &c, ""),
    );
    let gpu = &common::all_gpus()[0];
    let m = Model::load(&path, gpu).unwrap();
    match m.forward(&Batch::Text(sentences())) {
        Err(Error::Input(InputError::Tokenizer(TokenizerError::NotFound { looked }))) => {
            let all = looked.join(" | ");
            assert!(all.contains("--tokenizer"), "{all}");
            assert!(all.contains(&format!("{} (metadata '{TOKENIZER_KEY}')", path.display())));
            assert!(all.contains(&dir.join("tokenizer.json").display().to_string()));
        }
        other => panic!("{other:?}"),
    }
    let e = m.tokenize(&sentences()).unwrap_err().to_string();
    assert!(e.contains("--tokenizer PATH"), "{e}");
    // Token ids still run.
    m.forward(&Batch::Tokens {
        ids: vec![vec![1, 2]],
        types: None,
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_tokenizer_inside_a_file_is_refused_at_load() {
    let (src, alone) = (bert::tmp("files-bad-src"), bert::tmp("files-bad"));
    let out = alone.join("m.safetensors");
    packed(&src, &out, Some("{\"model\": 3".into()));
    let gpu = &common::all_gpus()[0];
    match Model::load(&out, gpu) {
        Err(Error::Input(InputError::Tokenizer(TokenizerError::Unreadable { file, .. }))) => {
            assert!(
                file.contains("m.safetensors") && file.contains(TOKENIZER_KEY),
                "{file}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
    // A good tokenizer named explicitly is used instead of the corrupt one.
    let options = LoadOptions::default().tokenizer(src.join("tokenizer.json"));
    let m = Model::load_with(&out, gpu, options).unwrap();
    m.forward(&Batch::Text(sentences())).unwrap();
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&alone);
}

#[test]
fn truncated_inputs_are_reported_or_refused() {
    let dir = bert::tmp("files-trunc");
    let c = bert::config();
    bert::write_model(
        &dir.join("model.safetensors"),
        &c,
        &bert::random_bert(&mut common::rng("t"), &c, ""),
    );
    bert::write_tokenizer(&dir.join("tokenizer.json"), &c, 0);
    let gpu = &common::all_gpus()[0];
    let m = Model::load(&dir, gpu).unwrap();
    let long: Vec<String> = (0..50).map(|i| format!("w{}", 1 + i % 40)).collect();
    // The last is long enough that only a prefix of it is tokenised (`prefix`).
    let texts = vec![
        "w1 w2".to_string(),
        long.join(" "),
        "w3".into(),
        long.join("  "),
        "w12 ".repeat(600),
    ];
    let enc = m.encode_text(&texts, true).unwrap();
    assert_eq!(enc.truncated, vec![1, 3, 4]);
    assert_eq!(enc.max_tokens, c.max_position_embeddings);
    assert_eq!(enc.ids[1].len(), c.max_position_embeddings);
    // Its ids give the text's own results.
    let a = m.forward(&Batch::Text(texts.clone())).unwrap();
    let b = m.forward(&enc.into_batch()).unwrap();
    assert_eq!(a.values, b.values);
    match m.encode_text(&texts, false) {
        Err(Error::Input(InputError::Tokenizer(TokenizerError::TooLong {
            row,
            tokens,
            limit,
        }))) => {
            assert_eq!((row, tokens, limit), (1, 50, c.max_position_embeddings))
        }
        other => panic!("{other:?}"),
    }
    // A text exactly the model's length is not truncated.
    let exact = long[..c.max_position_embeddings].join(" ") + "   ";
    assert!(m.encode_text(&[exact], false).unwrap().truncated.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_that_are_not_models_say_what_they_are() {
    let dir = bert::tmp("files-not-models");
    let c = bert::config();
    bert::write_tokenizer(&dir.join("tokenizer.json"), &c, 0);
    std::fs::write(dir.join("config.json"), "{\n  \"hidden_size\": 24\n}\n").unwrap();
    let mut gguf = b"GGUF\x03\0\0\0".to_vec();
    gguf.extend([0u8; 24]);
    std::fs::write(dir.join("model.gguf"), gguf).unwrap();
    let gpu = &common::all_gpus()[0];
    let err = |p: &Path| match Model::load(p, gpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} accepted", p.display()),
    };
    let e = err(&dir.join("config.json"));
    assert!(
        e.contains("is a JSON file") && e.contains("model.safetensors"),
        "{e}"
    );
    let e = err(&dir.join("tokenizer.json"));
    assert!(
        e.contains("is a tokenizer, not a model") && e.contains("--tokenizer"),
        "{e}"
    );
    let e = err(&dir.join("model.gguf"));
    assert!(
        e.contains("is a GGUF file") && e.contains("generate"),
        "{e}"
    );
    let e = err(&dir);
    assert!(
        e.contains("has no model.safetensors") && e.contains(".safetensors file"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
