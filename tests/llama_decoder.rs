//! The GPU Llama decoder (`model::llama::LlamaDecoder`) against the f64 reference decoder on
//! tiny random models, on every adapter: a prefill's logits at every position, a prompt
//! prefilled in chunks, batched decode of sequences at different positions, a context past a
//! split of the paged attention, blocks reused after sequences close, and the typed errors of
//! bad steps (a token outside the vocabulary, a context overrun, a full cache).
//!
//! Tolerance from the arithmetic: the weights are f32 on both sides, the GPU accumulates in
//! f32 and keeps keys and values in f16. Rounding K and V to f16 (relative error 2^-11) moves
//! each attention output by about that much relative to its values, and the residual stream
//! carries it through the layers, so a logit may move by `4 · layers · 2^-11` of the largest
//! logit of its row (f32 accumulation is three orders of magnitude finer).

mod common;
#[path = "common/llama.rs"]
mod llama;
#[path = "common/tiny_gguf.rs"]
mod tiny_gguf;

use common::{all_gpus, rng};
use llama::tokens;
use rand::Rng as _;
use rand::rngs::StdRng;
use sparq::formats::WeightFormat;
use sparq::model::decode::{CausalLm, Chunk, LogitRows};
use sparq::model::llama::{
    DecoderOptions, LlamaConfig, LlamaDecoder, LlamaWeights, Reference, RopeLayout,
};
use sparq::{DeviceError, Error, Gpu, InputError};

fn tiny(layout: RopeLayout, bias: bool, tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 97,
        hidden_size: 44,
        num_layers: 2,
        num_heads: 6,
        num_kv_heads: 2,
        head_dim: 10,
        intermediate_size: 70,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_context: 600,
        tie_word_embeddings: tied,
        attention_bias: bias,
        rope_layout: layout,
    }
}

/// Checks GPU logit rows against the reference's, row by row (see the module docs).
fn check_rows(got: &[Vec<f32>], want: &[Vec<f64>], layers: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let tol = 4.0 * layers as f64 * 2f64.powi(-11);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {i} width");
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            let err = (*a as f64 - b).abs();
            assert!(
                a.is_finite() && err <= tol * scale,
                "{what}: row {i} logit {j}: {a} vs {b} (error {err:.3e} > {:.3e})",
                tol * scale
            );
        }
    }
}

struct Case {
    config: LlamaConfig,
    reference: Reference,
    weights: LlamaWeights,
}

fn case(r: &mut StdRng, layout: RopeLayout, bias: bool, tied: bool) -> Case {
    let config = tiny(layout, bias, tied);
    let weights = llama::random_weights(&config, r, safetensors::Dtype::F32);
    let reference = Reference::new(config.clone(), weights.clone()).unwrap();
    Case {
        config,
        reference,
        weights,
    }
}

fn decoder<'g>(gpu: &'g Gpu, c: &Case, kv_tokens: usize) -> LlamaDecoder<'g> {
    let options = DecoderOptions {
        kv_tokens: Some(kv_tokens),
        ..DecoderOptions::default()
    };
    LlamaDecoder::from_host(
        gpu,
        c.config.clone(),
        &c.weights,
        WeightFormat::F32,
        options,
    )
    .unwrap()
}

fn step(lm: &LlamaDecoder, chunks: &[Chunk]) -> Vec<Vec<f32>> {
    lm.step(chunks).unwrap().logits
}

