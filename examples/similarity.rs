//! Semantic search in a few lines: embeds a handful of documents and a query with
//! all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh), ranks the documents by
//! cosine similarity to the query, and prints the documents' similarity matrix.
//!
//!     cargo run --release --example similarity -- "Where do cats sleep?"
//!
//! `SPARQ_MODEL` names another encoder (a model directory or a `sparq pack` file).

use sparq::Gpu;
use sparq::model::{Batch, Model, Output, cosine};
use std::path::PathBuf;

const DOCUMENTS: [&str; 5] = [
    "Cats often sleep in warm, sunny spots.",
    "The central bank raised interest rates again.",
    "A kitten curled up on the windowsill.",
    "Rust has no garbage collector.",
    "Dogs need a walk every day.",
];

fn main() -> sparq::Result<()> {
    let query = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Where do cats like to nap?".into());
    let path = std::env::var_os("SPARQ_MODEL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
        PathBuf::from,
    );
    let gpu = Gpu::from_env()?;
    let model = Model::load(&path, &gpu)?;

    // The query and the documents in one batch: one forward pass.
    let out = model.forward(&Batch::text(
        std::iter::once(query.as_str()).chain(DOCUMENTS),
    ))?;
    let mut rows = out.rows();
    let q = rows.next().expect("the query's row");
    let mut ranked: Vec<(f32, &str)> = rows
        .zip(DOCUMENTS)
        .map(|(d, t)| (cosine(q, d), t))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("query: {query:?}");
    for (score, doc) in &ranked {
        println!("  {score:+.3}  {doc}");
    }

    let docs = Output::from_rows(&out.rows().skip(1).map(<[f32]>::to_vec).collect::<Vec<_>>());
    println!("\nsimilarity of the documents:");
    print!("    ");
    for j in 0..DOCUMENTS.len() {
        print!("{:>7}", format!("d{}", j + 1));
    }
    println!();
    for (i, row) in docs.similarity().iter().enumerate() {
        print!("  d{}", i + 1);
        for c in row {
            print!("{c:>7.3}");
        }
        println!("  {}", DOCUMENTS[i]);
    }
    Ok(())
}
