//! Compresses a model from Rust, as `sparq pack --format f16 --prune magnitude:0.1` does:
//! prunes the smallest 10 % of every linear weight of all-MiniLM-L6-v2 (unpacked into models/
//! by scripts/setup.sh), stores the kept values as f16 (CSR), writes one self-describing file,
//! reloads it and compares its sentence vectors with the float model's. (Pruning more,
//! or 2:4, needs calibration to keep a small encoder's vectors: `sparq pack --calibrate`.)
//!
//!     cargo run --release --example pack -- [MODEL_DIR] [OUTPUT.safetensors]
//!
//! Without OUTPUT the file goes to a temporary folder, removed at the end.

use sparq::Gpu;
use sparq::formats::WeightFormat;
use sparq::model::compress::{self, Compression, SparseStorage};
use sparq::model::config::Architecture;
use sparq::model::loader::{self, WeightFile};
use sparq::model::{Batch, Model, cosine};
use std::collections::HashMap;
use std::path::PathBuf;

fn main() -> sparq::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
        PathBuf::from,
    );
    let tmp = tempfile::tempdir()?;
    let output = args
        .next()
        .map_or_else(|| tmp.path().join("model.safetensors"), PathBuf::from);

    // Prune and quantize: 90 % of the weights kept, their values as f16.
    let file = WeightFile::open(&dir.join("model.safetensors"))?;
    let arch = Architecture::from_hf_dir(&dir)?;
    let compression = Compression {
        format: WeightFormat::F16,
        sparse: Some(SparseStorage::Csr { sparsity: 0.1 }),
    };
    compression.check()?;
    let (floats, linears, report) = compress::pack_model(&file, &arch, &compression, None)?;
    // The architecture goes into the file's metadata: it needs no config.json.
    let meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    loader::save(&output, &floats, &linears, meta)?;
    // Text input needs the tokenizer beside the file.
    let beside = output.with_file_name("tokenizer.json");
    if !beside.exists() {
        std::fs::copy(dir.join("tokenizer.json"), &beside)?;
    }
    let bytes = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "packed {} linear weights as {}: {:.1} MB → {:.1} MB, {:.0} % zeros, \
         relative weight error {:.4}",
        report.layers,
        report.formats.join(", "),
        bytes(&dir.join("model.safetensors")) as f64 / 1e6,
        bytes(&output) as f64 / 1e6,
        100.0 * report.zeros as f64 / report.len.max(1) as f64,
        report.relative_error
    );

    // Reload both and compare what they make of the same sentences.
    let gpu = Gpu::from_env()?;
    let float = Model::load(&dir, &gpu)?;
    let packed = Model::load(&output, &gpu)?;
    println!(
        "reloaded: {} layers as {}",
        report.layers,
        packed.layer_formats().join(", ")
    );
    let sentences = Batch::text([
        "A man is eating food.",
        "The new movie is awesome.",
        "A cheetah chases its prey across a field.",
    ]);
    let (a, b) = (float.forward(&sentences)?, packed.forward(&sentences)?);
    for (i, (x, y)) in a.rows().zip(b.rows()).enumerate() {
        println!("sentence {i}: cosine(float, packed) = {:.4}", cosine(x, y));
    }
    Ok(())
}