#[test]
fn prefill_and_chunked_prefill_match_the_reference_at_every_position() {
    let mut r = rng("llama prefill");
    for gpu in all_gpus() {
        for (layout, bias, tied) in [
            (RopeLayout::HalfSplit, true, false),
            (RopeLayout::Interleaved, false, true),
        ] {
            let c = case(&mut r, layout, bias, tied);
            let lm = decoder(&gpu, &c, 256);
            let what = format!("{layout:?} bias {bias} tied {tied} on {}", gpu.caps.name);
            let prompt = tokens(&mut r, 37, c.config.vocab_size);
            let want = c
                .reference
                .forward_all(&prompt, &mut c.reference.new_cache())
                .unwrap();
            // One step over the whole prompt, every row's logits.
            let seq = lm.open();
            let all = step(
                &lm,
                &[Chunk {
                    seq,
                    tokens: &prompt,
                    logits: LogitRows::All,
                }],
            );
            check_rows(&all, &want, 2, &format!("prefill {what}"));
            lm.close(seq);
            // The same prompt in chunks of 1, 15 and 21 tokens (a block boundary inside).
            let seq = lm.open();
            let mut got = Vec::new();
            for part in [&prompt[..1], &prompt[1..16], &prompt[16..]] {
                got.extend(step(
                    &lm,
                    &[Chunk {
                        seq,
                        tokens: part,
                        logits: LogitRows::All,
                    }],
                ));
            }
            check_rows(&got, &want, 2, &format!("chunked prefill {what}"));
            // Only the last row, as generation asks.
            lm.truncate(seq, 30).unwrap();
            let last = step(
                &lm,
                &[Chunk {
                    seq,
                    tokens: &prompt[30..],
                    logits: LogitRows::Last,
                }],
            );
            check_rows(&last, &want[36..], 2, &format!("rewritten tail {what}"));
            // Greedy steps read back the argmax only; it is the argmax of the same logits.
            lm.truncate(seq, 36).unwrap();
            let out = lm
                .step(&[Chunk {
                    seq,
                    tokens: &prompt[36..],
                    logits: LogitRows::LastArgmax,
                }])
                .unwrap();
            assert!(out.logits.is_empty());
            assert_eq!(
                out.argmax,
                [sparq::model::sampling::argmax(&last[0]).unwrap()]
            );
            lm.close(seq);
        }
    }
}

#[test]
fn batched_decode_of_sequences_at_different_positions_matches_each_alone() {
    let mut r = rng("llama batched decode");
    for gpu in all_gpus() {
        let c = case(&mut r, RopeLayout::Interleaved, true, true);
        let lm = decoder(&gpu, &c, 512);
        let v = c.config.vocab_size;
        // Prompts of 1, 16 (one whole block), 33 and 300 tokens (past a split of 256 keys).
        let prompts: Vec<Vec<u32>> = [1, 16, 33, 300]
            .iter()
            .map(|&n| tokens(&mut r, n, v))
            .collect();
        let seqs: Vec<_> = prompts.iter().map(|_| lm.open()).collect();
        let mut caches: Vec<_> = prompts.iter().map(|_| c.reference.new_cache()).collect();
        // Prefill two sequences in one step, the other two in another.
        for pair in [[0usize, 2], [1, 3]] {
            let chunks: Vec<Chunk> = pair
                .iter()
                .map(|&i| Chunk {
                    seq: seqs[i],
                    tokens: &prompts[i],
                    logits: LogitRows::Last,
                })
                .collect();
            let got = step(&lm, &chunks);
            let want: Vec<Vec<f64>> = pair
                .iter()
                .map(|&i| c.reference.forward(&prompts[i], &mut caches[i]).unwrap())
                .collect();
            check_rows(
                &got,
                &want,
                2,
                &format!("two prefills {pair:?} on {}", gpu.caps.name),
            );
        }
        // Five decode steps of all four at once, then three of a subset in another order.
        for s in 0..8 {
            let order: Vec<usize> = if s < 5 { vec![0, 1, 2, 3] } else { vec![3, 0] };
            let next: Vec<[u32; 1]> = order
                .iter()
                .map(|_| [r.random_range(0..v as u32)])
                .collect();
            let chunks: Vec<Chunk> = order
                .iter()
                .zip(&next)
                .map(|(&i, t)| Chunk {
                    seq: seqs[i],
                    tokens: t,
                    logits: LogitRows::Last,
                })
                .collect();
            let got = step(&lm, &chunks);
            let want: Vec<Vec<f64>> = order
                .iter()
                .zip(&next)
                .map(|(&i, t)| c.reference.forward(t, &mut caches[i]).unwrap())
                .collect();
            check_rows(
                &got,
                &want,
                2,
                &format!("decode step {s} on {}", gpu.caps.name),
            );
        }
        // Closed sequences give their blocks back; a new one over reused blocks is exact too.
        let before = lm.cache_blocks().0;
        for &s in &seqs {
            lm.close(s);
        }
        assert!(lm.cache_blocks().0 > before);
        let p = tokens(&mut r, 40, v);
        let seq = lm.open();
        let got = step(
            &lm,
            &[Chunk {
                seq,
                tokens: &p,
                logits: LogitRows::All,
            }],
        );
        let want = c
            .reference
            .forward_all(&p, &mut c.reference.new_cache())
            .unwrap();
        check_rows(
            &got,
            &want,
            2,
            &format!("reused blocks on {}", gpu.caps.name),
        );
    }
}

