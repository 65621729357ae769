//! The training kernels (strided matmul for both gradients of a linear layer, activation and
//! bias gradients, the distillation losses, gradient norm and AdamW) against their f64
//! references at awkward shapes with poisoned outputs, on every adapter; the references'
//! gradients against central finite differences.

mod common;

use common::train::{poisoned, run, values};
use common::{all_gpus, assert_close, random, rng};
use rand::Rng;
use sparq::Gpu;
use sparq::activation::Activation;
use sparq::gpu::ParamBuffer;
use sparq::model::reference::activate;
use sparq::tensor::Tensor;
use sparq::train::ops::{self, AdamWTensors, Op};
use sparq::train::{AdamW, Decay, Loss, reference as cpu};

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn tensor(gpu: &Gpu, v: &[f32], rows: usize, cols: usize) -> Tensor {
    Tensor::from_f32(gpu, v, rows, cols).unwrap()
}

fn transposed(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| v[r * cols + c])
        .collect()
}

#[test]
fn matmul_in_every_orientation_with_bias_and_accumulation() {
    let mut r = rng("train matmul");
    for gpu in all_gpus() {
        for (m, n, k) in [
            (1, 1, 1),
            (3, 5, 7),
            (65, 9, 130),
            (17, 70, 1),
            (2, 129, 33),
        ] {
            for (op_a, op_b) in [
                (Op::N, Op::T),
                (Op::N, Op::N),
                (Op::T, Op::N),
                (Op::T, Op::T),
            ] {
                // Operands stored so that op(a) is m × k and op(b) is k × n.
                let a_shape = if op_a == Op::N { (m, k) } else { (k, m) };
                let b_shape = if op_b == Op::N { (k, n) } else { (n, k) };
                let a = random(&mut r, m * k);
                let b = random(&mut r, k * n);
                let bias = random(&mut r, n);
                let prior = random(&mut r, m * n);
                let (at, bt) = (
                    tensor(&gpu, &a, a_shape.0, a_shape.1),
                    tensor(&gpu, &b, b_shape.0, b_shape.1),
                );
                let (want, scale) =
                    cpu::matmul(&a, a_shape, op_a == Op::T, &b, b_shape, op_b == Op::T);
                for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                    let c = if accumulate {
                        tensor(&gpu, &prior, m, n)
                    } else {
                        poisoned(&gpu, m, n)
                    };
                    let biast = tensor(&gpu, &bias, 1, n);
                    let bias_arg = with_bias.then_some(&biast);
                    let d = ops::matmul(&gpu, &at, op_a, &bt, op_b, bias_arg, &c, accumulate);
                    run(&gpu, vec![d.unwrap()]);
                    let what = format!(
                        "{op_a:?}{op_b:?} {m}×{n}×{k} bias {with_bias} accumulate {accumulate} on {}",
                        gpu.caps.name
                    );
                    let got = values(&gpu, &c, &what);
                    let mut want = want.clone();
                    let mut scale = scale.clone();
                    for i in 0..m * n {
                        let terms = [
                            if with_bias { bias[i % n] as f64 } else { 0.0 },
                            if accumulate { prior[i] as f64 } else { 0.0 },
                        ];
                        want[i] += terms[0] + terms[1];
                        scale[i] += terms[0].abs() + terms[1].abs();
                    }
                    // An f32 sum of k products and two more terms: |error| ≤ (k + 2)·u·scale.
                    assert_close(&got, &want, &scale, (k + 2) as f64 * U * 1.01, &what);
                }
            }
        }
        // Shapes that do not chain are typed errors.
        let a = tensor(&gpu, &[0.0; 6], 2, 3);
        let c = poisoned(&gpu, 2, 2);
        assert!(ops::matmul(&gpu, &a, Op::N, &a, Op::N, None, &c, false).is_err());
    }
}

