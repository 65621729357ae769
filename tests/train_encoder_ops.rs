//! The encoder's backward kernels (LayerNorm, sentence pooling with the padding mask and L2
//! normalisation) against their f64 references at awkward shapes with poisoned outputs, on
//! every adapter; the references against central finite differences of the forward passes.

mod common;

use common::train::{f64s, poisoned, run, values};
use common::{all_gpus, assert_close, random, rng};
use rand::Rng;
use sparq::model::ops::{Norm, Pooling};
use sparq::model::reference as model_cpu;
use sparq::tensor::Tensor;
use sparq::train::ops;
use sparq::train::reference as cpu;

/// Σ dy ⊙ f(x), the scalar whose gradient a backward pass computes.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn norm_and_pool_references_match_finite_differences() {
    let mut r = rng("train encoder differences");
    let (rows, cols) = (3, 6);
    let v: Vec<f64> = (0..rows * cols)
        .map(|_| r.random_range(-2.0..2.0))
        .collect();
    let gamma: Vec<f32> = (0..cols).map(|_| r.random_range(0.5f32..1.5)).collect();
    let beta: Vec<f32> = (0..cols).map(|_| r.random_range(-0.5f32..0.5)).collect();
    let dy: Vec<f64> = (0..rows * cols)
        .map(|_| r.random_range(-1.0..1.0))
        .collect();
    let eps = 1e-5;
    let f = |v: &[f64], g: &[f32], b: &[f32]| {
        dot(&dy, &model_cpu::norm(v, None, g, Some(b), eps, cols))
    };
    let (dv, dgamma, dbeta) = cpu::norm_grad(&v, &gamma, eps, &dy, cols);
    let h = 1e-6;
    for i in 0..v.len() {
        let (mut up, mut down) = (v.clone(), v.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (f(&up, &gamma, &beta) - f(&down, &gamma, &beta)) / (2.0 * h);
        assert!((fd - dv[i]).abs() < 1e-6, "dv[{i}] {} vs {fd}", dv[i]);
    }
    // γ and β are f32 in the forward reference: differences of a larger step.
    let h = 1e-3f32;
    for c in 0..cols {
        let (mut up, mut down) = (gamma.clone(), gamma.clone());
        up[c] += h;
        down[c] -= h;
        let fd = (f(&v, &up, &beta) - f(&v, &down, &beta)) / (up[c] - down[c]) as f64;
        assert!(
            (fd - dgamma[c]).abs() < 1e-5,
            "dγ[{c}] {} vs {fd}",
            dgamma[c]
        );
        let (mut up, mut down) = (beta.clone(), beta.clone());
        up[c] += h;
        down[c] -= h;
        let fd = (f(&v, &gamma, &up) - f(&v, &gamma, &down)) / (up[c] - down[c]) as f64;
        assert!((fd - dbeta[c]).abs() < 1e-5, "dβ[{c}] {} vs {fd}", dbeta[c]);
    }
    let (seq, batch) = (4, 2);
    let x: Vec<f64> = (0..batch * seq * cols)
        .map(|_| r.random_range(-1.0..1.0))
        .collect();
    let mask = [true, true, false, true, true, false, false, false];
    let dyp: Vec<f64> = (0..batch * cols)
        .map(|_| r.random_range(-1.0..1.0))
        .collect();
    for (cls, normalize) in [(false, false), (false, true), (true, true)] {
        let g = cpu::pool_grad(&x, &mask, seq, cls, normalize, &dyp, cols);
        let h = 1e-6;
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let p = |x: &[f64]| dot(&dyp, &cpu::pool(x, &mask, seq, cls, normalize, cols));
            let fd = (p(&up) - p(&down)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-6,
                "pool cls {cls} normalize {normalize} [{i}]: {} vs {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn layer_norm_gradients() {
    let mut r = rng("train norm gradients");
    for gpu in all_gpus() {
        for (rows, cols, eps) in [(1, 1, 1e-5), (3, 7, 1e-12), (9, 384, 1e-12), (2, 130, 1e-5)] {
            let v: Vec<f32> = random(&mut r, rows * cols)
                .iter()
                .map(|x| x * 3.0 + 0.5)
                .collect();
            let dy = random(&mut r, rows * cols);
            let gamma: Vec<f32> = (0..cols).map(|_| r.random_range(0.5f32..1.5)).collect();
            let norm = Norm {
                gamma: gpu.upload("gamma", &gamma).unwrap(),
                beta: Some(gpu.upload("beta", &vec![0f32; cols]).unwrap()),
                cols,
                eps,
                rms: false,
            };
            let vt = Tensor::from_f32(&gpu, &v, rows, cols).unwrap();
            let dyt = Tensor::from_f32(&gpu, &dy, rows, cols).unwrap();
            let (dv, dyx) = (poisoned(&gpu, rows, cols), poisoned(&gpu, rows, cols));
            let (dg, db) = (poisoned(&gpu, 1, cols), poisoned(&gpu, 1, cols));
            run(
                &gpu,
                vec![
                    ops::norm_grad(&gpu, &norm, &vt, &dyt, &dv, &dyx).unwrap(),
                    ops::col_sum(&gpu, &dyx, &dg, false).unwrap(),
                    ops::col_sum(&gpu, &dyt, &db, false).unwrap(),
                ],
            );
            let (want_dv, want_dg, want_db) =
                cpu::norm_grad(&f64s(&v), &gamma, eps as f64, &f64s(&dy), cols);
            let what = format!("LayerNorm gradient {rows}×{cols} on {}", gpu.caps.name);
            // dv is a difference of terms of the size of g / σ: judged against that, with the
            // f32 statistics' relative error (about cols · u).
            let mut scale = vec![0.0; rows * cols];
            for row in 0..rows {
                let vr = &v[row * cols..(row + 1) * cols];
                let mean = vr.iter().map(|&x| x as f64).sum::<f64>() / cols as f64;
                let var = vr.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                let gmax = (0..cols)
                    .map(|c| (dy[row * cols + c] * gamma[c]).abs() as f64)
                    .fold(0.0, f64::max);
                scale[row * cols..(row + 1) * cols].fill(3.0 * gmax * inv);
            }
            let tol = 4.0 * (cols as f64 + 8.0) / (1u64 << 24) as f64;
            assert_close(
                &values(&gpu, &dv, &what),
                &want_dv,
                &scale,
                tol,
                &format!("{what} dv"),
            );
            let sdg: Vec<f64> = (0..cols)
                .map(|c| {
                    (0..rows)
                        .map(|i| (dy[i * cols + c] as f64).abs() * 4.0)
                        .sum()
                })
                .collect();
            assert_close(
                &values(&gpu, &dg, &what),
                &want_dg,
                &sdg,
                tol,
                &format!("{what} dγ"),
            );
            let sdb: Vec<f64> = (0..cols)
                .map(|c| (0..rows).map(|i| (dy[i * cols + c] as f64).abs()).sum())
                .collect();
            assert_close(
                &values(&gpu, &db, &what),
                &want_db,
                &sdb,
                tol,
                &format!("{what} dβ"),
            );
        }
    }
}

#[test]
fn pooling_gradients_with_masks_and_normalisation() {
    let mut r = rng("train pool gradients");
    for gpu in all_gpus() {
        for (batch, seq, cols) in [(1, 1, 1), (3, 5, 7), (2, 17, 384)] {
            let x = random(&mut r, batch * seq * cols);
            let dy = random(&mut r, batch * cols);
            // Each sequence keeps a prefix of at least one token (a padded batch).
            let mut mask = vec![false; batch * seq];
            for b in 0..batch {
                let len = r.random_range(1..=seq);
                mask[b * seq..b * seq + len].fill(true);
            }
            let tokens: Vec<[u32; 4]> = mask.iter().map(|&m| [0, 0, 0, m as u32]).collect();
            let tb = gpu.upload("tokens", &tokens).unwrap();
            let xt = Tensor::from_f32(&gpu, &x, batch * seq, cols).unwrap();
            let dyt = Tensor::from_f32(&gpu, &dy, batch, cols).unwrap();
            for (pooling, normalize, masked) in [
                (Pooling::Mean, false, false),
                (Pooling::Mean, true, true),
                (Pooling::Cls, true, true),
                (Pooling::Mean, false, true),
            ] {
                let dx = poisoned(&gpu, batch * seq, cols);
                let tokens = masked.then_some(&tb);
                run(
                    &gpu,
                    vec![
                        ops::pool_grad(&gpu, &xt, tokens, seq, pooling, normalize, &dyt, &dx)
                            .unwrap(),
                    ],
                );
                let m = if masked {
                    mask.clone()
                } else {
                    vec![true; batch * seq]
                };
                let cls = pooling == Pooling::Cls;
                let want = cpu::pool_grad(&f64s(&x), &m, seq, cls, normalize, &f64s(&dy), cols);
                // A few roundings of terms of the size of dy / count (and / ‖u‖ normalised).
                let pooled = cpu::pool(&f64s(&x), &m, seq, cls, false, cols);
                let mut scale = vec![0.0; batch * seq * cols];
                for b in 0..batch {
                    let norm = pooled[b * cols..(b + 1) * cols]
                        .iter()
                        .map(|v| v * v)
                        .sum::<f64>()
                        .sqrt();
                    let dmax = dy[b * cols..(b + 1) * cols]
                        .iter()
                        .fold(0f32, |a, v| a.max(v.abs())) as f64;
                    let s = if normalize {
                        3.0 * dmax / norm.max(1e-12)
                    } else {
                        dmax
                    };
                    scale[b * seq * cols..(b + 1) * seq * cols].fill(s);
                }
                let what = format!(
                    "{pooling:?} normalize {normalize} mask {masked} {batch}×{seq}×{cols} on {}",
                    gpu.caps.name
                );
                let tol = 4.0 * (cols + seq + 8) as f64 / (1u64 << 24) as f64;
                assert_close(&values(&gpu, &dx, &what), &want, &scale, tol, &what);
            }
        }
    }
}

#[test]
fn attention_reference_matches_finite_differences() {
    let mut r = rng("train attention differences");
    let (seq, heads, hidden) = (3, 2, 4);
    let mask = [true, true, false, true, false, false];
    let rows = mask.len();
    let qkv: Vec<f64> = (0..rows * 3 * hidden)
        .map(|_| r.random_range(-1.5..1.5))
        .collect();
    let dout: Vec<f64> = (0..rows * hidden)
        .map(|_| r.random_range(-1.0..1.0))
        .collect();
    let g = cpu::attention_grad(&qkv, &mask, seq, heads, hidden, &dout);
    let h = 1e-6;
    for i in 0..qkv.len() {
        let (mut up, mut down) = (qkv.clone(), qkv.clone());
        up[i] += h;
        down[i] -= h;
        let f = |x: &[f64]| dot(&dout, &model_cpu::attention(x, &mask, seq, heads, hidden));
        let fd = (f(&up) - f(&down)) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-6, "dqkv[{i}] {} vs {fd}", g[i]);
    }
}

#[test]
fn attention_gradients_with_padding_masks() {
    let mut r = rng("train attention gradients");
    for gpu in all_gpus() {
        // (batch, seq, heads, head size): one token, odd sizes, a sequence longer than a
        // workgroup, MiniLM's heads.
        for (batch, seq, heads, d) in [(1, 1, 1, 1), (3, 5, 2, 3), (2, 70, 3, 8), (2, 9, 12, 32)] {
            let hidden = heads * d;
            let rows = batch * seq;
            let qkv: Vec<f32> = random(&mut r, rows * 3 * hidden)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            let dout = random(&mut r, rows * hidden);
            // Padded sequences: a prefix kept; the last sequence of a batch of 3 fully masked.
            let mut mask = vec![false; rows];
            for b in 0..batch {
                let len = if batch == 3 && b == 2 {
                    0
                } else {
                    r.random_range(1..=seq)
                };
                mask[b * seq..b * seq + len].fill(true);
            }
            let tokens: Vec<[u32; 4]> = mask.iter().map(|&m| [0, 0, 0, m as u32]).collect();
            let tb = gpu.upload("tokens", &tokens).unwrap();
            let qt = Tensor::from_f32(&gpu, &qkv, rows, 3 * hidden).unwrap();
            let dt = Tensor::from_f32(&gpu, &dout, rows, hidden).unwrap();
            let dq = poisoned(&gpu, rows, 3 * hidden);
            let scratch = ops::AttentionScratch::new(&gpu, batch, seq, heads).unwrap();
            run(
                &gpu,
                ops::attention_grad(&gpu, &qt, &tb, seq, heads, &dt, &scratch, &dq).unwrap(),
            );
            let want = cpu::attention_grad(&f64s(&qkv), &mask, seq, heads, hidden, &f64s(&dout));
            // Sums over ≤ seq keys of products of O(1) terms (|q·k| scale ≤ 4 d^½): judged
            // against the largest gradient of the head's block.
            let big = want.iter().fold(0f64, |a, v| a.max(v.abs())).max(1e-6);
            let scale = vec![big; want.len()];
            let what = format!(
                "attention gradient {batch}×{seq}, {heads} heads of {d} on {}",
                gpu.caps.name
            );
            let tol = 8.0 * (seq + d + 8) as f64 / (1u64 << 24) as f64;
            assert_close(&values(&gpu, &dq, &what), &want, &scale, tol, &what);
        }
        // Sequences beyond the kernel's limit are typed errors.
        let q = Tensor::from_f32(&gpu, &vec![0.0; 600 * 12], 600, 12).unwrap();
        let d = Tensor::from_f32(&gpu, &vec![0.0; 600 * 4], 600, 4).unwrap();
        let tb = gpu.upload("tokens", &vec![[0u32; 4]; 600]).unwrap();
        let s = ops::AttentionScratch::new(&gpu, 1, 600, 1).unwrap();
        assert!(ops::attention_grad(&gpu, &q, &tb, 600, 1, &d, &s, &q).is_err());
    }
}
