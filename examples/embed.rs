//! Embeds sentences with all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh), as
//! sentence-transformers' `model.encode` would, and prints how similar each pair is.
//!
//!     cargo run --release --example embed -- "A cat sits." "A kitten is sitting." "Stocks fell."
//!
//! `SPARQ_MODEL` names another encoder (a model directory or a `sparq pack` file).

use sparq::Gpu;
use sparq::formats::WeightFormat;
use sparq::model::{Batch, LoadOptions, Model, cosine};
use std::path::PathBuf;

fn main() -> sparq::Result<()> {
    let mut sentences: Vec<String> = std::env::args().skip(1).collect();
    if sentences.is_empty() {
        sentences = vec![
            "A man is eating food.".into(),
            "Someone is having a meal.".into(),
            "The stock market fell sharply today.".into(),
        ];
    }
    let path = std::env::var_os("SPARQ_MODEL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
        PathBuf::from,
    );
    let gpu = Gpu::from_env()?;
    let options = LoadOptions::default().format(WeightFormat::F16);
    let model = Model::load_with(&path, &gpu, options)?;
    let out = model.forward(&Batch::text(&sentences))?;
    println!(
        "{} sentences → {}-dimensional vectors on {}",
        out.len(),
        out.cols,
        gpu.caps.name
    );
    let rows: Vec<&[f32]> = out.rows().collect();
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let c = cosine(rows[i], rows[j]);
            println!("{c:+.3}  {:?} ~ {:?}", sentences[i], sentences[j]);
        }
    }
    Ok(())
}
