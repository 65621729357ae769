//! An MLP training step on the device against the f64 reference (gradients of every layer
//! and the AdamW update, full and short batches, every activation), the reference's
//! gradients against finite differences, and a short distillation of the digits classifier
//! into a student of half its hidden width that lowers the held-out loss.

mod common;

use common::train::{digits_split, f64s};
use common::{all_gpus, random, rng};
use rand::Rng;
use sparq::activation::Activation;
use sparq::model::config::{Architecture, MlpConfig};
use sparq::model::loader::WeightFile;
use sparq::train::mlp::{DistillSettings, MlpTrainer, Rows, distill};
use sparq::train::reference::{self as cpu, MlpParams};
use sparq::train::student::{StudentSpec, mlp_student, mlp_teacher};
use sparq::train::{AdamW, Decay, Loss};

type Layers = Vec<(Vec<f32>, Vec<f32>)>;

fn random_layers(r: &mut rand::rngs::StdRng, sizes: &[usize]) -> Layers {
    sizes
        .windows(2)
        .map(|w| (random(r, w[0] * w[1]), random(r, w[1])))
        .collect()
}

fn reference(sizes: &[usize], layers: &Layers, activation: Activation) -> MlpParams {
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    MlpParams {
        sizes: sizes.to_vec(),
        layers: layers.iter().map(|(w, b)| (f(w), f(b))).collect(),
        activation,
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let mut r = rng("train mlp differences");
    let sizes = [5, 4, 6, 3];
    let layers = random_layers(&mut r, &sizes);
    let rows = 4;
    let x: Vec<f64> = (0..rows * 5).map(|_| r.random_range(-1.0..1.0)).collect();
    let t: Vec<f64> = (0..rows * 3).map(|_| r.random_range(-2.0..2.0)).collect();
    let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..3)).collect();
    // ReLU's kink makes differences unreliable; the smooth activations cover the chain.
    for act in [Activation::Gelu, Activation::Silu] {
        for kind in [
            Loss::Distill {
                temperature: 2.0,
                alpha: 0.5,
            },
            Loss::Mse,
            Loss::Cosine,
        ] {
            let p = reference(&sizes, &layers, act);
            let (_, grads) = p.loss_and_grads(kind, &x, &t, &labels);
            let h = 1e-6;
            for (l, grad) in grads.iter().enumerate() {
                for (which, len) in [(0, p.layers[l].0.len()), (1, p.layers[l].1.len())] {
                    for i in 0..len {
                        let at = |delta: f64| {
                            let mut q = p.clone();
                            let v = if which == 0 {
                                &mut q.layers[l].0
                            } else {
                                &mut q.layers[l].1
                            };
                            v[i] += delta;
                            q.loss_and_grads(kind, &x, &t, &labels).0
                        };
                        let fd = (at(h) - at(-h)) / (2.0 * h);
                        let g = if which == 0 { grad.0[i] } else { grad.1[i] };
                        assert!(
                            (fd - g).abs() < 1e-6 * (1.0 + g.abs()),
                            "{act:?} {kind:?} layer {l} {} [{i}]: {g} vs differences {fd}",
                            ["weight", "bias"][which]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_training_step_matches_the_reference() {
    let mut r = rng("train mlp step");
    let sizes = [13, 9, 7, 5];
    for gpu in all_gpus() {
        for act in [Activation::Relu, Activation::Gelu, Activation::Silu] {
            for (kind, max_norm) in [
                (
                    Loss::Distill {
                        temperature: 2.0,
                        alpha: 0.5,
                    },
                    0.3,
                ),
                (Loss::Mse, 0.0),
                (Loss::Cosine, 10.0),
            ] {
                let layers = random_layers(&mut r, &sizes);
                let config = MlpConfig {
                    sizes: sizes.to_vec(),
                    activation: act,
                };
                let opt = AdamW {
                    lr: 0.01,
                    max_norm,
                    warmup: 1,
                    steps: 10,
                    decay: Decay::Linear,
                    ..AdamW::default()
                };
                let cap = 6;
                let mut net = MlpTrainer::new(&gpu, config, &layers, kind, opt, cap).unwrap();
                let mut p = reference(&sizes, &layers, act);
                let mut moments: Vec<[Vec<f64>; 4]> = p
                    .layers
                    .iter()
                    .map(|(w, b)| {
                        [
                            vec![0.0; w.len()],
                            vec![0.0; w.len()],
                            vec![0.0; b.len()],
                            vec![0.0; b.len()],
                        ]
                    })
                    .collect();
                // A full batch, then a short one (the last batch of an epoch).
                for (step, rows) in [(1, cap), (2, 4)] {
                    let x = random(&mut r, rows * 13);
                    let t: Vec<f32> = random(&mut r, rows * 5).iter().map(|v| v * 3.0).collect();
                    let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..5)).collect();
                    let loss = net
                        .step(&Rows {
                            x: &x,
                            teacher: &t,
                            labels: &labels,
                        })
                        .unwrap();
                    let (want_loss, grads) = p.loss_and_grads(kind, &f64s(&x), &f64s(&t), &labels);
                    let what = format!(
                        "{act:?} {kind:?} step {step} of {rows} rows on {}",
                        gpu.caps.name
                    );
                    assert!(
                        (loss - want_loss).abs() < 1e-4 * (1.0 + want_loss.abs()),
                        "{what}: loss {loss} vs {want_loss}"
                    );
                    let got = net.gradients().unwrap();
                    for (l, ((gw, gb), (ww, wb))) in got.iter().zip(&grads).enumerate() {
                        for (g, w, name) in [(gw, ww, "dW"), (gb, wb, "db")] {
                            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
                            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                                // f32 through three layers: judged against the gradient's norm.
                                assert!(
                                    (*a as f64 - b).abs() <= 1e-4 * (norm + 1e-3),
                                    "{what}: layer {l} {name}[{i}] {a} vs {b}"
                                );
                            }
                        }
                    }
                    let flat: Vec<&[f64]> =
                        grads.iter().flat_map(|(w, b)| [&w[..], &b[..]]).collect();
                    let clip = cpu::clip_factor(&flat, max_norm as f64);
                    for (l, ((w, b), (gw, gb))) in p.layers.iter_mut().zip(&grads).enumerate() {
                        let [mw, vw, mb, vb] = &mut moments[l];
                        cpu::adamw_step(&opt, step, true, clip, w, gw, mw, vw, None);
                        cpu::adamw_step(&opt, step, false, clip, b, gb, mb, vb, None);
                    }
                    for (l, ((gw, gb), (ww, wb))) in
                        net.weights().unwrap().iter().zip(&p.layers).enumerate()
                    {
                        for (g, w, name) in [(gw, ww, "W"), (gb, wb, "b")] {
                            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                                // A step moves a weight by about lr = 0.01; its f32 error is
                                // far below that unless the gradient's sign flips at ~0.
                                assert!(
                                    (*a as f64 - b).abs() <= 2e-4,
                                    "{what}: layer {l} {name}[{i}] {a} vs {b}"
                                );
                            }
                        }
                    }
                }
                // Shapes and labels that do not fit are typed errors.
                let bad = Rows {
                    x: &[0.0; 12],
                    teacher: &[0.0; 5],
                    labels: &[0],
                };
                assert!(net.step(&bad).is_err());
                if let Loss::Distill { .. } = kind {
                    let label = Rows {
                        x: &[0.0; 13],
                        teacher: &[0.0; 5],
                        labels: &[5],
                    };
                    assert!(net.step(&label).is_err());
                }
            }
        }
    }
}

/// The digits classifier: its file, architecture, configuration and layers.
fn digits_teacher() -> (WeightFile, Architecture, MlpConfig, Layers) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/digits_mlp.safetensors"
    );
    let file = WeightFile::open(std::path::Path::new(path)).unwrap();
    let (arch, config, layers) = mlp_teacher(&file).unwrap();
    (file, arch, config, layers)
}

