//! Streams a completion from SmolLM2-135M-Instruct (fetched into models/ by scripts/setup.sh)
//! through the library's `Generator`, then a greedy batch of three prompts decoded together
//! in one step per token.
//!
//!     cargo run --release --example generate -- "The capital of France is"

use sparq::Gpu;
use sparq::gguf::Gguf;
use sparq::model::decode::{CausalLm, Chunk, LogitRows};
use sparq::model::generate::{GenerateParams, Generator};
use sparq::model::llama::{DecoderOptions, LlamaDecoder, gguf::text_codec};
use sparq::model::sampling::SamplingParams;
use std::io::Write;

fn main() -> sparq::Result<()> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or("The capital of France is".into());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/SmolLM2-135M-Instruct/model.gguf");
    let gpu = Gpu::from_env()?;
    let options = DecoderOptions {
        kv_tokens: Some(4096),
        ..DecoderOptions::default()
    };
    let lm = LlamaDecoder::from_gguf(&path, &gpu, options)?;
    let codec = text_codec(&Gguf::open(&path)?)?;

    // One prompt, streamed as it is generated, sampled with a fixed seed.
    let params = GenerateParams {
        max_tokens: 48,
        sampling: SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: 42,
            ..SamplingParams::default()
        },
        ..GenerateParams::default()
    };
    print!("{prompt}");
    let ids = codec.encode(&prompt, false)?;
    let done = Generator::new(&lm, Some(&codec)).generate(&ids, &params, |piece| {
        print!("{}", piece.text);
        let _ = std::io::stdout().flush();
    })?;
    println!("\n[{} tokens, {:?}]\n", done.tokens.len(), done.finish);

    // Three sequences of different lengths, prefilled in one step and decoded together.
    let prompts = [
        "Once upon a time",
        "The three primary colours are",
        "def add(a, b):",
    ];
    let seqs: Vec<_> = prompts.iter().map(|_| lm.open()).collect();
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| codec.encode(p, false))
        .collect::<sparq::Result<_>>()?;
    let mut texts: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let chunks: Vec<Chunk> = seqs
        .iter()
        .zip(&encoded)
        .map(|(&seq, tokens)| Chunk {
            seq,
            tokens,
            logits: LogitRows::LastArgmax,
        })
        .collect();
    let mut next = lm.step(&chunks)?.argmax;
    for _ in 0..16 {
        for (t, &n) in texts.iter_mut().zip(&next) {
            t.push(n);
        }
        let feed: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let chunks: Vec<Chunk> = seqs
            .iter()
            .zip(&feed)
            .map(|(&seq, t)| Chunk {
                seq,
                tokens: t,
                logits: LogitRows::LastArgmax,
            })
            .collect();
        next = lm.step(&chunks)?.argmax;
    }
    for ((p, t), seq) in prompts.iter().zip(&texts).zip(seqs) {
        println!("{p}{}", codec.decode(t)?.replace('\n', " "));
        lm.close(seq);
    }
    Ok(())
}
