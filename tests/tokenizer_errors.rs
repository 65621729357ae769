//! The text codec on small synthetic GGUF files (written by `sparq::gguf::writer`): a working
//! tokenizer, and one typed error for each way its metadata can be missing, mistyped or
//! inconsistent, or its chat template broken.

#[path = "common/tiny_gguf.rs"]
mod tiny_gguf;

use sparq::gguf::writer::Writer;
use sparq::gguf::{Array, Gguf, Value};
use sparq::model::llama::gguf::text_codec;
use sparq::model::text::{ChatMessage, TextCodec};
use sparq::{Error, InputError, TokenizerError};

/// A byte-level vocabulary of a few words (`Ġ` is GPT-2's character for a space), two control
/// tokens, and merges building `hello`, `Ġworld` and `Ġhello`.
fn tokens() -> Vec<String> {
    tiny_gguf::TOKENS.map(String::from).to_vec()
}

fn merges() -> Vec<String> {
    [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "Ġ hello",
    ]
    .map(String::from)
    .to_vec()
}

fn types(n: usize) -> Vec<i32> {
    (0..n).map(|i| if i < 2 { 3 } else { 1 }).collect()
}

/// The metadata of a good file; tests change one key.
fn good() -> Vec<(&'static str, Value)> {
    let t = tokens();
    vec![
        ("tokenizer.ggml.model", Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Value::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::Str(t.clone()))),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(types(t.len()))),
        ),
        ("tokenizer.ggml.merges", Value::Array(Array::Str(merges()))),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ]
}

fn codec(meta: &[(&str, Value)]) -> sparq::Result<TextCodec> {
    let mut w = Writer::new();
    for (k, v) in meta {
        w.kv(k, v.clone());
    }
    text_codec(&Gguf::from_bytes(w.to_bytes(), "synthetic.gguf")?)
}

fn with(key: &str, value: Option<Value>) -> Vec<(&'static str, Value)> {
    let mut meta = good();
    let i = meta.iter().position(|(k, _)| *k == key);
    match (i, value) {
        (Some(i), Some(v)) => meta[i].1 = v,
        (Some(i), None) => {
            meta.remove(i);
        }
        (None, Some(v)) => meta.push((Box::leak(key.to_string().into_boxed_str()), v)),
        (None, None) => {}
    }
    meta
}