#[test]
fn distilling_digits_into_half_the_width_lowers_the_held_out_loss() {
    let (file, arch, tc, teacher) = digits_teacher();
    let student = mlp_student(&file, &arch, StudentSpec::Neurons(0.5)).unwrap();
    let sc = &student.config;
    assert_eq!(sc.sizes, [64, 32, 10]);
    // The fixture holds the 360 test images: 240 to train on, 120 held out.
    let (train, held_out) = digits_split();
    let settings = DistillSettings {
        loss: Loss::Distill {
            temperature: 2.0,
            alpha: 0.5,
        },
        opt: AdamW {
            lr: 3e-3,
            warmup: 10,
            steps: 150,
            ..AdamW::default()
        },
        batch: 32,
        seed: 7,
        eval_every: 50,
    };
    for gpu in all_gpus() {
        let mut calls = 0;
        let (trained, report) = distill(
            &gpu,
            (&tc, &teacher),
            &student,
            &train,
            &held_out,
            &settings,
            |step, steps, loss| {
                calls += 1;
                assert!(step <= steps && loss.is_finite());
            },
        )
        .unwrap();
        println!(
            "{} hidden on {}: teacher accuracy {:.3}, {:?}",
            sc.sizes[1], gpu.caps.name, report.teacher_accuracy, report.evaluations
        );
        assert_eq!(calls, 150);
        assert_eq!(trained.len(), 2);
        let (first, last) = (report.evaluations[0], *report.evaluations.last().unwrap());
        assert_eq!(report.evaluations.len(), 4);
        assert!(
            last.loss < 0.7 * first.loss,
            "held-out loss {} → {} on {}",
            first.loss,
            last.loss,
            gpu.caps.name
        );
        assert!(last.agreement >= first.agreement, "{first:?} → {last:?}");
    }
}