#[test]
fn linear_layer_gradients_through_matmul() {
    // dX = dY·W and dW = dYᵀ·X are the gradients of Σ dY ⊙ (X·Wᵀ): checked against
    // the explicit transposes.
    let mut r = rng("train linear gradients");
    for gpu in all_gpus() {
        let (m, n, k) = (11, 6, 19);
        let (x, w, dy) = (
            random(&mut r, m * k),
            random(&mut r, n * k),
            random(&mut r, m * n),
        );
        let (xt, wt, dyt) = (
            tensor(&gpu, &x, m, k),
            tensor(&gpu, &w, n, k),
            tensor(&gpu, &dy, m, n),
        );
        let (dx, dw) = (poisoned(&gpu, m, k), poisoned(&gpu, n, k));
        run(
            &gpu,
            vec![
                ops::matmul(&gpu, &dyt, Op::N, &wt, Op::N, None, &dx, false).unwrap(),
                ops::matmul(&gpu, &dyt, Op::T, &xt, Op::N, None, &dw, false).unwrap(),
            ],
        );
        let (want_dx, s_dx) = cpu::matmul(&dy, (m, n), false, &w, (n, k), false);
        let dyt_host = transposed(&dy, m, n);
        let (want_dw, s_dw) = cpu::matmul(&dyt_host, (n, m), false, &x, (m, k), false);
        assert_close(
            &values(&gpu, &dx, "dX"),
            &want_dx,
            &s_dx,
            (n + 2) as f64 * U * 1.01,
            "dX",
        );
        assert_close(
            &values(&gpu, &dw, "dW"),
            &want_dw,
            &s_dw,
            (m + 2) as f64 * U * 1.01,
            "dW",
        );
    }
}

const ACTS: [Activation; 4] = [
    Activation::Relu,
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::Silu,
];

#[test]
fn activation_derivatives_match_finite_differences() {
    let h = 1e-6;
    for act in ACTS {
        for i in -800..=800 {
            let x = i as f64 / 100.0 + 0.003;
            let fd = (activate(act, x + h) - activate(act, x - h)) / (2.0 * h);
            let g = cpu::activate_grad(act, x);
            assert!(
                (fd - g).abs() < 1e-6,
                "{act:?}'({x}) = {g}, differences give {fd}"
            );
        }
    }
}

#[test]
fn activation_gradients() {
    let mut r = rng("train activation gradients");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (3, 5), (17, 130)] {
            let z: Vec<f32> = random(&mut r, rows * cols)
                .iter()
                .map(|v| v * 8.0)
                .collect();
            let dy = random(&mut r, rows * cols);
            let (zt, dyt) = (tensor(&gpu, &z, rows, cols), tensor(&gpu, &dy, rows, cols));
            for act in ACTS {
                let dx = poisoned(&gpu, rows, cols);
                run(
                    &gpu,
                    vec![ops::act_grad(&gpu, act, &zt, &dyt, &dx).unwrap()],
                );
                let want: Vec<f64> = z
                    .iter()
                    .zip(&dy)
                    .map(|(&z, &d)| d as f64 * cpu::activate_grad(act, z as f64))
                    .collect();
                let scale: Vec<f64> = dy.iter().map(|d| d.abs() as f64 * 1.2 + 1e-30).collect();
                // f32 exp/erf/tanh on the device: a few 1e-7 of the derivative's size (≤ 1.13).
                let what = format!("{act:?}' {rows}×{cols} on {}", gpu.caps.name);
                assert_close(&values(&gpu, &dx, &what), &want, &scale, 2e-6, &what);
            }
        }
    }
}

#[test]
fn column_sums() {
    let mut r = rng("train column sums");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (7, 3), (200, 131)] {
            let x = random(&mut r, rows * cols);
            let prior = random(&mut r, cols);
            let xt = tensor(&gpu, &x, rows, cols);
            for accumulate in [false, true] {
                let y = if accumulate {
                    tensor(&gpu, &prior, 1, cols)
                } else {
                    poisoned(&gpu, 1, cols)
                };
                run(&gpu, vec![ops::col_sum(&gpu, &xt, &y, accumulate).unwrap()]);
                let mut want = vec![0.0; cols];
                let mut scale = vec![0.0; cols];
                for (i, v) in x.iter().enumerate() {
                    want[i % cols] += *v as f64;
                    scale[i % cols] += v.abs() as f64;
                }
                if accumulate {
                    for c in 0..cols {
                        want[c] += prior[c] as f64;
                        scale[c] += prior[c].abs() as f64;
                    }
                }
                let what = format!("column sums {rows}×{cols} accumulate {accumulate}");
                assert_close(
                    &values(&gpu, &y, &what),
                    &want,
                    &scale,
                    (rows + 1) as f64 * U * 1.01,
                    &what,
                );
            }
        }
    }
}

