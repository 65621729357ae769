//! Calibrated int4, binary and ternary rounding (`formats::gptq`) and pruning (`prune::calibrated`) on the host:
//! with uncorrelated inputs they are plain rounding and magnitude pruning, with correlated ones
//! they lower the error of the layer's outputs (also on inputs they were not calibrated on),
//! codes stay on each group's grid, patterns hold, and bad calls are refused.

mod common;

use common::rng;
use half::f16;
use rand::Rng;
use rand::rngs::StdRng;
use sparq::Error;
use sparq::InputError;
use sparq::formats::gptq::{Hessian, quantize_calibrated};
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::prune::calibrated::{FRACTION_BLOCK, Pattern, prune_calibrated};
use sparq::prune::{magnitude, n_of_m};
use sparq::sparse::{TwoFour, ValueType};

fn int4(group: u32, asymmetric: bool) -> WeightFormat {
    WeightFormat::Int4 { group, asymmetric }
}

/// `rows` inputs of width `k` with strongly correlated features: a few shared factors plus a
/// little noise of their own, and a scale that differs per feature, as a layer's inputs have.
fn correlated_inputs(r: &mut StdRng, rows: usize, k: usize, mix: &[f64]) -> Vec<f64> {
    let factors = mix.len() / k;
    let mut x = Vec::with_capacity(rows * k);
    for _ in 0..rows {
        let f: Vec<f64> = (0..factors).map(|_| r.random_range(-1.0..1.0)).collect();
        for c in 0..k {
            let shared: f64 = (0..factors).map(|i| f[i] * mix[i * k + c]).sum();
            x.push(shared + 0.1 * r.random_range(-1.0..1.0));
        }
    }
    x
}

/// A 24 × 160 layer (k: five groups of 32, or two and a half of 64) with random weights, and
/// correlated inputs: 600 to calibrate on (summed in `h`) and 300 held out.
struct Layer {
    n: usize,
    k: usize,
    w: Vec<f32>,
    calib: Vec<f64>,
    held_out: Vec<f64>,
    h: Hessian,
}

fn correlated_layer(r: &mut StdRng) -> Layer {
    let (n, k) = (24, 160);
    let w: Vec<f32> = (0..n * k).map(|_| r.random_range(-1.0..1.0)).collect();
    let factors = 12;
    let mix: Vec<f64> = (0..factors * k)
        .map(|i| r.random_range(-1.0..1.0) * (1.0 + (i % k) as f64 / 40.0))
        .collect();
    let calib = correlated_inputs(r, 600, k, &mix);
    let held_out = correlated_inputs(r, 300, k, &mix);
    let mut h = Hessian::new(k);
    h.add(&calib);
    Layer {
        n,
        k,
        w,
        calib,
        held_out,
        h,
    }
}

/// ‖x (W − Ŵ)ᵀ‖² over the rows of `x`.
fn output_error(x: &[f64], w: &[f32], q: &[f32], n: usize, k: usize) -> f64 {
    x.chunks(k)
        .map(|row| {
            (0..n)
                .map(|o| {
                    let d: f64 = row
                        .iter()
                        .zip(&w[o * k..(o + 1) * k])
                        .zip(&q[o * k..(o + 1) * k])
                        .map(|((a, b), c)| a * (*b as f64 - *c as f64))
                        .sum();
                    d * d
                })
                .sum::<f64>()
        })
        .sum()
}

/// The f16 of (row `r`, group of column `c`) in `halves`, the scales or means of `p`.
fn group_half(p: &PackedWeights, halves: &[u32], r: usize, c: usize) -> f32 {
    let gi = r * p.groups() + c / p.format.group().unwrap();
    f16::from_bits((halves[gi / 2] >> (16 * (gi % 2))) as u16).to_f32()
}

/// The scale of weight `[r, c]` of a row-major `n × k` group-wise matrix.
fn scale_of(p: &PackedWeights, r: usize, c: usize) -> f32 {
    group_half(p, &p.scales, r, c)
}

