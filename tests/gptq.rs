//! Calibrated int4 rounding (`formats::gptq`) on the host: with uncorrelated inputs it is plain
//! rounding, with correlated ones it lowers the error of the layer's outputs (also on inputs it
//! was not calibrated on), its codes stay on each group's grid, and bad calls are refused.

mod common;

use common::rng;
use half::f16;
use rand::Rng;
use rand::rngs::StdRng;
use sparq::Error;
use sparq::formats::gptq::{Hessian, quantize_calibrated};
use sparq::formats::{PackedWeights, WeightFormat};

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

/// The scale of weight `i` of a row-major `n × k` int4 matrix.
fn scale_of(p: &PackedWeights, r: usize, c: usize) -> f32 {
    let WeightFormat::Int4 { group, .. } = p.format else {
        unreachable!()
    };
    let gi = r * p.groups() + c / group as usize;
    f16::from_bits((p.scales[gi / 2] >> (16 * (gi % 2))) as u16).to_f32()
}

#[test]
fn uncorrelated_inputs_give_plain_rounding() {
    let mut r = rng("uncorrelated_inputs_give_plain_rounding");
    let (n, k) = (5, 100);
    let w: Vec<f32> = (0..n * k).map(|_| r.random_range(-1.0..1.0)).collect();
    // The unit vectors: H is a multiple of the identity, so no error moves to other columns.
    let mut h = Hessian::new(k);
    for i in 0..k {
        let mut x = vec![0.0; k];
        x[i] = 1.0;
        h.add(&x);
    }
    for format in [int4(32, false), int4(64, true)] {
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
    let (n, k) = (24, 160); // k: five groups of 32, or two and a half of 64
    let w: Vec<f32> = (0..n * k).map(|_| r.random_range(-1.0..1.0)).collect();
    let factors = 12;
    let mix: Vec<f64> = (0..factors * k)
        .map(|i| r.random_range(-1.0..1.0) * (1.0 + (i % k) as f64 / 40.0))
        .collect();
    let calib = correlated_inputs(&mut r, 600, k, &mix);
    let held_out = correlated_inputs(&mut r, 300, k, &mix);
    let mut h = Hessian::new(k);
    h.add(&calib);
    assert_eq!(h.rows(), 600);
    for format in [int4(32, false), int4(32, true), int4(64, false)] {
        let plain = PackedWeights::quantize(&w, n, k, format)
            .unwrap()
            .dequantize();
        let p = quantize_calibrated(&w, n, k, format, &h).unwrap();
        let got = p.dequantize();
        for (name, x) in [("calibration", &calib), ("held-out", &held_out)] {
            let (e, e0) = (
                output_error(x, &w, &got, n, k),
                output_error(x, &w, &plain, n, k),
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

#[test]
fn bad_calls_are_refused() {
    let w = vec![0.5f32; 4 * 64];
    let mut h = Hessian::new(64);
    let err = |r: sparq::Result<PackedWeights>| r.expect_err("refused");
    // No inputs yet, the wrong width, the wrong weight count, formats other than int4.
    assert!(matches!(
        err(quantize_calibrated(&w, 4, 64, int4(32, false), &h)),
        Error::Shape(_)
    ));
    h.add(&[1.0; 64]);
    assert!(matches!(
        err(quantize_calibrated(&w[..128], 4, 32, int4(32, false), &h)),
        Error::Shape(_)
    ));
    assert!(matches!(
        err(quantize_calibrated(&w[..100], 4, 64, int4(32, false), &h)),
        Error::Shape(_)
    ));
    for format in [WeightFormat::F16, WeightFormat::Int8, int4(48, false)] {
        assert!(matches!(
            err(quantize_calibrated(&w, 4, 64, format, &h)),
            Error::Invalid(_)
        ));
    }
    // One input is a rank-one sum: damping alone makes it usable.
    assert!(quantize_calibrated(&w, 4, 64, int4(32, false), &h).is_ok());
}
