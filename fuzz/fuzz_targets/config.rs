//! Bytes (lossy UTF-8) as an architecture: sparq's JSON, and Hugging Face's `config.json`
//! with, after the first NUL byte, a `sentence_bert_config.json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();
use sparq::model::config::Architecture;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = Architecture::from_sparq_json(&text) {
        a.validate().expect("a parsed architecture is valid");
    }
    let (config, sentence_bert) = match text.split_once('\0') {
        Some((c, s)) => (c, Some(s)),
        None => (&*text, None),
    };
    if let Ok(a) = Architecture::from_hf_json(config, sentence_bert) {
        a.validate().expect("a parsed architecture is valid");
    }
});
