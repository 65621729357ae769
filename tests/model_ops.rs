//! Every model kernel (embedding, norms, activations, softmax, attention, pooling) against
//! its f64 CPU reference at awkward shapes, outputs poisoned first, on every adapter.

mod common;

use common::{all_gpus, random, rng};
use rand::Rng;
use sparq::Gpu;
use sparq::gpu::{Dispatch, record_pass};
use sparq::model::config::{Activation, Pooling};
use sparq::model::ops::{self, AttentionLayout, Norm, Table};
use sparq::model::reference as cpu;
use sparq::tensor::{ActDType, Tensor};

fn run(gpu: &Gpu, d: Dispatch) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, &[d], None);
    gpu.submit_and_wait(enc).unwrap();
}

fn out(gpu: &Gpu, rows: usize, cols: usize) -> Tensor {
    let t = Tensor::empty(gpu, rows, cols, ActDType::F32).unwrap();
    t.poison(gpu);
    t
}

/// Compares with |got − want| ≤ tol · (1 + |want|) and checks the zero padding.
fn check(gpu: &Gpu, t: &Tensor, want: &[f64], tol: f64, what: &str) {
    let padded = t.to_f32_padded(gpu).unwrap();
    let s = t.stride();
    for r in 0..t.rows {
        for c in 0..s {
            let g = padded[r * s + c];
            if c >= t.cols {
                assert_eq!(g, 0.0, "{what}: padding [{r}, {c}] is {g}");
                continue;
            }
            let w = want[r * t.cols + c];
            assert!(
                g.is_finite() && (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
                "{what} on {}: [{r}, {c}] got {g}, want {w}",
                gpu.caps.name
            );
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn tokens(gpu: &Gpu, rows: &[[u32; 4]]) -> wgpu::Buffer {
    gpu.upload("tokens", rows).unwrap()
}

#[test]
fn embedding_lookup_sums_tables() {
    let mut r = rng("embedding");
    for gpu in all_gpus() {
        for (rows, cols, vocab) in [(1, 1, 1), (7, 13, 11), (20, 130, 37)] {
            let (npos, ntypes) = (9, 2);
            let w = random(&mut r, vocab * cols);
            let p = random(&mut r, npos * cols);
            let ty = random(&mut r, ntypes * cols);
            let tok: Vec<[u32; 4]> = (0..rows)
                .map(|_| {
                    [
                        r.random_range(0..vocab as u32),
                        r.random_range(0..npos as u32),
                        r.random_range(0..ntypes as u32),
                        1,
                    ]
                })
                .collect();
            let tw = Table::new(&gpu, "w", &w, vocab, cols).unwrap();
            let tp = Table::new(&gpu, "p", &p, npos, cols).unwrap();
            let tt = Table::new(&gpu, "t", &ty, ntypes, cols).unwrap();
            let tb = tokens(&gpu, &tok);
            for with_extra in [false, true] {
                let y = out(&gpu, rows, cols);
                let (pp, tt2) = if with_extra {
                    (Some(&tp), Some(&tt))
                } else {
                    (None, None)
                };
                let ds = ops::embed(&gpu, &tb, &tw, pp, tt2, &y).unwrap();
                assert_eq!(ds.len(), 1, "a small table is one buffer");
                ds.into_iter().for_each(|d| run(&gpu, d));
                let (w, p, ty) = (&w, &p, &ty);
                let want: Vec<f64> = tok
                    .iter()
                    .flat_map(|t| {
                        (0..cols).map(move |c| {
                            let mut v = w[t[0] as usize * cols + c] as f64;
                            if with_extra {
                                v += p[t[1] as usize * cols + c] as f64
                                    + ty[t[2] as usize * cols + c] as f64;
                            }
                            v
                        })
                    })
                    .collect::<Vec<_>>();
                check(
                    &gpu,
                    &y,
                    &want,
                    1e-6,
                    &format!("embed {rows}×{cols} extra={with_extra}"),
                );
            }
        }
    }
}

#[test]
fn layer_norm_and_rms_norm_with_residual() {
    let mut r = rng("norm");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (5, 7), (3, 300), (2, 1031)] {
            let x = random(&mut r, rows * cols);
            let res = random(&mut r, rows * cols);
            let gamma = random(&mut r, cols);
            let beta = random(&mut r, cols);
            let xt = Tensor::from_f32(&gpu, &x, rows, cols).unwrap();
            let rt = Tensor::from_f32(&gpu, &res, rows, cols).unwrap();
            for rms in [false, true] {
                for with_res in [false, true] {
                    let eps = 1e-5;
                    let n = if rms {
                        Norm::rms(&gpu, &gamma, eps).unwrap()
                    } else {
                        Norm::layer(&gpu, &gamma, &beta, eps).unwrap()
                    };
                    let y = out(&gpu, rows, cols);
                    run(
                        &gpu,
                        n.plan(&gpu, &xt, with_res.then_some(&rt), &y).unwrap(),
                    );
                    let rf = f64s(&res);
                    let want = cpu::norm(
                        &f64s(&x),
                        with_res.then_some(&rf[..]),
                        &gamma,
                        (!rms).then_some(&beta[..]),
                        eps,
                        cols,
                    );
                    // One column is all mean: LayerNorm gives beta, RMSNorm x/sqrt(x²+eps).
                    check(
                        &gpu,
                        &y,
                        &want,
                        2e-5,
                        &format!("norm rms={rms} res={with_res} {rows}×{cols}"),
                    );
                    // The same with the sum written too (Norm::plan_sum): the normed rows
                    // as above, and the sum exactly x + res in f32, padding zero.
                    if with_res {
                        let (y, sum) = (out(&gpu, rows, cols), out(&gpu, rows, cols));
                        run(&gpu, n.plan_sum(&gpu, &xt, &rt, &sum, &y).unwrap());
                        let what = format!("norm+sum rms={rms} {rows}×{cols}");
                        check(&gpu, &y, &want, 2e-5, &what);
                        let got = sum.to_f32_padded(&gpu).unwrap();
                        let stride = sum.stride();
                        for (i, v) in got.iter().enumerate() {
                            let (row, c) = (i / stride, i % stride);
                            let want = match c < cols {
                                true => x[row * cols + c] + res[row * cols + c],
                                false => 0.0,
                            };
                            assert_eq!(v.to_bits(), want.to_bits(), "{what}: sum [{row}, {c}]");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn activations_and_residual_add() {
    let mut r = rng("elementwise");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (3, 5), (17, 129)] {
            // Spread inputs over [-8, 8) to reach the tails of erf and tanh.
            let a: Vec<f32> = random(&mut r, rows * cols)
                .iter()
                .map(|v| v * 8.0)
                .collect();
            let b = random(&mut r, rows * cols);
            let at = Tensor::from_f32(&gpu, &a, rows, cols).unwrap();
            let bt = Tensor::from_f32(&gpu, &b, rows, cols).unwrap();
            let acts = [
                None,
                Some(Activation::Relu),
                Some(Activation::Gelu),
                Some(Activation::GeluTanh),
                Some(Activation::Silu),
            ];
            for act in acts {
                for with_b in [false, true] {
                    let y = out(&gpu, rows, cols);
                    run(
                        &gpu,
                        ops::elementwise(&gpu, act, &at, with_b.then_some(&bt), &y).unwrap(),
                    );
                    let want: Vec<f64> = a
                        .iter()
                        .zip(&b)
                        .map(|(&x, &z)| {
                            let v = x as f64 + if with_b { z as f64 } else { 0.0 };
                            act.map_or(v, |f| cpu::activate(f, v))
                        })
                        .collect();
                    check(
                        &gpu,
                        &y,
                        &want,
                        2e-6,
                        &format!("{act:?} b={with_b} {rows}×{cols}"),
                    );
                }
            }
        }
    }
}

#[test]
fn row_softmax() {
    let mut r = rng("softmax");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (6, 3), (2, 257), (3, 1000)] {
            let x: Vec<f32> = random(&mut r, rows * cols)
                .iter()
                .map(|v| v * 20.0)
                .collect();
            let xt = Tensor::from_f32(&gpu, &x, rows, cols).unwrap();
            let y = out(&gpu, rows, cols);
            run(&gpu, ops::softmax(&gpu, &xt, &y).unwrap());
            check(
                &gpu,
                &y,
                &cpu::softmax(&f64s(&x), cols),
                2e-6,
                &format!("softmax {rows}×{cols}"),
            );
        }
    }
}

#[test]
fn attention_with_padding_mask() {
    let mut r = rng("attention");
    for gpu in all_gpus() {
        // (batch, seq, heads, head size): odd sizes, one token, heads of 128, long sequences,
        // sequences around the 64·QPI/split-query tiles and the 4-key chunk.
        for (batch, seq, heads, d) in [
            (1, 1, 1, 1),
            (3, 1, 2, 5),
            (2, 3, 4, 1),
            (2, 5, 3, 7),
            (3, 9, 2, 32),
            (4, 17, 3, 5),
            (1, 33, 1, 128),
            (3, 64, 2, 64),
            (4, 65, 3, 32),
            (2, 130, 4, 6),
            (3, 130, 2, 64),
            (2, 130, 1, 128),
            (2, 257, 1, 32),
            (2, 300, 2, 5),
        ] {
            let hidden = heads * d;
            let rows = batch * seq;
            let qkv: Vec<f32> = random(&mut r, rows * 3 * hidden)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            // Sequences keep a random prefix (at least one token), odd ones a random subset
            // instead, and the last one none (all keys masked: zeros).
            let mut mask = vec![false; rows];
            for b in 0..batch {
                let keys = &mut mask[b * seq..(b + 1) * seq];
                if b == batch - 1 && batch > 1 {
                    continue;
                }
                if b % 2 == 1 {
                    keys.iter_mut().for_each(|k| *k = r.random_bool(0.5));
                } else {
                    let keep = r.random_range(1..=seq);
                    keys[..keep].iter_mut().for_each(|k| *k = true);
                }
            }
            let tok: Vec<[u32; 4]> = mask.iter().map(|&m| [0, 0, 0, m as u32]).collect();
            let tb = tokens(&gpu, &tok);
            let qt = Tensor::from_f32(&gpu, &qkv, rows, 3 * hidden).unwrap();
            let want = cpu::attention(&f64s(&qkv), &mask, seq, heads, hidden);
            // Every key split with every QPI the head size allows, then the layout
            // `attention` picks for the shape (None).
            let layouts = [1, 2, 4, 8].into_iter().flat_map(|split| {
                [1, 2, 4]
                    .into_iter()
                    .filter(move |&qpi| qpi <= AttentionLayout::max_qpi(d))
                    .map(move |qpi| Some(AttentionLayout { split, qpi }))
            });
            for layout in layouts.chain([None]) {
                let y = out(&gpu, rows, hidden);
                let disp = match layout {
                    Some(l) => ops::attention_with(&gpu, &qt, &tb, seq, heads, &y, l),
                    None => ops::attention(&gpu, &qt, &tb, seq, heads, &y),
                };
                run(&gpu, disp.unwrap());
                check(
                    &gpu,
                    &y,
                    &want,
                    1e-5,
                    &format!("attention b={batch} s={seq} h={heads} d={d} {layout:?}"),
                );
            }
        }
    }
}

#[test]
fn attention_split_follows_the_grid() {
    // MiniLM (12 heads, 128 tokens): one sequence has 24 plain workgroups, sixteen 384.
    assert_eq!(ops::attention_split(1, 128, 12), 8);
    assert_eq!(ops::attention_split(4, 128, 12), 4);
    assert_eq!(ops::attention_split(8, 128, 12), 2);
    assert_eq!(ops::attention_split(16, 128, 12), 1);
    assert_eq!(ops::attention_split(64, 128, 12), 1);
    // Short sequences leave each invocation at least two chunks of keys.
    assert_eq!(ops::attention_split(1, 20, 1), 2);
    assert_eq!(ops::attention_split(1, 5, 1), 1);
}

#[test]
fn attention_layout_follows_the_grid_and_head_size() {
    let layout = |split, qpi| AttentionLayout { split, qpi };
    // MiniLM: batch 64 has 1536 plain workgroups, so two queries per invocation; batch 16
    // (384) keeps one, batch 1 splits keys instead.
    assert_eq!(AttentionLayout::for_shape(64, 128, 12, 32), layout(1, 2));
    assert_eq!(AttentionLayout::for_shape(16, 128, 12, 32), layout(1, 1));
    assert_eq!(AttentionLayout::for_shape(1, 128, 12, 32), layout(8, 1));
    // Heads over 64 keep one query per invocation (registers).
    assert_eq!(AttentionLayout::for_shape(64, 128, 12, 64), layout(1, 2));
    assert_eq!(AttentionLayout::for_shape(64, 128, 12, 65), layout(1, 1));
    for (d, most) in [(1, 4), (32, 4), (33, 2), (64, 2), (65, 1), (128, 1)] {
        assert_eq!(AttentionLayout::max_qpi(d), most, "head size {d}");
    }
}

#[test]
fn pooling_and_l2_normalisation() {
    let mut r = rng("pool");
    for gpu in all_gpus() {
        for (batch, seq, cols) in [(1, 1, 1), (3, 5, 7), (2, 40, 385)] {
            let rows = batch * seq;
            let x = random(&mut r, rows * cols);
            let mask: Vec<bool> = (0..rows)
                .map(|i| i % seq == 0 || r.random_bool(0.6))
                .collect();
            let tok: Vec<[u32; 4]> = mask.iter().map(|&m| [0, 0, 0, m as u32]).collect();
            let tb = tokens(&gpu, &tok);
            let xt = Tensor::from_f32(&gpu, &x, rows, cols).unwrap();
            for pooling in [Pooling::Mean, Pooling::Cls] {
                for normalize in [false, true] {
                    for masked in [false, true] {
                        let y = out(&gpu, batch, cols);
                        let d = ops::pool(
                            &gpu,
                            &xt,
                            masked.then_some(&tb),
                            seq,
                            pooling,
                            normalize,
                            &y,
                        );
                        run(&gpu, d.unwrap());
                        let want = cpu::pool(
                            &f64s(&x),
                            masked.then_some(&mask[..]),
                            seq,
                            cols,
                            pooling,
                            normalize,
                        );
                        check(
                            &gpu,
                            &y,
                            &want,
                            1e-5,
                            &format!(
                                "{pooling:?} norm={normalize} mask={masked} {batch}×{seq}×{cols}"
                            ),
                        );
                    }
                }
            }
        }
        // seq = 1 without a mask: plain row-wise L2 normalisation.
        let x = random(&mut r, 9 * 5);
        let xt = Tensor::from_f32(&gpu, &x, 9, 5).unwrap();
        let y = out(&gpu, 9, 5);
        run(
            &gpu,
            ops::pool(&gpu, &xt, None, 1, Pooling::Mean, true, &y).unwrap(),
        );
        let want: Vec<f64> = x
            .chunks(5)
            .flat_map(|row| {
                let n = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
                row.iter().map(move |&v| v as f64 / n)
            })
            .collect();
        check(&gpu, &y, &want, 1e-6, "l2 normalise");
    }
}

#[test]
fn shape_errors_are_typed() {
    let gpu = &all_gpus()[0];
    let a = Tensor::from_f32(gpu, &[0.0; 12], 3, 4).unwrap();
    let b = Tensor::from_f32(gpu, &[0.0; 10], 2, 5).unwrap();
    let tb = tokens(gpu, &[[0, 0, 0, 1]; 3]);
    assert!(matches!(
        ops::elementwise(gpu, None, &a, Some(&b), &a),
        Err(sparq::Error::Input(sparq::InputError::Shape(_)))
    ));
    assert!(matches!(
        ops::softmax(gpu, &a, &b),
        Err(sparq::Error::Input(sparq::InputError::Shape(_)))
    ));
    // 4 columns do not split into 3 heads; qkv 3 × 4 is not 3 × 3H.
    assert!(matches!(
        ops::attention(gpu, &a, &tb, 3, 3, &a),
        Err(sparq::Error::Input(sparq::InputError::Shape(_)))
    ));
    assert!(matches!(
        ops::attention_with(gpu, &a, &tb, 3, 1, &a, AttentionLayout { split: 3, qpi: 1 }),
        Err(sparq::Error::Input(sparq::InputError::Invalid(_)))
    ));
    // QPI 3 is not a choice; 128-wide heads take only QPI 1.
    let qkv128 = Tensor::from_f32(gpu, &[0.0; 3 * 384], 3, 384).unwrap();
    let out128 = Tensor::from_f32(gpu, &[0.0; 3 * 128], 3, 128).unwrap();
    for (x, y, qpi) in [(&a, &a, 3), (&qkv128, &out128, 2)] {
        assert!(matches!(
            ops::attention_with(gpu, x, &tb, 3, 1, y, AttentionLayout { split: 1, qpi }),
            Err(sparq::Error::Input(sparq::InputError::Invalid(_)))
        ));
    }
    assert!(matches!(
        ops::pool(gpu, &a, Some(&tb), 2, Pooling::Mean, false, &b),
        Err(sparq::Error::Input(sparq::InputError::Shape(_)))
    ));
    let n = Norm::layer(gpu, &[1.0; 5], &[0.0; 5], 1e-5).unwrap();
    assert!(matches!(
        n.plan(gpu, &a, None, &a),
        Err(sparq::Error::Input(sparq::InputError::Shape(_)))
    ));
}