#[test]
fn bad_steps_are_typed_errors_and_move_nothing() {
    let mut r = rng("llama bad steps");
    let gpu = all_gpus().remove(0);
    let c = case(&mut r, RopeLayout::HalfSplit, false, true);
    // 48 tokens of cache: three blocks of 16.
    let lm = decoder(&gpu, &c, 48);
    let seq = lm.open();
    let invalid = |e: Error| matches!(e, Error::Input(InputError::Invalid(_)));
    let bad = |tokens: &[u32]| {
        lm.step(&[Chunk {
            seq,
            tokens,
            logits: LogitRows::Last,
        }])
    };
    assert!(
        invalid(bad(&[97]).unwrap_err()),
        "token outside the vocabulary"
    );
    assert!(invalid(bad(&[]).unwrap_err()), "no tokens");
    assert!(invalid(lm.step(&[]).unwrap_err()), "no sequence");
    let long = vec![1u32; 601];
    assert!(invalid(bad(&long).unwrap_err()), "past the context");
    let full = bad(&[1u32; 49]).unwrap_err();
    assert!(
        matches!(
            full,
            Error::Device(DeviceError::CacheFull {
                needed: 4,
                free: 3,
                ..
            })
        ),
        "{full}"
    );
    assert_eq!(lm.len(seq).unwrap(), 0, "a failed step moves nothing");
    assert_eq!(lm.cache_blocks(), (3, 3));
    // The same sequence twice in one step.
    let twice = lm.step(&[
        Chunk {
            seq,
            tokens: &[1],
            logits: LogitRows::Last,
        },
        Chunk {
            seq,
            tokens: &[2],
            logits: LogitRows::Last,
        },
    ]);
    assert!(invalid(twice.unwrap_err()));
    assert_eq!(bad(&[1, 2, 3]).unwrap().logits.len(), 1);
    assert_eq!(lm.len(seq).unwrap(), 3);
}

/// A GGUF file of `c` (llama.cpp's names and metadata) holding `w` as F32 tensors, with the
/// tensor `wrong` (if any) one row short.
fn gguf_file(c: &LlamaConfig, w: &LlamaWeights, arch: &str, wrong: Option<&str>) -> Vec<u8> {
    use sparq::gguf::{GgmlType, writer::Writer};
    let mut f = Writer::new();
    tiny_gguf::llama_header(&mut f, c, arch);
    for (g, h) in sparq::model::llama::gguf::tensor_names(c) {
        let (shape, data) = &w[&h];
        let mut dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let mut data = data.clone();
        if wrong == Some(g.as_str()) {
            *dims.last_mut().unwrap() -= 1;
            data.truncate(data.len() - shape.last().unwrap());
        }
        f.tensor(
            &g,
            &dims,
            GgmlType::F32,
            bytemuck::cast_slice(&data).to_vec(),
        );
    }
    f.to_bytes()
}

