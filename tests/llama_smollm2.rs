//! SmolLM2-135M-Instruct from its GGUF file on the GPU decoder, on every adapter, against the
//! f64 reference decoder on the same (dequantized) weights: the logits of a prompt, greedy
//! generation of 32 tokens for several prompts, "The capital of France is" → " Paris", and the
//! perplexity of the start of the GPL. Skipped, with a note, when the set-up has not fetched
//! the model (`scripts/setup.sh`).
//!
//! Tolerance: as `tests/llama_decoder.rs` (f16 keys and values, f32 accumulation): a logit
//! may move by `4 · layers · 2^-11` of the largest logit of its row.

mod common;

use common::all_gpus;
use sparq::gguf::Gguf;
use sparq::model::decode::{CausalLm, Chunk, LogitRows};
use sparq::model::generate::{FinishReason, GenerateParams, Generator};
use sparq::model::llama::gguf::{host_weights, text_codec};
use sparq::model::llama::{DecoderOptions, LlamaConfig, LlamaDecoder, Reference};
use sparq::model::perplexity::perplexity;
use sparq::model::text::TextCodec;

const MODEL: &str = "models/SmolLM2-135M-Instruct/model.gguf";

fn smollm2() -> Option<(Gguf, Reference, TextCodec)> {
    let Ok(file) = Gguf::open(MODEL) else {
        eprintln!("skipping: {MODEL} is absent (run scripts/setup.sh)");
        return None;
    };
    let c = LlamaConfig::from_gguf(&file).unwrap();
    let reference = Reference::new(c.clone(), host_weights(&file, &c).unwrap()).unwrap();
    let tok = text_codec(&file).unwrap();
    Some((file, reference, tok))
}

fn options() -> DecoderOptions {
    DecoderOptions {
        kv_tokens: Some(1024),
        ..DecoderOptions::default()
    }
}

fn ids(codec: &TextCodec, text: &str) -> Vec<u32> {
    codec.encode(text, true).unwrap()
}

fn tolerance(layers: usize, row: &[f64]) -> f64 {
    4.0 * layers as f64 * 2f64.powi(-11) * row.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Each greedy token with the logits it was chosen from.
type Greedy = Vec<(u32, Vec<f64>)>;

/// The reference's greedy continuation of `prompt`, `n` tokens.
fn reference_greedy(r: &Reference, prompt: &[u32], n: usize) -> Greedy {
    let mut cache = r.new_cache();
    let mut logits = r.forward(prompt, &mut cache).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = argmax(&logits);
        out.push((t, logits.clone()));
        logits = r.forward(&[t], &mut cache).unwrap();
    }
    out
}

fn argmax(v: &[f64]) -> u32 {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap() as u32
}

#[test]
fn smollm2_logits_and_greedy_generation_match_the_reference() {
    let Some((_, reference, tok)) = smollm2() else {
        return;
    };
    let layers = reference.config().num_layers;
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    ];
    let wants: Vec<(Vec<u32>, Greedy)> = prompts
        .iter()
        .map(|p| {
            let prompt = ids(&tok, p);
            let want = reference_greedy(&reference, &prompt, 32);
            (prompt, want)
        })
        .collect();
    for gpu in all_gpus() {
        let lm = LlamaDecoder::from_gguf(MODEL, &gpu, options()).unwrap();
        for (text, (prompt, want)) in prompts.iter().zip(&wants) {
            let what = format!("{text:?} on {}", gpu.caps.name);
            // The prompt's last logits, elementwise.
            let seq = lm.open();
            let got = lm
                .step(&[Chunk {
                    seq,
                    tokens: prompt,
                    logits: LogitRows::Last,
                }])
                .unwrap()
                .logits
                .remove(0);
            lm.close(seq);
            let tol = tolerance(layers, &want[0].1);
            for (j, (a, b)) in got.iter().zip(&want[0].1).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= tol,
                    "{what}: logit {j}: {a} vs {b} (tolerance {tol:.3e})"
                );
            }
            // Greedy generation: the same tokens (32, or up to EOS), unless the reference's two best logits
            // are closer than the tolerance at the first difference (a tie the arithmetic
            // cannot decide), after which the continuations legitimately differ.
            let generator = Generator::new(&lm, Some(&tok));
            let params = GenerateParams {
                max_tokens: 32,
                ..GenerateParams::default()
            };
            let done = generator.generate(prompt, &params, |_| {}).unwrap();
            // Fewer than 32 only when an end-of-generation token came (the reference, which
            // never stops, must have chosen it there too unless a tie came first).
            let n = done.tokens.len();
            assert!(
                n == 32 || (done.finish == FinishReason::Eos && tok.is_eos(done.tokens[n - 1])),
                "{what}: {n} tokens, {:?}",
                done.finish
            );
            if let Some(i) = (0..n).find(|&i| done.tokens[i] != want[i].0) {
                let row = &want[i].1;
                let margin = row[want[i].0 as usize] - row[done.tokens[i] as usize];
                assert!(
                    margin <= 2.0 * tolerance(layers, row),
                    "{what}: token {i} is {} where the reference chose {} by a margin of {margin}",
                    done.tokens[i],
                    want[i].0
                );
                eprintln!("{what}: near tie at token {i} (margin {margin:.2e})");
            }
            if *text == "The capital of France is" {
                assert!(done.text.starts_with(" Paris"), "{what}: {:?}", done.text);
            }
        }
    }
}

#[test]
fn smollm2_perplexity_on_the_gpl_matches_the_reference() {
    let Some((_, reference, tok)) = smollm2() else {
        return;
    };
    let Ok(text) = std::fs::read_to_string("/usr/share/common-licenses/GPL-3") else {
        eprintln!("skipping: no /usr/share/common-licenses/GPL-3");
        return;
    };
    let tokens = ids(&tok, &text)[..128].to_vec();
    let want = reference.perplexity(&tokens).unwrap();
    for gpu in all_gpus() {
        let lm = LlamaDecoder::from_gguf(MODEL, &gpu, options()).unwrap();
        let got = perplexity(&lm, &tokens, 128, |_, _| {}).unwrap();
        let rel = (got.perplexity / want - 1.0).abs();
        eprintln!(
            "perplexity of 128 GPL tokens on {}: GPU {:.4}, reference {want:.4} ({rel:.2e})",
            gpu.caps.name, got.perplexity
        );
        assert_eq!(got.predicted, 127);
        assert!(rel < 5e-3, "GPU {} vs reference {want}", got.perplexity);
    }
}
