//! Data parallel over several devices with the scheduler: one replica of all-MiniLM-L6-v2
//! (unpacked into models/ by scripts/setup.sh) per device, the sentences split between them
//! by measured throughput, and the results checked against one device alone.
//!
//!     cargo run --release --example cluster -- [ADAPTERS] [MODEL_DIR]
//!
//! ADAPTERS: `all` (the default: every adapter, e.g. lavapipe and llvmpipe on a machine
//! without a GPU), a list such as `0,1`, or `0,0` for two devices on one adapter.

use sparq::formats::WeightFormat;
use sparq::model::{LoadOptions, cosine};
use sparq::schedule::{Cluster, ModelReplica};
use std::path::PathBuf;

fn main() -> sparq::Result<()> {
    let mut args = std::env::args().skip(1);
    let adapters = args.next().unwrap_or_else(|| "all".into());
    let path = args.next().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
        PathBuf::from,
    );
    let texts: Vec<String> = (0..16)
        .map(|i| format!("Sentence number {i} is about topic {}.", i % 5))
        .collect();
    let options = LoadOptions::default().format(WeightFormat::F16);
    // Micro-batches of 4 sentences; the first 4 measure each device's speed.
    let mut cluster = Cluster::open(
        &adapters,
        |gpu| ModelReplica::load(&path, gpu, options.clone(), 4),
        &texts[..4],
    )?;
    println!("{} devices", cluster.len());
    let out = cluster.run(&texts)?;
    println!("{}", out.report.markdown());

    // Each row is computed whole on one device, batch-invariant (however the batch is
    // split): the vectors agree with the first device's alone up to the last bits in which
    // two adapters' arithmetic differs.
    let first = adapters.split(',').next().unwrap_or("0");
    let first = if first == "all" { "0" } else { first };
    let mut alone = Cluster::open(
        first,
        |gpu| ModelReplica::load(&path, gpu, options.clone(), 4),
        &[],
    )?;
    let reference = alone.run(&texts)?;
    let worst = out
        .outputs
        .iter()
        .zip(&reference.outputs)
        .map(|(a, b)| cosine(a, b))
        .fold(1.0f32, f32::min);
    println!(
        "{} vectors; lowest cosine to one device alone: {worst:.6}",
        out.outputs.len()
    );
    Ok(())
}
