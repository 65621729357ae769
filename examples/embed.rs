//! Embeds sentences with all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh) and
//! prints their cosine similarities.
//!
//!     cargo run --release --example embed -- "A cat sits." "A kitten is sitting." "Stocks fell."

use sparq::model::{Batch, LoadOptions, Model};
use sparq::{Gpu, formats::WeightFormat};

fn main() -> sparq::Result<()> {
    let mut sentences: Vec<String> = std::env::args().skip(1).collect();
    if sentences.is_empty() {
        sentences = vec![
            "A man is eating food.".into(),
            "Someone is having a meal.".into(),
            "The stock market fell sharply today.".into(),
        ];
    }
    let gpu = Gpu::from_env()?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    let model = Model::load_with(
        &dir,
        &gpu,
        LoadOptions {
            format: WeightFormat::F16,
            ..Default::default()
        },
    )?;
    let out = model.forward(&Batch::Text(sentences.clone()))?;
    println!(
        "{} sentences → {}-dimensional unit vectors on {}",
        out.rows, out.cols, gpu.caps.name
    );
    for i in 0..out.rows {
        for j in i + 1..out.rows {
            let cos: f32 = out.row(i).iter().zip(out.row(j)).map(|(a, b)| a * b).sum();
            println!("{cos:+.3}  {:?} ~ {:?}", sentences[i], sentences[j]);
        }
    }
    Ok(())
}
