//! Bytes (lossy UTF-8) through the text paths of the models: MiniLM's `tokenizer.json` as the
//! BERT model tokenises a text batch (truncation included), and the SmolLM2 GGUF's text
//! codec (encode, decode, the chat template with the bytes as a message).
//!
//! `SPARQ_FUZZ_MINILM` (a Hugging Face model folder) and `SPARQ_FUZZ_GGUF` (a GGUF file)
//! override the models under `models/` at the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();
use sparq::gguf::Gguf;
use sparq::model::config::Architecture;
use sparq::model::text::{ChatMessage, TextCodec};
use std::path::PathBuf;
use std::sync::OnceLock;

fn model_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(default)
    })
}

struct Models {
    bert: tokenizers::Tokenizer,
    max_len: usize,
    codec: TextCodec,
}

fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let dir = model_path("SPARQ_FUZZ_MINILM", "models/all-MiniLM-L6-v2");
        let Architecture::Bert(c) = Architecture::from_hf_dir(&dir).expect("MiniLM's config")
        else {
            panic!("{} is not a BERT model", dir.display())
        };
        let bert = sparq::model::load_tokenizer(&dir.join("tokenizer.json"), &c)
            .expect("MiniLM's tokenizer");
        let max_len = c.max_seq_length.unwrap_or(c.max_position_embeddings);
        let gguf = model_path("SPARQ_FUZZ_GGUF", "models/SmolLM2-135M-Instruct/model.gguf");
        let file = Gguf::open(&gguf).expect("the SmolLM2 GGUF");
        let codec = sparq::model::llama::gguf::text_codec(&file).expect("its text codec");
        Models {
            bert,
            max_len,
            codec,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let m = models();
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(enc) = sparq::model::encode(&m.bert, std::slice::from_ref(&text)) {
        for (ids, types) in &enc {
            assert!(
                ids.len() <= m.max_len,
                "{} tokens over {}",
                ids.len(),
                m.max_len
            );
            assert_eq!(ids.len(), types.len());
        }
    }
    for parse_special in [false, true] {
        if let Ok(ids) = m.codec.encode(&text, parse_special) {
            let _ = m.codec.decode(&ids);
        }
    }
    let messages = [
        ChatMessage::new("system", "You are terse."),
        ChatMessage::new("user", text.as_str()),
    ];
    let _ = m.codec.render_chat(&messages, true);
    let _ = m.codec.encode_chat(&messages, true);
    // The bytes as token ids too (decode reads ids a client may send).
    let ids: Vec<u32> = data
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let _ = m.codec.decode(&ids);
});
