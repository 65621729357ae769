//! Bytes (lossy UTF-8) as the `sparq run` input JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();

fuzz_target!(|data: &[u8]| {
    let _ = sparq::model::Batch::from_json(&String::from_utf8_lossy(data));
});
