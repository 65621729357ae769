//! The Llama CPU reference decoder and token sampling, on tiny random models: RoPE layouts
//! agree under the GGUF row permutation, the KV cache matches a full forward, attention is
//! causal, grouped-query attention reduces to multi-head attention, a one-layer case matches
//! a hand computation, and sampling follows its distribution. Host-only and fast.

#[path = "common/llama.rs"]
mod llama;

use rand::{Rng as _, SeedableRng, rngs::StdRng};
use sparq::model::llama::reference::{rms_norm, rope};
use sparq::model::llama::{
    KvCache, LlamaConfig, LlamaLinear, LlamaNames, LlamaWeights, Reference, RopeLayout,
    rows_to_half_split, rows_to_interleaved,
};
use sparq::model::sampling::{Rng, Sampler, SamplingParams, argmax, candidates};
use sparq::{Error, InputError};

fn tiny(kv_heads: usize, bias: bool, tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 50,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: kv_heads,
        head_dim: 8,
        intermediate_size: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_context: 64,
        tie_word_embeddings: tied,
        attention_bias: bias,
        rope_layout: RopeLayout::HalfSplit,
    }
}

/// Random weights for every tensor of `c`: norm scales near 1, the rest small, so that the
/// activations stay in a range where every layer matters.
fn random_weights(c: &LlamaConfig, seed: u64) -> LlamaWeights {
    llama::random_weights(c, &mut StdRng::seed_from_u64(seed), safetensors::Dtype::F32)
}

fn tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..50)).collect()
}

/// Largest `|a - b|` over all entries, relative to the largest `|a|`.
fn rel_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut scale = 0.0f64;
    let mut diff = 0.0f64;
    for (ra, rb) in a.iter().zip(b) {
        assert_eq!(ra.len(), rb.len());
        for (x, y) in ra.iter().zip(rb) {
            scale = scale.max(x.abs());
            diff = diff.max((x - y).abs());
        }
    }
    diff / scale.max(1e-300)
}

fn full(r: &Reference, t: &[u32]) -> Vec<Vec<f64>> {
    r.forward_all(t, &mut r.new_cache()).unwrap()
}

