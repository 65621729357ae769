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

use common::{all_gpus, rng};
use rand::Rng as _;
use rand::rngs::StdRng;
use sparq::formats::WeightFormat;
use sparq::model::decode::{CausalLm, Chunk, LogitRows};
use sparq::model::llama::{
    DecoderOptions, LlamaConfig, LlamaDecoder, LlamaNames, LlamaWeights, Reference, RopeLayout,
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

fn random_weights(c: &LlamaConfig, r: &mut StdRng) -> LlamaWeights {
    LlamaNames::default()
        .tensors(c)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let norm = name.contains("norm");
            let data = (0..n)
                .map(|_| {
                    let u: f32 = r.random_range(-1.0..1.0);
                    if norm { 1.0 + 0.2 * u } else { 0.3 * u }
                })
                .collect();
            (name, (shape, data))
        })
        .collect()
}

fn tokens(r: &mut StdRng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| r.random_range(0..vocab as u32)).collect()
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
    let weights = random_weights(&config, r);
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