fn losses() -> Vec<Loss> {
    vec![
        Loss::Distill {
            temperature: 1.0,
            alpha: 1.0,
        },
        Loss::Distill {
            temperature: 4.0,
            alpha: 0.7,
        },
        Loss::Distill {
            temperature: 2.0,
            alpha: 0.0,
        },
        Loss::Mse,
        Loss::Cosine,
    ]
}

#[test]
fn loss_gradients_match_finite_differences() {
    let mut r = rng("train loss differences");
    let (rows, cols) = (3, 7);
    let s: Vec<f64> = (0..rows * cols)
        .map(|_| r.random_range(-3.0..3.0))
        .collect();
    let t: Vec<f64> = (0..rows * cols)
        .map(|_| r.random_range(-3.0..3.0))
        .collect();
    let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
    let h = 1e-6;
    for kind in losses() {
        let (_, g) = cpu::loss(kind, &s, &t, &labels, cols);
        for i in 0..s.len() {
            let (mut up, mut down) = (s.clone(), s.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (cpu::loss(kind, &up, &t, &labels, cols).0
                - cpu::loss(kind, &down, &t, &labels, cols).0)
                / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-6,
                "{kind:?} ∂/∂s[{i}] = {}, differences {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn losses_and_their_gradients() {
    let mut r = rng("train losses");
    for gpu in all_gpus() {
        for (cap, rows, cols) in [(1, 1, 1), (4, 3, 10), (9, 9, 300), (6, 2, 37)] {
            let s: Vec<f32> = random(&mut r, cap * cols).iter().map(|v| v * 6.0).collect();
            let t: Vec<f32> = random(&mut r, cap * cols).iter().map(|v| v * 6.0).collect();
            let labels: Vec<u32> = (0..cap).map(|_| r.random_range(0..cols as u32)).collect();
            let (st, tt) = (tensor(&gpu, &s, cap, cols), tensor(&gpu, &t, cap, cols));
            let lt = gpu.upload("labels", &labels).unwrap();
            for kind in losses() {
                let grad = poisoned(&gpu, cap, cols);
                let row_loss = poisoned(&gpu, cap, 1);
                let d = ops::loss(&gpu, kind, &st, &tt, Some(&lt), rows, &grad, &row_loss);
                run(&gpu, vec![d.unwrap()]);
                let f64s = |v: &[f32]| {
                    v[..rows * cols]
                        .iter()
                        .map(|&x| x as f64)
                        .collect::<Vec<_>>()
                };
                let (want_loss, mut want_grad) =
                    cpu::loss(kind, &f64s(&s), &f64s(&t), &labels, cols);
                want_grad.resize(cap * cols, 0.0);
                let what = format!(
                    "{kind:?} {rows} of {cap} rows × {cols} on {}",
                    gpu.caps.name
                );
                let got = values(&gpu, &grad, &what);
                // Softmax and norms in f32: errors of a few u per term, against the gradient's
                // own size (at most (T + 1) / rows per entry) and the row's.
                let scale = vec![4.0 / rows as f64; cap * cols];
                assert_close(&got, &want_grad, &scale, 1e-5, &what);
                let rl = row_loss.to_f32(&gpu).unwrap();
                let got_loss: f64 = rl[..rows].iter().map(|&v| v as f64).sum();
                assert!(
                    (got_loss - want_loss).abs() <= 1e-5 * (1.0 + want_loss.abs()),
                    "{what}: loss {got_loss}, want {want_loss}"
                );
            }
        }
        // Bad parameters and missing labels are typed errors, not NaNs.
        let s = tensor(&gpu, &[0.0; 4], 1, 4);
        let (g, l) = (poisoned(&gpu, 1, 4), poisoned(&gpu, 1, 1));
        let bad = Loss::Distill {
            temperature: 0.0,
            alpha: 1.0,
        };
        assert!(ops::loss(&gpu, bad, &s, &s, None, 1, &g, &l).is_err());
        let hard = Loss::Distill {
            temperature: 1.0,
            alpha: 0.5,
        };
        assert!(ops::loss(&gpu, hard, &s, &s, None, 1, &g, &l).is_err());
    }
}

#[test]
fn adamw_steps_with_clipping_masks_and_schedules() {
    let mut r = rng("train adamw");
    for gpu in all_gpus() {
        for (rows, cols) in [(1, 1), (5, 7), (33, 130)] {
            for (max_norm, masked, decayed) in [
                (0.0, false, true),
                (0.05, true, true),
                (100.0, false, false),
            ] {
                let opt = AdamW {
                    lr: 0.01,
                    warmup: 2,
                    steps: 6,
                    decay: Decay::Cosine,
                    weight_decay: 0.1,
                    max_norm,
                    ..AdamW::default()
                };
                let w0 = random(&mut r, rows * cols);
                let mask: Vec<f32> = (0..rows * cols)
                    .map(|_| r.random_range(0..2) as f32)
                    .collect();
                let other = random(&mut r, 5);
                let (w, m, v) = (
                    tensor(&gpu, &w0, rows, cols),
                    tensor(&gpu, &vec![0.0; rows * cols], rows, cols),
                    tensor(&gpu, &vec![0.0; rows * cols], rows, cols),
                );
                let maskt = tensor(&gpu, &mask, rows, cols);
                let norms = gpu.upload("norms", &[0f32; 2]).unwrap();
                let mut params = ParamBuffer::new(&gpu, 256).unwrap();
                let offset = params
                    .push(&opt.params(1, w.rows * w.stride(), 2, decayed))
                    .unwrap();
                let (mut wr, mut mr, mut vr): (Vec<f64>, Vec<f64>, Vec<f64>) = (
                    w0.iter().map(|&x| x as f64).collect(),
                    vec![0.0; rows * cols],
                    vec![0.0; rows * cols],
                );
                // A second tensor's gradient shares the norm (its slot holds Σ g² of `other`).
                let othert = tensor(&gpu, &other, 1, 5);
                for step in 1..=4 {
                    let g = random(&mut r, rows * cols);
                    let gt = tensor(&gpu, &g, rows, cols);
                    params
                        .write(offset, &opt.params(step, w.rows * w.stride(), 2, decayed))
                        .unwrap();
                    let t = AdamWTensors {
                        w: &w,
                        g: &gt,
                        m: &m,
                        v: &v,
                        mask: masked.then_some(&maskt),
                    };
                    run(
                        &gpu,
                        vec![
                            ops::sum_squares(&gpu, &gt, &norms, 0).unwrap(),
                            ops::sum_squares(&gpu, &othert, &norms, 1).unwrap(),
                            ops::adamw(&gpu, &t, &norms, &params, offset).unwrap(),
                        ],
                    );
                    let gr: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                    let or: Vec<f64> = other.iter().map(|&x| x as f64).collect();
                    let clip = cpu::clip_factor(&[&gr, &or], max_norm as f64);
                    let mk = masked.then_some(&mask[..]);
                    cpu::adamw_step(
                        &opt, step, decayed, clip, &mut wr, &gr, &mut mr, &mut vr, mk,
                    );
                    let what = format!(
                        "AdamW step {step} {rows}×{cols} clip {max_norm} mask {masked} on {}",
                        gpu.caps.name
                    );
                    // Each step moves a weight by at most about lr; the f32 update's error
                    // is a few u of the weight plus a few u of the step.
                    let scale: Vec<f64> = wr.iter().map(|x| x.abs() + 0.01).collect();
                    assert_close(&values(&gpu, &w, &what), &wr, &scale, 1e-5, &what);
                }
            }
        }
    }
}

#[test]
fn the_schedule_warms_up_and_decays() {
    let opt = AdamW {
        lr: 1.0,
        warmup: 4,
        steps: 12,
        decay: Decay::Linear,
        ..AdamW::default()
    };
    let lrs: Vec<f32> = (1..=12).map(|s| opt.lr_at(s)).collect();
    assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
    assert!((lrs[7] - 0.5).abs() < 1e-6, "{lrs:?}");
    assert_eq!(lrs[11], 0.0);
    let cos = AdamW {
        decay: Decay::Cosine,
        ..opt
    };
    assert!((cos.lr_at(8) - 0.5).abs() < 1e-6);
    let constant = AdamW {
        decay: Decay::Constant,
        ..opt
    };
    assert_eq!(constant.lr_at(12), 1.0);
    assert!(AdamW { lr: -1.0, ..opt }.validate().is_err());
    assert!(AdamW { beta2: 1.0, ..opt }.validate().is_err());
}