/// Binary and ternary formats of every family, at groups that split k = 100 and 160 unevenly.
/// Asserts that the calibrated weights `got` give under 0.6 times the output error of the
/// plainly rounded `plain`, on the calibration inputs and on held-out ones.
fn beats_plain_rounding(layer: &Layer, got: &[f32], plain: &[f32], format: WeightFormat) {
    let (n, k, w) = (layer.n, layer.k, &layer.w);
    for (name, x) in [("calibration", &layer.calib), ("held-out", &layer.held_out)] {
        let (e, e0) = (
            output_error(x, w, got, n, k),
            output_error(x, w, plain, n, k),
        );
        eprintln!(
            "{} {name}: output error {:.3} of plain rounding's",
            format.name(),
            e / e0
        );
        assert!(
            e < 0.6 * e0,
            "{} on {name} inputs: output error {e:.4e}, plain rounding {e0:.4e}",
            format.name()
        );
    }
}

fn low_bit_formats() -> Vec<WeightFormat> {
    [
        "binaryg32",
        "binaryg64m",
        "binaryg32m",
        "binaryg128",
        "ternaryg64",
        "ternaryg128",
        "ternary16g80",
    ]
    .into_iter()
    .map(|f| WeightFormat::parse(f).unwrap())
    .collect()
}

#[test]
fn uncorrelated_inputs_give_plain_rounding() {
    let mut r = rng("uncorrelated_inputs_give_plain_rounding");
    let (n, k) = (5, 100);
    let w: Vec<f32> = (0..n * k).map(|_| r.random_range(-1.0..1.0)).collect();
    // H is a multiple of the identity, so no error moves to other columns.
    let h = identity_hessian(k);
    for format in [vec![int4(32, false), int4(64, true)], low_bit_formats()].concat() {
        let got = quantize_calibrated(&w, n, k, format, &h).unwrap();
        let want = PackedWeights::quantize(&w, n, k, format).unwrap();
        assert_eq!(got.data, want.data, "{}", format.name());
        assert_eq!(got.scales, want.scales, "{}", format.name());
        assert_eq!(got.zeros, want.zeros, "{}", format.name());
    }
}

#[test]
fn correlated_inputs_lower_the_output_error() {
    let mut r = rng("correlated_inputs_lower_the_output_error");
    let layer = correlated_layer(&mut r);
    let Layer {
        n, k, ref w, ref h, ..
    } = layer;
    assert_eq!(h.rows(), 600);
    for format in [int4(32, false), int4(32, true), int4(64, false)] {
        let plain = PackedWeights::quantize(w, n, k, format)
            .unwrap()
            .dequantize();
        let p = quantize_calibrated(w, n, k, format, h).unwrap();
        let got = p.dequantize();
        beats_plain_rounding(&layer, &got, &plain, format);
        // Every weight is a code of its group's grid.
        let WeightFormat::Int4 { asymmetric, .. } = format else {
            unreachable!()
        };
        for row in 0..n {
            for c in 0..k {
                let q = got[row * k + c] / scale_of(&p, row, c);
                let (lo, hi) = if asymmetric {
                    (-15.0, 15.0)
                } else {
                    (-8.0, 7.0)
                };
                assert!(
                    (q - q.round()).abs() < 1e-3 && (lo..=hi).contains(&q.round()),
                    "{}: [{row}, {c}] = {q} steps",
                    format.name()
                );
            }
        }
    }
}