/// GGUF's conversion of a Q or K matrix (llama.cpp `permute`): within each head, row
/// `s · d/2 + j` of the Hugging Face layout moves to row `2j + s`.
fn permute_rows(data: &[f32], heads: usize, d: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..d / 2 {
                let from = h * d + s * d / 2 + j;
                let to = h * d + 2 * j + s;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[test]
fn rope_rotates_the_pairs_of_each_layout() {
    let x = [1.0, 0.0, 0.0, 1.0];
    let mut a = x;
    rope(&mut a, 0, 10000.0, RopeLayout::HalfSplit);
    assert_eq!(a, x, "position 0 is the identity");
    // Pair 0 turns by 1 rad, pair 1 by 10000^(-1/2) = 0.01 rad.
    let (s1, c1) = 1f64.sin_cos();
    let (s2, c2) = 0.01f64.sin_cos();
    let close = |a: [f64; 4], b: [f64; 4]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-15);
    rope(&mut a, 1, 10000.0, RopeLayout::HalfSplit);
    assert!(close(a, [c1, -s2, s1, c2]), "{a:?}");
    let mut b = x;
    rope(&mut b, 1, 10000.0, RopeLayout::Interleaved);
    assert!(close(b, [c1, s1, -s2, c2]), "{b:?}");
}

#[test]
fn interleaved_rope_on_gguf_permuted_rows_equals_half_split() {
    for (kv, bias) in [(2, false), (2, true), (4, true)] {
        let c = tiny(kv, bias, true);
        let w = random_weights(&c, 1);
        let mut permuted = w.clone();
        let names = LlamaNames::default();
        for l in 0..c.num_layers {
            for (site, heads) in [(LlamaLinear::Q, c.num_heads), (LlamaLinear::K, kv)] {
                let scope = names.linear(l, site);
                let (shape, data) = &w[&scope.weight()];
                let p = permute_rows(data, heads, c.head_dim, c.hidden_size);
                permuted.insert(scope.weight(), (shape.clone(), p));
                if bias {
                    let (shape, data) = &w[&scope.bias()];
                    let p = permute_rows(data, heads, c.head_dim, 1);
                    permuted.insert(scope.bias(), (shape.clone(), p));
                }
            }
        }
        // The library's conversion is the same permutation, and its inverse undoes it.
        let (_, q) = &w[&names.linear(1, LlamaLinear::Q).weight()];
        let (_, pq) = &permuted[&names.linear(1, LlamaLinear::Q).weight()];
        let lib = rows_to_interleaved(q, c.num_heads, c.head_dim, c.hidden_size).unwrap();
        assert_eq!(&lib, pq);
        let back = rows_to_half_split(&lib, c.num_heads, c.head_dim, c.hidden_size).unwrap();
        assert_eq!(&back, q);
        assert!(rows_to_interleaved(q, c.num_heads, c.head_dim + 1, c.hidden_size).is_none());
        assert!(rows_to_interleaved(&q[1..], c.num_heads, c.head_dim, c.hidden_size).is_none());
        let mut ci = c.clone();
        ci.rope_layout = RopeLayout::Interleaved;
        let half = Reference::new(c, w).unwrap();
        let inter = Reference::new(ci, permuted).unwrap();
        let t = tokens(12, 2);
        let d = rel_diff(&full(&half, &t), &full(&inter, &t));
        assert!(d < 1e-12, "kv {kv} bias {bias}: relative difference {d}");
    }
}

#[test]
fn kv_cache_decoding_equals_one_full_forward() {
    for tied in [true, false] {
        let c = tiny(2, true, tied);
        let r = Reference::new(c.clone(), random_weights(&c, 3)).unwrap();
        let t = tokens(10, 4);
        let whole = full(&r, &t);
        assert_eq!(whole.len(), 10);
        assert!(whole.iter().all(|row| row.len() == 50));

        let mut cache = r.new_cache();
        let stepped: Vec<Vec<f64>> = t
            .iter()
            .map(|&tok| r.forward(&[tok], &mut cache).unwrap())
            .collect();
        assert_eq!(cache.len(), 10);
        let d = rel_diff(&whole, &stepped);
        assert!(d < 1e-12, "token by token: relative difference {d}");

        let mut cache = r.new_cache();
        let mut chunked = Vec::new();
        for chunk in [&t[..4], &t[4..7], &t[7..]] {
            chunked.extend(r.forward_all(chunk, &mut cache).unwrap());
        }
        let d = rel_diff(&whole, &chunked);
        assert!(d < 1e-12, "in chunks: relative difference {d}");

        // Rewinding to a prefix and decoding again gives the same logits.
        cache.truncate(6);
        assert_eq!(cache.len(), 6);
        let again = r.forward_all(&t[6..], &mut cache).unwrap();
        assert!(rel_diff(&whole[6..], &again) < 1e-12);
        cache.clear();
        assert!(cache.is_empty());
        let first = r.forward(&t[..1], &mut cache).unwrap();
        assert!(rel_diff(&whole[..1], &[first]) < 1e-12);
    }
}

#[test]
fn later_tokens_do_not_change_earlier_logits() {
    let c = tiny(2, false, true);
    let r = Reference::new(c.clone(), random_weights(&c, 5)).unwrap();
    let a = tokens(8, 6);
    let mut b = a.clone();
    b[5] = (a[5] + 1) % 50;
    let (la, lb) = (full(&r, &a), full(&r, &b));
    for i in 0..5 {
        assert_eq!(la[i], lb[i], "position {i} saw a later token");
    }
    assert!(
        rel_diff(&la[5..6], &lb[5..6]) > 1e-6,
        "the changed token matters"
    );
}

#[test]
fn grouped_query_attention_equals_multi_head_on_repeated_kv() {
    let gqa = tiny(2, true, true);
    let w = random_weights(&gqa, 7);
    let mha = tiny(4, true, true);
    let mut repeated = w.clone();
    let names = LlamaNames::default();
    let (d, h, group) = (gqa.head_dim, gqa.hidden_size, gqa.group_size());
    for l in 0..gqa.num_layers {
        for site in [LlamaLinear::K, LlamaLinear::V] {
            let scope = names.linear(l, site);
            for (name, cols) in [(scope.weight(), h), (scope.bias(), 1)] {
                let data = &w[&name].1;
                let mut out = Vec::new();
                for head in 0..mha.num_heads {
                    let g = head / group;
                    out.extend_from_slice(&data[g * d * cols..(g + 1) * d * cols]);
                }
                let shape = if cols == 1 {
                    vec![mha.kv_width()]
                } else {
                    vec![mha.kv_width(), h]
                };
                repeated.insert(name, (shape, out));
            }
        }
    }
    let a = Reference::new(gqa, w).unwrap();
    let b = Reference::new(mha, repeated).unwrap();
    let t = tokens(9, 8);
    let diff = rel_diff(&full(&a, &t), &full(&b, &t));
    assert!(diff < 1e-13, "relative difference {diff}");
}

/// One layer, one head of 2, Q = K = 0 (attention averages the values), V = O = I, and a
/// one-neuron SwiGLU: every step can be written out by hand.
#[test]
fn one_layer_case_matches_a_hand_computation() {
    let eps = 1e-6;
    let c = LlamaConfig {
        vocab_size: 2,
        hidden_size: 2,
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 2,
        intermediate_size: 1,
        rms_norm_eps: eps,
        rope_theta: 10000.0,
        max_context: 8,
        tie_word_embeddings: true,
        attention_bias: false,
        rope_layout: RopeLayout::HalfSplit,
    };
    let e = [[3.0, 4.0], [0.0, 2.0]];
    let names = LlamaNames::default();
    let mut w = LlamaWeights::new();
    let mut put = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        w.insert(name, (shape, data));
    };
    put(names.embedding(), vec![2, 2], vec![3.0, 4.0, 0.0, 2.0]);
    put(names.norm(0, 0), vec![2], vec![1.0, 1.0]);
    put(names.norm(0, 1), vec![2], vec![1.0, 1.0]);
    put(names.final_norm(), vec![2], vec![1.0, 1.0]);
    let lin = |s| names.linear(0, s).weight();
    put(lin(LlamaLinear::Q), vec![2, 2], vec![0.0; 4]);
    put(lin(LlamaLinear::K), vec![2, 2], vec![0.0; 4]);
    put(lin(LlamaLinear::V), vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    put(lin(LlamaLinear::O), vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    put(lin(LlamaLinear::Gate), vec![1, 2], vec![1.0, 0.0]);
    put(lin(LlamaLinear::Up), vec![1, 2], vec![0.0, 1.0]);
    put(lin(LlamaLinear::Down), vec![2, 1], vec![1.0, 1.0]);

    let n = |x: [f64; 2]| {
        let s = ((x[0] * x[0] + x[1] * x[1]) / 2.0 + eps).sqrt();
        [x[0] / s, x[1] / s]
    };
    let silu = |x: f64| x / (1.0 + (-x).exp());
    let hand = |x: [f64; 2], attn: [f64; 2]| {
        let x1 = [x[0] + attn[0], x[1] + attn[1]];
        let f = n(x1);
        let a = silu(f[0]) * f[1];
        n([x1[0] + a, x1[1] + a])
    };
    let (n0, n1) = (n(e[0]), n(e[1]));
    let out0 = hand(e[0], n0);
    let out1 = hand(e[1], [(n0[0] + n1[0]) / 2.0, (n0[1] + n1[1]) / 2.0]);
    let dot = |a: [f64; 2], b: [f64; 2]| a[0] * b[0] + a[1] * b[1];
    let expect_tied = vec![
        vec![dot(e[0], out0), dot(e[1], out0)],
        vec![dot(e[0], out1), dot(e[1], out1)],
    ];
    let r = Reference::new(c.clone(), w.clone()).unwrap();
    let got = full(&r, &[0, 1]);
    assert!(
        rel_diff(&expect_tied, &got) < 1e-14,
        "{got:?} vs {expect_tied:?}"
    );

    // Untied, with lm_head = [[1, 0], [0, 2]].
    let mut cu = c;
    cu.tie_word_embeddings = false;
    w.insert(names.lm_head(), (vec![2, 2], vec![1.0, 0.0, 0.0, 2.0]));
    let r = Reference::new(cu, w).unwrap();
    let got = full(&r, &[0, 1]);
    let expect = vec![vec![out0[0], 2.0 * out0[1]], vec![out1[0], 2.0 * out1[1]]];
    assert!(rel_diff(&expect, &got) < 1e-14, "{got:?} vs {expect:?}");
    assert!(rms_norm(&[0.0, 0.0], &[1.0, 1.0], eps) == vec![0.0, 0.0]);
}

#[test]
fn perplexity_is_the_exponent_of_the_mean_negative_log_likelihood() {
    let c = tiny(2, false, true);
    let r = Reference::new(c.clone(), random_weights(&c, 9)).unwrap();
    let t = tokens(6, 10);
    let logits = full(&r, &t);
    let mut nll = 0.0;
    for i in 0..5 {
        let row = &logits[i];
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        nll += lse - row[t[i + 1] as usize];
    }
    let ppl = r.perplexity(&t).unwrap();
    assert!((ppl - (nll / 5.0).exp()).abs() < 1e-10 * ppl);
    assert!(matches!(r.perplexity(&t[..1]), Err(Error::Input(_))));
}

#[test]
fn bad_weights_and_inputs_are_typed_errors() {
    let c = tiny(2, true, false);
    let w = random_weights(&c, 11);
    let names = LlamaNames::default();
    assert_eq!(
        names.linear(1, LlamaLinear::Q).weight(),
        "model.layers.1.self_attn.q_proj.weight"
    );
    // Embedding, 2 layers × (2 norms, 7 weights, 3 biases), final norm, lm_head.
    assert_eq!(names.tensors(&c).len(), 1 + 2 * 12 + 1 + 1);

    let mut missing = w.clone();
    missing.remove(&names.lm_head());
    let e = Reference::new(c.clone(), missing).unwrap_err();
    assert!(
        matches!(&e, Error::Input(InputError::MissingTensor { tensor, .. }) if tensor == "lm_head.weight"),
        "{e}"
    );
    let mut missing = w.clone();
    missing.remove(&names.linear(0, LlamaLinear::K).bias());
    assert!(matches!(
        Reference::new(c.clone(), missing),
        Err(Error::Input(InputError::MissingTensor { .. }))
    ));
    let mut wrong = w.clone();
    let up = names.linear(1, LlamaLinear::Up).weight();
    wrong.insert(up.clone(), (vec![32, 64], vec![0.0; 32 * 64]));
    let e = Reference::new(c.clone(), wrong).unwrap_err();
    assert!(
        matches!(&e, Error::Input(InputError::BadTensor { tensor, .. }) if *tensor == up),
        "{e}"
    );
    let mut short = w.clone();
    short.insert(up, (vec![64, 32], vec![0.0; 10]));
    assert!(matches!(
        Reference::new(c.clone(), short),
        Err(Error::Input(InputError::BadTensor { .. }))
    ));
    let mut bad = c.clone();
    bad.num_kv_heads = 3;
    assert!(matches!(
        Reference::new(bad, w.clone()),
        Err(Error::Input(InputError::Config(_)))
    ));

    let r = Reference::new(c.clone(), w).unwrap();
    let mut cache = r.new_cache();
    for t in [&[][..], &[50][..], &[1; 65][..]] {
        assert!(matches!(
            r.forward(t, &mut cache),
            Err(Error::Input(InputError::Invalid(_)))
        ));
        assert!(cache.is_empty(), "a refused call leaves the cache alone");
    }
    r.forward(&[1; 60], &mut cache).unwrap();
    assert!(matches!(
        r.forward(&[1; 5], &mut cache),
        Err(Error::Input(_))
    ));
    assert_eq!(cache.len(), 60);
    let mut other = KvCache::new(&tiny(4, true, false));
    assert!(matches!(r.forward(&[1], &mut other), Err(Error::Input(_))));
}

#[test]
fn config_validation_names_the_fault() {
    let ok = tiny(2, false, true);
    ok.validate().unwrap();
    type Edit = fn(&mut LlamaConfig);
    let cases: [(&str, Edit); 8] = [
        ("multiple", |c| c.num_kv_heads = 3),
        ("even", |c| c.head_dim = 7),
        ("vocab_size", |c| c.vocab_size = 0),
        ("num_layers", |c| c.num_layers = 1 << 20),
        ("num_kv_heads", |c| c.num_kv_heads = 0),
        ("max_context", |c| c.max_context = 0),
        ("rms_norm_eps", |c| c.rms_norm_eps = 0.0),
        ("rope_theta", |c| c.rope_theta = f64::NAN),
    ];
    for (word, change) in cases {
        let mut c = ok.clone();
        change(&mut c);
        match c.validate() {
            Err(Error::Input(InputError::Config(m))) => assert!(m.contains(word), "{m}"),
            other => panic!("{word}: {other:?}"),
        }
    }
    let json = serde_json::to_string(&ok).unwrap();
    let back: LlamaConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ok);
}

const SMOLLM2: &str = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false,
  "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
  "intermediate_size": 1536, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152}"#;