#[test]
fn a_pruned_student_keeps_its_sparsity_while_it_trains() {
    let (file, arch, tc, teacher) = digits_teacher();
    let (train, held_out) = digits_split();
    let settings = DistillSettings {
        loss: Loss::Distill {
            temperature: 2.0,
            alpha: 0.5,
        },
        opt: AdamW {
            lr: 3e-3,
            warmup: 5,
            steps: 60,
            ..AdamW::default()
        },
        batch: 32,
        seed: 3,
        eval_every: 0,
    };
    let gpu = all_gpus().remove(0);
    for spec in ["prune:2:4", "prune:magnitude:0.7"] {
        let student = mlp_student(&file, &arch, StudentSpec::parse(spec).unwrap()).unwrap();
        let masks = student.masks.clone().unwrap();
        let (trained, report) = distill(
            &gpu,
            (&tc, &teacher),
            &student,
            &train,
            &held_out,
            &settings,
            |_, _, _| {},
        )
        .unwrap();
        let (first, last) = (report.evaluations[0], report.evaluations[1]);
        println!("{spec}: {first:?} → {last:?}");
        assert!(last.loss < first.loss, "{spec}: {first:?} → {last:?}");
        for ((w, _), mask) in trained.iter().zip(&masks) {
            for (i, (v, m)) in w.iter().zip(mask).enumerate() {
                assert!(*m == 1.0 || *v == 0.0, "{spec}: pruned weight {i} is {v}");
            }
            if spec == "prune:2:4" {
                for g in w.chunks(4) {
                    assert!(
                        g.iter().filter(|v| **v != 0.0).count() <= 2,
                        "{spec}: {g:?}"
                    );
                }
            } else {
                let zeros = w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64;
                assert!((zeros - 0.7).abs() < 0.01, "{spec}: {zeros} zeros");
            }
        }
    }
    // A mask that does not fit is refused.
    let config = MlpConfig {
        sizes: vec![2, 3],
        activation: Activation::Relu,
    };
    let net = MlpTrainer::new(
        &gpu,
        config,
        &[(vec![0.0; 6], vec![0.0; 3])],
        Loss::Mse,
        AdamW::default(),
        4,
    )
    .unwrap();
    assert!(net.with_masks(&[vec![1.0; 5]]).is_err());
}
