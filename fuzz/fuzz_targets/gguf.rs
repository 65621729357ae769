//! Bytes as a GGUF file: the header and metadata, every tensor through the checked reads the
//! loader uses (raw bytes, the lossless mapping onto sparq formats, dequantisation), the
//! Llama configuration and text codec from the metadata. Host side only.
#![no_main]

use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();
use sparq::gguf::{Gguf, packed_weights};
use sparq::model::llama::LlamaConfig;
use sparq::model::llama::gguf::{host_weights, text_codec};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = Gguf::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    for t in file.tensors() {
        let _ = file.tensor_bytes(&t.name);
        let _ = packed_weights(&file, &t.name);
        let _ = file.dequantize(&t.name);
    }
    let _ = text_codec(&file);
    if let Ok(c) = LlamaConfig::from_gguf(&file)
        && c.validate().is_ok()
    {
        let _ = host_weights(&file, &c);
    }
});