const QWEN2: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
  "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
  "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
  "use_sliding_window": false, "vocab_size": 151936}"#;

#[test]
fn hugging_face_configs_of_both_families() {
    let s = LlamaConfig::from_hf_config(SMOLLM2).unwrap();
    assert_eq!(
        s,
        LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            intermediate_size: 1536,
            rms_norm_eps: 1e-5,
            rope_theta: 1e5,
            max_context: 8192,
            tie_word_embeddings: true,
            attention_bias: false,
            rope_layout: RopeLayout::HalfSplit,
        }
    );
    let q = LlamaConfig::from_hf_config(QWEN2).unwrap();
    assert_eq!(
        (q.num_heads, q.num_kv_heads, q.head_dim, q.vocab_size),
        (14, 2, 64, 151936)
    );
    assert!(q.attention_bias, "Qwen2 always has Q/K/V biases");
    assert_eq!(q.rope_theta, 1e6);

    let edit = |from: &str, to: &str| SMOLLM2.replace(from, to);
    // Transformers 5 spelling: the base frequency inside `rope_parameters`.
    let v5 = edit(
        "\"rope_scaling\": null, \"rope_theta\": 100000",
        "\"rope_parameters\": {\"rope_theta\": 50000.0, \"rope_type\": \"default\"}",
    );
    assert_eq!(LlamaConfig::from_hf_config(&v5).unwrap().rope_theta, 5e4);
    for bad in [
        edit("LlamaForCausalLM", "GPT2LMHeadModel"),
        edit(
            "\"rope_scaling\": null",
            "\"rope_scaling\": {\"rope_type\": \"llama3\"}",
        ),
        edit("\"silu\"", "\"gelu\""),
        edit("\"silu\"", "7"),
        edit(
            "\"rope_scaling\": null",
            "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
        ),
        edit("\"vocab_size\": 49152", "\"vocab_size\": -1"),
        edit("\"num_hidden_layers\": 30,", ""),
        edit("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"),
        QWEN2.replace(
            "\"use_sliding_window\": false",
            "\"use_sliding_window\": true",
        ),
        "not json".to_string(),
    ] {
        assert!(
            matches!(
                LlamaConfig::from_hf_config(&bad),
                Err(Error::Input(InputError::Config(_)))
            ),
            "{bad}"
        );
    }
}