fn tokenizer_error(r: sparq::Result<TextCodec>) -> TokenizerError {
    match r {
        Err(Error::Input(InputError::Tokenizer(e))) => e,
        Err(e) => panic!("not a tokenizer error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn a_synthetic_tokenizer_encodes_decodes_and_adds_bos_when_asked() {
    let c = codec(&good()).unwrap();
    assert_eq!(c.encode("hello world!", false).unwrap(), vec![14, 19, 10]);
    assert_eq!(c.encode("<|im_start|>hello", true).unwrap(), vec![0, 14]);
    assert_ne!(c.encode("<|im_start|>hello", false).unwrap()[0], 0);
    assert_eq!(
        c.decode(&[0, 14, 20, 1]).unwrap(),
        "<|im_start|>hello hello<|im_end|>"
    );
    // `Ã©` is the byte-level spelling of é's two bytes.
    assert_eq!(c.decode(&[21, 22]).unwrap(), "é");
    assert_eq!(c.decode(&[21]).unwrap(), "\u{fffd}");
    let c = codec(&with(
        "tokenizer.ggml.add_bos_token",
        Some(Value::Bool(true)),
    ))
    .unwrap();
    assert_eq!(c.encode("hello", false).unwrap(), vec![0, 14]);
    assert_eq!(c.tokenize("hello", false, false).unwrap(), vec![14]);
    assert!(c.is_eos(1) && !c.is_eos(0));
    // With BOS added by encode, the template's leading BOS text is not written twice.
    let meta = with(
        "tokenizer.chat_template",
        Some(Value::Str(
            "{{ bos_token }}{{ messages[0]['content'] }}".into(),
        )),
    );
    let meta: Vec<_> = meta
        .into_iter()
        .map(|(k, v)| match k {
            "tokenizer.ggml.add_bos_token" => (k, Value::Bool(true)),
            _ => (k, v),
        })
        .collect();
    let c = codec(&meta).unwrap();
    let m = [ChatMessage::new("user", "hello")];
    assert_eq!(c.render_chat(&m, false).unwrap(), "hello");
    assert_eq!(c.encode_chat(&m, false).unwrap(), vec![0, 14]);
}

#[test]
fn a_file_without_a_template_gets_chatml() {
    let c = codec(&good()).unwrap();
    let m = [ChatMessage::new("user", "hello")];
    assert_eq!(
        c.render_chat(&m, true).unwrap(),
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn a_broken_or_refusing_template_is_a_template_error() {
    let bad = with(
        "tokenizer.chat_template",
        Some(Value::Str("{% for m in messages %}{{ m.content }".into())),
    );
    assert!(matches!(
        tokenizer_error(codec(&bad)),
        TokenizerError::Template(_)
    ));
    let refusing = with(
        "tokenizer.chat_template",
        Some(Value::Str(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
                .into(),
        )),
    );
    let c = codec(&refusing).unwrap();
    let e = c
        .render_chat(&[ChatMessage::new("system", "x")], true)
        .unwrap_err();
    match e {
        Error::Input(InputError::Tokenizer(TokenizerError::Template(m))) => {
            assert!(m.contains("user first"), "{m}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        c.render_chat(&[ChatMessage::new("user", "x")], true)
            .unwrap(),
        ""
    );
}

#[test]
fn missing_keys_are_named() {
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
    ] {
        assert_eq!(
            tokenizer_error(codec(&with(key, None))),
            TokenizerError::Missing { key: key.into() },
            "{key}"
        );
    }
}

#[test]
fn keys_of_the_wrong_type_are_named() {
    let cases = [
        ("tokenizer.ggml.model", Value::U32(2)),
        ("tokenizer.ggml.pre", Value::Bool(true)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(Array::I32(vec![1, 2])),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::Str(tokens())),
        ),
        ("tokenizer.ggml.merges", Value::Str("h e".into())),
        ("tokenizer.ggml.bos_token_id", Value::Str("0".into())),
        ("tokenizer.ggml.eos_token_id", Value::I32(-1)),
        ("tokenizer.ggml.add_bos_token", Value::U8(1)),
        ("tokenizer.chat_template", Value::U32(0)),
    ];
    for (key, v) in cases {
        match tokenizer_error(codec(&with(key, Some(v)))) {
            TokenizerError::WrongType { key: k, .. } => assert_eq!(k, key),
            e => panic!("{key}: {e}"),
        }
    }
}

#[test]
fn inconsistent_metadata_has_its_own_error() {
    let short = Value::Array(Array::I32(types(tokens().len() - 1)));
    assert_eq!(
        tokenizer_error(codec(&with("tokenizer.ggml.token_type", Some(short)))),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.token_type".into(),
            len: tokens().len() - 1,
            tokens: tokens().len(),
        }
    );
    for merge in ["h x", "hx", "e h"] {
        let mut m = merges();
        m.push(merge.into());
        let e = tokenizer_error(codec(&with(
            "tokenizer.ggml.merges",
            Some(Value::Array(Array::Str(m))),
        )));
        assert!(
            matches!(&e, TokenizerError::BadMerge { merge: got, .. } if got == merge),
            "{merge}: {e}"
        );
    }
    let mut dup = tokens();
    dup.push("he".into());
    let meta = with("tokenizer.ggml.tokens", Some(Value::Array(Array::Str(dup))));
    let meta = with_types(meta, tokens().len() + 1);
    assert_eq!(
        tokenizer_error(codec(&meta)),
        TokenizerError::DuplicateToken {
            id: tokens().len(),
            token: "he".into()
        }
    );
    let far = Value::U32(tokens().len() as u32);
    assert!(matches!(
        tokenizer_error(codec(&with("tokenizer.ggml.eos_token_id", Some(far)))),
        TokenizerError::BadTokenId { .. }
    ));
    for (key, value) in [
        ("tokenizer.ggml.model", "llama"),
        ("tokenizer.ggml.pre", "nonesuch"),
    ] {
        assert!(matches!(
            tokenizer_error(codec(&with(key, Some(Value::Str(value.into()))))),
            TokenizerError::Unsupported { key: k, .. } if k == key
        ));
    }
    let c = codec(&good()).unwrap();
    assert!(c.decode(&[tokens().len() as u32]).is_err());
}

fn with_types(mut meta: Vec<(&'static str, Value)>, n: usize) -> Vec<(&'static str, Value)> {
    for (k, v) in &mut meta {
        if *k == "tokenizer.ggml.token_type" {
            *v = Value::Array(Array::I32(types(n)));
        }
    }
    meta
}
