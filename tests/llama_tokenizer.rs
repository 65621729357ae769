//! SmolLM2's tokenizer against llama.cpp's: the ids llama.cpp gives for a set of hard strings
//! (tests/fixtures/smollm2_llamacpp_tokens.json, written by
//! scripts/smollm2_llamacpp_tokens.py with llama.cpp's `llama-tokenize`), the chat template,
//! and incremental detokenisation.

use rand::{Rng, SeedableRng};
use serde::Deserialize;
use sparq::gguf::Gguf;
use sparq::model::llama::gguf::text_codec;
use sparq::model::text::{ChatMessage, TextCodec, TokenStream};

fn smollm2() -> Option<TextCodec> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/SmolLM2-135M-Instruct/model.gguf"
    );
    if !std::path::Path::new(path).is_file() {
        eprintln!("skipping: {path} is missing (bash scripts/setup.sh fetches it)");
        return None;
    }
    Some(text_codec(&Gguf::open(path).unwrap()).unwrap())
}

#[derive(Deserialize)]
struct Fixture {
    add_bos_token: bool,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    parse_special: Vec<u32>,
    no_parse_special: Vec<u32>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/smollm2_llamacpp_tokens.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smollm2_ids_are_llama_cpps() {
    let Some(codec) = smollm2() else { return };
    let fx = fixture();
    assert_eq!(codec.add_bos(), fx.add_bos_token);
    assert!(fx.cases.len() >= 40);
    let mut wrong = Vec::new();
    for case in &fx.cases {
        for (parse, want) in [(true, &case.parse_special), (false, &case.no_parse_special)] {
            let got = codec.encode(&case.text, parse).unwrap();
            if &got != want {
                wrong.push(format!(
                    "{:?} (parse_special {parse}):\n  sparq     {got:?}\n  llama.cpp {want:?}",
                    case.text
                ));
            }
            assert_eq!(codec.decode(&got).unwrap(), case.text, "round trip");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn smollm2_special_tokens_bos_and_eos() {
    let Some(codec) = smollm2() else { return };
    let im_start = codec.encode("<|im_start|>", true).unwrap();
    assert_eq!(im_start, vec![1]);
    assert_eq!(codec.bos(), Some(1));
    assert_eq!(codec.eos(), Some(2));
    // Written as text, the control token is several ordinary tokens.
    assert!(codec.encode("<|im_start|>", false).unwrap().len() > 1);
    // EOS and the other end-of-turn token llama.cpp stops at, and nothing else.
    assert!(codec.is_eos(2) && codec.is_eos(0));
    assert!(!codec.is_eos(1) && !codec.is_eos(3));
    assert!((0..17).all(|id| codec.is_control(id)) && !codec.is_control(17));
    fn shareable<T: Send + Sync + Clone>(_: &T) {}
    shareable(&codec);
    assert_eq!(codec.decode(&[1, 2]).unwrap(), "<|im_start|><|im_end|>");
    assert!(codec.decode(&[codec.vocab_size() as u32]).is_err());
}

#[test]
fn smollm2_chat_template_renders_like_transformers() {
    let Some(codec) = smollm2() else { return };
    let conv = [
        ChatMessage::new("system", "You are a terse assistant."),
        ChatMessage::new("user", "What is the capital of France?"),
    ];
    // The model's template read by hand (and checked against jinja2 with transformers'
    // settings): each turn is `<|im_start|>ROLE\nCONTENT<|im_end|>\n`, then the opening of
    // the assistant's turn.
    let want = "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n\
                <|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
                <|im_start|>assistant\n";
    assert_eq!(codec.render_chat(&conv, true).unwrap(), want);
    let without = codec.render_chat(&conv, false).unwrap();
    assert_eq!(
        without,
        want.strip_suffix("<|im_start|>assistant\n").unwrap()
    );
    // Without a system turn the template writes its own default one.
    let user_only = codec.render_chat(&conv[1..], true).unwrap();
    assert_eq!(
        user_only,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let ids = codec.encode_chat(&conv, true).unwrap();
    assert_eq!(ids[0], 1, "starts with <|im_start|>");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(codec.decode(&ids).unwrap(), want);
}

/// Everything a stream yields, pushing `ids` one at a time.
fn streamed(codec: &TextCodec, ids: &[u32]) -> (Vec<String>, String) {
    let mut stream = TokenStream::new();
    let mut parts: Vec<String> = ids
        .iter()
        .map(|&id| stream.push(codec, id).unwrap())
        .collect();
    parts.push(stream.finish());
    let all = parts.concat();
    (parts, all)
}

#[test]
fn smollm2_stream_never_splits_a_character() {
    let Some(codec) = smollm2() else { return };
    for text in [
        "emoji \u{1f642} smile \u{1f44d}\u{1f3fd}",
        "\u{4e2d}\u{6587}\u{6d4b}\u{8bd5} \u{65e5}\u{672c}\u{8a9e}",
        "family \u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}!",
    ] {
        let ids = codec.encode(text, false).unwrap();
        // The case is hard only if some token holds part of a character.
        let split = ids
            .iter()
            .any(|&id| std::str::from_utf8(codec.token_bytes(id).unwrap()).is_err());
        assert!(split, "{text:?}: no token ends mid-character");
        let (parts, all) = streamed(&codec, &ids);
        assert_eq!(all, text);
        for p in &parts {
            assert!(!p.contains('\u{fffd}'), "{text:?}: yielded {p:?}");
        }
        assert!(
            parts.iter().any(String::is_empty),
            "some token completes no character"
        );
    }
}

#[test]
fn smollm2_stream_of_random_ids_concatenates_to_decode() {
    let Some(codec) = smollm2() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let vocab = codec.vocab_size() as u32;
    // Ids that are pieces of multi-byte characters, so that random runs join and break them.
    let partial: Vec<u32> = (0..vocab)
        .filter(|&id| std::str::from_utf8(codec.token_bytes(id).unwrap()).is_err())
        .collect();
    assert!(partial.len() > 100);
    for _ in 0..300 {
        let len = rng.random_range(0..12);
        let ids: Vec<u32> = (0..len)
            .map(|_| match rng.random_bool(0.7) {
                true => partial[rng.random_range(0..partial.len())],
                false => rng.random_range(0..vocab),
            })
            .collect();
        let (parts, all) = streamed(&codec, &ids);
        assert_eq!(all, codec.decode(&ids).unwrap(), "{ids:?}");
        // After each id, what was yielded is decode of the ids so far, less at most the one
        // character still incomplete (which decode renders as U+FFFD).
        for k in 0..=ids.len() {
            let yielded = parts[..k].concat();
            let full = codec.decode(&ids[..k]).unwrap();
            let rest = full.strip_prefix(yielded.as_str());
            assert!(
                matches!(rest, Some("" | "\u{fffd}")),
                "{ids:?}[..{k}]: {yielded:?} vs {full:?}"
            );
        }
    }
}