fn params(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        repetition_penalty: 1.0,
        seed,
    }
}

fn random_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-3.0..3.0)).collect()
}

#[test]
fn greedy_and_top_k_one_take_the_argmax() {
    for seed in 0..20 {
        let l = random_logits(40, seed);
        let best = l
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        assert_eq!(argmax(&l).unwrap(), best);
        let mut greedy = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(greedy.sample(&l, &[]).unwrap(), best);
        let mut k1 = Sampler::new(params(1.5, 1, 1.0, seed)).unwrap();
        for _ in 0..10 {
            assert_eq!(k1.sample(&l, &[]).unwrap(), best);
        }
    }
    assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NEG_INFINITY]).unwrap(), 1);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let l = random_logits(30, 1);
    let draw = |seed| {
        let mut s = Sampler::new(params(1.0, 0, 1.0, seed)).unwrap();
        (0..200)
            .map(|_| s.sample(&l, &[]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    // The generator's sequence is part of the contract, pinned to xoshiro256** seeded by
    // SplitMix64 (values checked against an independent implementation of both).
    let mut r = Rng::new(0);
    let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    assert_eq!(
        first,
        [0x99ec5f36cb75f2b4, 0xbf6e1f784956452a, 0x1a5f849d4933e6e0]
    );
    let u = Rng::new(42).next_f64();
    assert!((0.0..1.0).contains(&u));
}

#[test]
fn temperature_sampling_follows_softmax_of_scaled_logits() {
    let l = [1.0f32, 0.5, 0.0, -0.5, -1.0, 2.0];
    let t = 0.7f32;
    let m = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let e: Vec<f64> = l
        .iter()
        .map(|&v| ((v as f64 - m) / t as f64).exp())
        .collect();
    let z: f64 = e.iter().sum();
    let p: Vec<f64> = e.iter().map(|v| v / z).collect();
    let c = candidates(&l, &[], &params(t, 0, 1.0, 0)).unwrap();
    for &(id, q) in &c {
        assert!((q - p[id as usize]).abs() < 1e-12);
    }
    let n = 20000;
    let mut s = Sampler::new(params(t, 0, 1.0, 123)).unwrap();
    let mut counts = [0usize; 6];
    for _ in 0..n {
        counts[s.sample(&l, &[]).unwrap() as usize] += 1;
    }
    let mut chi2 = 0.0;
    for (i, &k) in counts.iter().enumerate() {
        let expect = n as f64 * p[i];
        let sigma = (n as f64 * p[i] * (1.0 - p[i])).sqrt();
        assert!(
            (k as f64 - expect).abs() < 5.0 * sigma,
            "token {i}: {k} draws, expected {expect:.0} ± {sigma:.0}"
        );
        chi2 += (k as f64 - expect).powi(2) / expect;
    }
    // 5 degrees of freedom: P(χ² > 25.7) ≈ 1e-4.
    assert!(chi2 < 25.7, "χ² = {chi2}");
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p_and_top_k_the_k_best() {
    let l: Vec<f32> = [0.05f32, 0.5, 0.15, 0.3].iter().map(|p| p.ln()).collect();
    let ids = |top_k, top_p| {
        candidates(&l, &[], &params(1.0, top_k, top_p, 0))
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(0, 0.4), vec![1]);
    assert_eq!(ids(0, 0.75), vec![1, 3]);
    assert_eq!(ids(0, 0.85), vec![1, 3, 2]);
    assert_eq!(ids(0, 1.0), vec![1, 3, 2, 0]);
    assert_eq!(ids(2, 1.0), vec![1, 3]);
    // top-p applies to what top-k left: 0.5 / 0.8 = 0.625 < 0.7.
    assert_eq!(ids(2, 0.7), vec![1, 3]);
    let c = candidates(&l, &[], &params(1.0, 0, 0.75, 0)).unwrap();
    assert!((c[0].1 - 0.625).abs() < 1e-6 && (c[1].1 - 0.375).abs() < 1e-6);
    let mut s = Sampler::new(params(1.0, 0, 0.75, 5)).unwrap();
    for _ in 0..2000 {
        assert!(matches!(s.sample(&l, &[]).unwrap(), 1 | 3));
    }
    // A token at -inf is never a candidate.
    let masked = [0.0, f32::NEG_INFINITY, 0.0];
    let c = candidates(&masked, &[], &params(1.0, 0, 1.0, 0)).unwrap();
    assert_eq!(c.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 2]);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    let greedy = |penalty| SamplingParams {
        repetition_penalty: penalty,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(greedy(2.0)).unwrap();
    assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[]).unwrap(), 0);
    assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0, 0]).unwrap(), 1);
    assert_eq!(s.sample(&[-1.0, -1.5], &[0]).unwrap(), 1);
    let mut off = Sampler::new(greedy(1.0)).unwrap();
    assert_eq!(off.sample(&[2.0, 1.9], &[0]).unwrap(), 0);
}

