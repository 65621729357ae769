//! Packed decoders carry their tokenizer (`model::llama::tokenizer_file`): a tiny GGUF
//! decoder packed to a sparq file, moved alone to another folder, generates the same tokens
//! with the tokenizer inside the file as the GGUF does with its own; re-packing keeps it;
//! `--tokenizer` (explicit) wins; a file with none, or with a corrupt one, is a typed error
//! naming the places looked at or the file.

mod common;
#[path = "common/tiny_gguf.rs"]
mod tiny_gguf;

use sparq::formats::WeightFormat;
use sparq::model::compress::Compression;
use sparq::model::generate::{GenerateParams, Generator};
use sparq::model::llama::tokenizer_file::{self, TOKENIZER_GGUF};
use sparq::model::llama::{DecoderOptions, LlamaDecoder, pack};
use sparq::model::sampling::SamplingParams;
use sparq::{Error, Gpu, InputError, TokenizerError};
use std::path::{Path, PathBuf};

fn options() -> DecoderOptions {
    DecoderOptions {
        kv_tokens: Some(64),
        ..DecoderOptions::default()
    }
}

/// Packs `source` as f32 into `out`, carrying `tokenizer` (as `sparq pack` does).
fn pack_to(source: &Path, explicit: Option<&Path>, out: &Path) {
    let carried = tokenizer_file::for_pack(source, explicit).unwrap();
    let (c, floats, linears, _) = pack::pack(
        source,
        &Compression::dense(WeightFormat::F32),
        None,
        |_, _, _| {},
    )
    .unwrap();
    tokenizer_file::write(out, &c, &floats, &linears, carried).unwrap();
}

/// The greedy continuation of `prompt` by the decoder at `model`, with its tokenizer as
/// `decoder_codec` finds it: (prompt ids, generated ids, text).
fn generate(gpu: &Gpu, model: &Path, prompt: &str) -> (Vec<u32>, Vec<u32>, String) {
    let lm = LlamaDecoder::open(model, gpu, options()).unwrap();
    let codec = tokenizer_file::decoder_codec(model, None).unwrap();
    let ids = codec.encode(prompt, false).unwrap();
    let params = GenerateParams {
        max_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateParams::default()
    };
    let done = Generator::new(&lm, Some(&codec))
        .generate(&ids, &params, |_| {})
        .unwrap();
    (ids, done.tokens, done.text)
}

fn tokenizer_error(r: sparq::Result<impl Sized>) -> TokenizerError {
    match r {
        Err(Error::Input(InputError::Tokenizer(e))) => e,
        Err(e) => panic!("not a tokenizer error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

struct Files {
    _dir: tempfile::TempDir,
    gguf: PathBuf,
    bare: PathBuf,
    dir: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf::gguf_bytes(true)).unwrap();
    let bare = dir.path().join("bare.gguf");
    std::fs::write(&bare, tiny_gguf::gguf_bytes(false)).unwrap();
    Files {
        gguf,
        bare,
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

#[test]
fn a_packed_gguf_decoder_alone_generates_as_the_gguf_does() {
    let f = files();
    let gpu = common::all_gpus().remove(0);
    let first = f.dir.join("packed.safetensors");
    pack_to(&f.gguf, None, &first);
    let alone = tempfile::tempdir().unwrap();
    let packed = alone.path().join("moved.safetensors");
    std::fs::rename(&first, &packed).unwrap();
    let want = generate(&gpu, &f.gguf, "hello world");
    assert_eq!(want.0, [14, 19]);
    assert!(!want.1.is_empty(), "the tiny model generated nothing");
    assert_eq!(generate(&gpu, &packed, "hello world"), want);
    // A packed file of the packed file carries it on.
    let again = alone.path().join("again.safetensors");
    pack_to(&packed, None, &again);
    assert_eq!(generate(&gpu, &again, "hello world"), want);
}

#[test]
fn the_named_tokenizer_is_stored_and_none_is_a_typed_error_naming_the_places() {
    let f = files();
    let bare = f.dir.join("bare.safetensors");
    pack_to(&f.bare, None, &bare);
    let looked = match tokenizer_error(tokenizer_file::decoder_codec(&bare, None)) {
        TokenizerError::NoDecoderTokenizer { looked } => looked,
        e => panic!("{e}"),
    };
    assert_eq!(looked.len(), 3, "{looked:?}");
    assert!(looked[0].contains("--tokenizer"), "{looked:?}");
    assert!(
        looked[1].contains(bare.to_str().unwrap()) && looked[1].contains(TOKENIZER_GGUF),
        "{looked:?}"
    );
    // A GGUF without tokenizer metadata cannot be named; one with it is stored.
    let e = tokenizer_error(tokenizer_file::for_pack(&f.bare, Some(&f.bare)));
    assert!(e.to_string().contains("bare.gguf"), "{e}");
    let named = f.dir.join("named.safetensors");
    pack_to(&f.bare, Some(&f.gguf), &named);
    let codec = tokenizer_file::decoder_codec(&named, None).unwrap();
    assert_eq!(codec.encode("hello world!", false).unwrap(), [14, 19, 10]);
    // The explicit one wins over the carried one (here the same vocabulary, from another file).
    let codec = tokenizer_file::decoder_codec(&named, Some(&f.gguf)).unwrap();
    assert_eq!(codec.vocab_size(), tiny_gguf::TOKENS.len());
}

#[test]
fn a_corrupt_carried_tokenizer_is_a_typed_error_naming_the_file() {
    let f = files();
    let c = tiny_gguf::config();
    let (_, floats, linears, _) = pack::pack(
        &f.gguf,
        &Compression::dense(WeightFormat::F32),
        None,
        |_, _, _| {},
    )
    .unwrap();
    let good = tokenizer_file::for_pack(&f.gguf, None).unwrap().unwrap();
    let no_tokens = {
        let meta = tiny_gguf::tokenizer_metadata();
        let kept = meta.iter().filter(|(k, _)| *k != "tokenizer.ggml.tokens");
        sparq::gguf::metadata_only(kept.map(|(k, v)| (*k, v)))
    };
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("not GGUF", b"not a GGUF file at all".to_vec()),
        ("no tokens", no_tokens),
    ] {
        let path = f.dir.join("corrupt.safetensors");
        tokenizer_file::write(&path, &c, &floats, &linears, Some(bytes)).unwrap();
        // The decoder itself loads: only text needs the tokenizer.
        let gpu = common::all_gpus().remove(0);
        LlamaDecoder::open(&path, &gpu, options()).unwrap();
        match tokenizer_error(tokenizer_file::decoder_codec(&path, None)) {
            TokenizerError::Unreadable { file, reason } => {
                assert!(file.contains(path.to_str().unwrap()), "{what}: {file}");
                assert!(file.contains(TOKENIZER_GGUF), "{what}: {file}");
                assert!(!reason.is_empty(), "{what}");
            }
            e => panic!("{what}: {e}"),
        }
        // Re-packing refuses to copy it on.
        let e = tokenizer_error(tokenizer_file::for_pack(&path, None));
        assert!(e.to_string().contains("corrupt.safetensors"), "{what}: {e}");
    }
}