#[test]
fn a_gguf_file_runs_as_the_reference_and_bad_files_are_typed_errors() {
    let mut r = rng("llama gguf file");
    let gpu = all_gpus().remove(0);
    let c = case(&mut r, RopeLayout::Interleaved, false, true);
    let dir = std::env::temp_dir().join(format!("sparq-llama-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, gguf_file(&c.config, &c.weights, "llama", None)).unwrap();
    let options = DecoderOptions {
        kv_tokens: Some(64),
        ..DecoderOptions::default()
    };
    let lm = LlamaDecoder::from_gguf(&path, &gpu, options).unwrap();
    // GGUF stores the epsilon as an f32.
    let stored = LlamaConfig {
        rms_norm_eps: c.config.rms_norm_eps as f32 as f64,
        ..c.config.clone()
    };
    assert_eq!(lm.config(), &stored);
    assert_eq!(lm.formats(), ["f32"]);
    let prompt = tokens(&mut r, 21, c.config.vocab_size);
    let seq = lm.open();
    let got = step(
        &lm,
        &[Chunk {
            seq,
            tokens: &prompt,
            logits: LogitRows::All,
        }],
    );
    let want = c
        .reference
        .forward_all(&prompt, &mut c.reference.new_cache())
        .unwrap();
    check_rows(&got, &want, 2, "tiny GGUF");
    drop(lm);
    // A tensor of the wrong shape, another architecture, a truncated file.
    let bad = |bytes: Vec<u8>| {
        std::fs::write(&path, bytes).unwrap();
        LlamaDecoder::from_gguf(&path, &gpu, options)
            .err()
            .expect("a bad file loads")
    };
    let short = bad(gguf_file(
        &c.config,
        &c.weights,
        "llama",
        Some("blk.1.ffn_up.weight"),
    ));
    assert!(
        matches!(short, Error::Input(InputError::BadTensor { .. })),
        "{short}"
    );
    assert!(short.to_string().contains("blk.1.ffn_up.weight"), "{short}");
    let arch = bad(gguf_file(&c.config, &c.weights, "gpt2", None));
    assert!(
        matches!(arch, Error::Input(InputError::Config(_))),
        "{arch}"
    );
    let mut cut = gguf_file(&c.config, &c.weights, "llama", None);
    cut.truncate(cut.len() - 100);
    let cut = bad(cut);
    assert!(matches!(cut, Error::Input(InputError::Gguf(_))), "{cut}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generation_refuses_prompts_and_budgets_past_the_context() {
    use sparq::model::generate::{GenerateParams, Generator};
    let mut r = rng("llama generation limits");
    let gpu = all_gpus().remove(0);
    let c = case(&mut r, RopeLayout::HalfSplit, false, true);
    let lm = decoder(&gpu, &c, 64);
    let g = Generator::new(&lm, None);
    let params = |max_tokens| GenerateParams {
        max_tokens,
        ..GenerateParams::default()
    };
    let invalid = |e: Error| matches!(e, Error::Input(InputError::Invalid(_)));
    assert!(
        invalid(g.start(&[], &params(4)).err().unwrap()),
        "empty prompt"
    );
    assert!(
        invalid(g.start(&vec![1; 601], &params(0)).err().unwrap()),
        "prompt past the context"
    );
    assert!(
        invalid(g.start(&vec![1; 590], &params(11)).err().unwrap()),
        "budget past the context"
    );
    // Greedy generation stops at an EOS token it is given and at the budget otherwise.
    let prompt = tokens(&mut r, 5, c.config.vocab_size);
    let done = g.generate(&prompt, &params(6), |_| {}).unwrap();
    assert_eq!(done.tokens.len(), 6);
    assert_eq!(done.finish, sparq::model::generate::FinishReason::Length);
    let eos = GenerateParams {
        eos: vec![done.tokens[2]],
        ..params(6)
    };
    let cut = g.generate(&prompt, &eos, |_| {}).unwrap();
    let first = done
        .tokens
        .iter()
        .position(|&t| t == done.tokens[2])
        .unwrap();
    assert_eq!(cut.tokens, done.tokens[..=first]);
    assert_eq!(cut.finish, sparq::model::generate::FinishReason::Eos);
    // The reference's greedy tokens.
    let mut cache = c.reference.new_cache();
    let mut logits = c.reference.forward(&prompt, &mut cache).unwrap();
    for (i, &t) in done.tokens.iter().enumerate() {
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        if t as usize != best {
            // Only a tie closer than the tolerance may go the other way (then the two differ).
            let scale = logits.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let margin = logits[best] - logits[t as usize];
            assert!(
                margin <= 8.0 * 2f64.powi(-11) * scale,
                "greedy token {i}: {t} vs {best}"
            );
            break;
        }
        logits = c.reference.forward(&[t], &mut cache).unwrap();
    }
    assert_eq!(
        lm.cache_blocks().0,
        lm.cache_blocks().1,
        "generations close their sequences"
    );
}