#[test]
fn bad_sampling_settings_and_logits_are_errors() {
    for p in [
        params(-1.0, 0, 1.0, 0),
        params(f32::NAN, 0, 1.0, 0),
        params(f32::INFINITY, 0, 1.0, 0),
        params(1.0, 0, 0.0, 0),
        params(1.0, 0, 1.5, 0),
        params(1.0, 0, f32::NAN, 0),
        SamplingParams {
            repetition_penalty: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            repetition_penalty: f32::NAN,
            ..SamplingParams::default()
        },
    ] {
        assert!(
            matches!(Sampler::new(p), Err(Error::Input(InputError::Invalid(_)))),
            "{p:?}"
        );
    }
    let mut s = Sampler::new(params(1.0, 0, 1.0, 0)).unwrap();
    for l in [
        &[][..],
        &[0.0, f32::NAN][..],
        &[0.0, f32::INFINITY][..],
        &[f32::NEG_INFINITY; 3][..],
    ] {
        assert!(matches!(
            s.sample(l, &[]),
            Err(Error::Input(InputError::Invalid(_)))
        ));
        assert!(argmax(l).is_err());
    }
    assert!(matches!(
        s.sample(&[0.0, 1.0], &[2]),
        Err(Error::Input(InputError::Invalid(_)))
    ));
}