/// GPTQ with the binary and ternary formats: each group's scale (and mean) is chosen from the
/// weights as updated, each weight rounded to a code of its group, and the output error
/// falls below plain rounding's, on held-out inputs too.
#[test]
fn correlated_inputs_lower_the_output_error_of_low_bit_formats() {
    let mut r = rng("correlated_inputs_lower_the_output_error_of_low_bit_formats");
    let layer = correlated_layer(&mut r);
    let Layer {
        n, k, ref w, ref h, ..
    } = layer;
    for format in low_bit_formats() {
        let plain = PackedWeights::quantize(w, n, k, format)
            .unwrap()
            .dequantize();
        let p = quantize_calibrated(w, n, k, format, h).unwrap();
        assert_eq!(p.format, format);
        let got = p.dequantize();
        beats_plain_rounding(&layer, &got, &plain, format);
        // No row does worse than plain rounding by GPTQ's damped objective: the calibration
        // outputs' squared error plus 0.1 × the mean diagonal of Σ x xᵀ times ‖W − Ŵ‖² (rows
        // where GPTQ's moved errors grow keep the plain rounding).
        let mean_diag = layer.calib.iter().map(|v| v * v).sum::<f64>() / k as f64;
        let damped = |r: std::ops::Range<usize>, q: &[f32]| {
            let d2: f64 = w[r.clone()]
                .iter()
                .zip(&q[r.clone()])
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            output_error(&layer.calib, &w[r.clone()], &q[r], 1, k) + 0.1 * mean_diag * d2
        };
        for row in 0..n {
            let r = row * k..(row + 1) * k;
            let (e, e0) = (damped(r.clone(), &got), damped(r, &plain));
            assert!(
                e <= e0 * (1.0 + 1e-9),
                "{} row {row}: output error {e:.4e}, plain rounding {e0:.4e}",
                format.name()
            );
        }
        // Every weight is a code of its group: ±s + m for binary, {−s, 0, s} for ternary.
        for row in 0..n {
            for c in 0..k {
                let s = scale_of(&p, row, c);
                let m = if p.format.has_half_zeros() {
                    group_half(&p, &p.zeros, row, c)
                } else {
                    0.0
                };
                let q = (got[row * k + c] - m) / s;
                let codes: &[f32] = match format {
                    WeightFormat::Binary { .. } => &[-1.0, 1.0],
                    _ => &[-1.0, 0.0, 1.0],
                };
                assert!(
                    codes.iter().any(|v| (q - v).abs() < 1e-2),
                    "{}: [{row}, {c}] = {q} scales from the mean",
                    format.name()
                );
            }
        }
    }
}

#[test]
fn bad_calls_are_refused() {
    let w = vec![0.5f32; 4 * 64];
    let mut h = Hessian::new(64);
    let err = |r: sparq::Result<PackedWeights>| r.expect_err("refused");
    // No inputs yet, the wrong width, the wrong weight count, formats GPTQ does not round and
    // groups a format does not have.
    assert!(matches!(
        err(quantize_calibrated(&w, 4, 64, int4(32, false), &h)),
        Error::Input(InputError::Shape(_))
    ));
    h.add(&[1.0; 64]);
    assert!(matches!(
        err(quantize_calibrated(&w[..128], 4, 32, int4(32, false), &h)),
        Error::Input(InputError::Shape(_))
    ));
    assert!(matches!(
        err(quantize_calibrated(&w[..100], 4, 64, int4(32, false), &h)),
        Error::Input(InputError::Shape(_))
    ));
    for format in [
        WeightFormat::F16,
        WeightFormat::Int8,
        int4(48, false),
        WeightFormat::Ternary { group: 100 },
        WeightFormat::Binary {
            group: 256,
            mean: false,
        },
    ] {
        assert!(matches!(
            err(quantize_calibrated(&w, 4, 64, format, &h)),
            Error::Input(InputError::Invalid(_))
        ));
    }
    // One input is a rank-one sum: damping alone makes it usable.
    assert!(quantize_calibrated(&w, 4, 64, int4(32, false), &h).is_ok());
}

/// Unit vectors as calibration inputs: `H` is a multiple of the identity.
fn identity_hessian(k: usize) -> Hessian {
    let mut h = Hessian::new(k);
    for i in 0..k {
        let mut x = vec![0.0; k];
        x[i] = 1.0;
        h.add(&x);
    }
    h
}

