//! Bytes as a safetensors model: the header, the architecture in `sparq.config`, and the
//! host-side read of every weight (float, packed and sparse layouts) as `sparq pack` reads
//! them, float weights kept as they are. No GPU.
#![no_main]

use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();
use sparq::formats::WeightFormat;
use sparq::model::config::Architecture;
use sparq::model::loader::{CONFIG_KEY, WeightFile, quantizer};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WeightFile::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    let _ = file.names();
    let Some(config) = file.metadata(CONFIG_KEY) else {
        return;
    };
    let Ok(arch) = Architecture::from_sparq_json(config) else {
        return;
    };
    if arch.validate().is_err() {
        return;
    }
    let mut store = quantizer(WeightFormat::F32);
    let _ = arch.family().pack(&file, &mut store);
});