#[test]
fn uncorrelated_inputs_give_magnitude_pruning() {
    let mut r = rng("uncorrelated_inputs_give_magnitude_pruning");
    let (n, k) = (6, 300); // k: a partial block of 44 columns, and 75 groups of 4
    let w: Vec<f32> = (0..n * k).map(|_| r.random_range(-1.0..1.0)).collect();
    let h = identity_hessian(k);
    let got = prune_calibrated(&w, n, k, Pattern::NofM { keep: 2, group: 4 }, &h).unwrap();
    assert_eq!(got.w, n_of_m(&w, n, k, 2, 4).unwrap().w, "2:4");
    let sparsity = 0.3;
    let got = prune_calibrated(&w, n, k, Pattern::Fraction { sparsity }, &h).unwrap();
    for (row, (a, b)) in w.chunks(k).zip(got.w.chunks(k)).enumerate() {
        // Each row loses round(s · k) weights: within each block, the smallest.
        let dropped = b.iter().filter(|v| **v == 0.0).count();
        assert_eq!(dropped, (sparsity * k as f64).round() as usize, "row {row}");
        for (c0, (ab, bb)) in a
            .chunks(FRACTION_BLOCK)
            .zip(b.chunks(FRACTION_BLOCK))
            .enumerate()
        {
            let kept_min = ab
                .iter()
                .zip(bb)
                .filter(|(_, b)| **b != 0.0)
                .map(|(a, _)| a.abs())
                .fold(f32::INFINITY, f32::min);
            for (c, (x, y)) in ab.iter().zip(bb).enumerate() {
                assert!(
                    *y == 0.0 && x.abs() <= kept_min || y == x,
                    "row {row} column {}: {x} stored as {y}",
                    c0 * FRACTION_BLOCK + c
                );
            }
        }
    }
}

#[test]
fn calibrated_pruning_lowers_the_output_error() {
    let mut r = rng("calibrated_pruning_lowers_the_output_error");
    let Layer {
        n,
        k,
        w,
        calib,
        held_out,
        h,
    } = correlated_layer(&mut r);
    let cases = [
        (
            Pattern::NofM { keep: 2, group: 4 },
            n_of_m(&w, n, k, 2, 4).unwrap().w,
        ),
        (
            Pattern::Fraction { sparsity: 0.5 },
            magnitude(&w, n, k, 0.5).unwrap().w,
        ),
    ];
    for (pattern, plain) in cases {
        let p = prune_calibrated(&w, n, k, pattern, &h).unwrap();
        assert!(
            (p.report.sparsity - 0.5).abs() < 0.01,
            "{pattern:?}: sparsity {}",
            p.report.sparsity
        );
        for (name, x) in [("calibration", &calib), ("held-out", &held_out)] {
            let (e, e0) = (
                output_error(x, &w, &p.w, n, k),
                output_error(x, &w, &plain, n, k),
            );
            eprintln!(
                "{pattern:?} {name}: output error {:.3} of magnitude pruning's",
                e / e0
            );
            assert!(
                e < 0.6 * e0,
                "{pattern:?} on {name} inputs: output error {e:.4e}, magnitude pruning {e0:.4e}"
            );
        }
        if let Pattern::NofM { .. } = pattern {
            for (i, g) in p.w.chunks(4).enumerate() {
                assert!(
                    g.iter().filter(|v| **v != 0.0).count() <= 2,
                    "group {i}: {g:?}"
                );
            }
            TwoFour::from_dense(&p.w, n, k, ValueType::F16).unwrap();
        }
    }
}

#[test]
fn bad_pruning_calls_are_refused() {
    let w = vec![0.5f32; 4 * 64];
    let mut h = Hessian::new(64);
    let two_four = Pattern::NofM { keep: 2, group: 4 };
    let err = |r: sparq::Result<sparq::prune::Pruned>| r.expect_err("refused");
    assert!(matches!(
        err(prune_calibrated(&w, 4, 64, two_four, &h)),
        Error::Input(InputError::Shape(_))
    ));
    h.add(&[1.0; 64]);
    assert!(matches!(
        err(prune_calibrated(&w[..128], 4, 32, two_four, &h)),
        Error::Input(InputError::Shape(_))
    ));
    for bad in [
        Pattern::NofM { keep: 4, group: 4 },
        Pattern::NofM { keep: 0, group: 4 },
        Pattern::Fraction { sparsity: 1.5 },
    ] {
        assert!(
            matches!(
                err(prune_calibrated(&w, 4, 64, bad, &h)),
                Error::Input(InputError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(prune_calibrated(&w, 4, 64, two_four, &h).is_ok());
}
