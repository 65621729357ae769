//! The DP4A GEMM (int8 activations quantized per row × int8 weights) against the f64 CPU
//! reference on the quantized activations, on every adapter with `dot4I8Packed` (native or
//! polyfilled: lavapipe and llvmpipe run it too).

mod common;

use common::{all_gpus, random, rng, run_forced};
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{KernelChoice, Linear, Strategy, dp4a};
use sparq::tensor::{ActDType, Tensor};
use sparq::{Gpu, reference};

#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    act: ActDType,
    m: usize,
    n: usize,
    k: usize,
    with_bias: bool,
    zero_row: bool,
) {
    let w = random(rng, n * k);
    let mut x = random(rng, m * k);
    if act == ActDType::F16 {
        x.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    if zero_row {
        x[..k].iter_mut().for_each(|v| *v = 0.0);
    }
    let bias = with_bias.then(|| random(rng, n));
    let packed = PackedWeights::quantize(&w, n, k, WeightFormat::Int8).unwrap();
    let layer = Linear::new(gpu, &packed, bias.as_deref()).unwrap();
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let yt = Tensor::empty(gpu, m, n, act).unwrap();
    run_forced(gpu, &layer, &xt, &yt, Strategy::GemmDp4a);

    let (q, sx) = dp4a::quantize_rows_reference(&x, m, k);
    let xd: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * sx[i / k])
        .collect();
    let wq = packed.dequantize();
    let want = reference::linear(&xd, &wq, bias.as_deref(), m, n, k);
    let scale = reference::linear_abs(&xd, &wq, bias.as_deref(), m, n, k);
    let sw: Vec<f32> = packed.scales.iter().map(|&b| f32::from_bits(b)).collect();
    let got = yt.to_f32(gpu).unwrap();
    let rel = match act {
        ActDType::F32 => 1e-5,
        ActDType::F16 => 2e-3,
    };
    let what = format!(
        "dp4a {act:?} m={m} n={n} k={k} bias={with_bias} on {}",
        gpu.caps.name
    );
    let s = yt.stride();
    let padded = yt.to_f32_padded(gpu).unwrap();
    for r in 0..m {
        for c in n..s {
            assert_eq!(padded[r * s + c], 0.0, "{what}: padding [{r}, {c}]");
        }
        for (c, swc) in sw.iter().enumerate() {
            // The GPU may round the row scale's reciprocal differently, which can move an
            // activation sitting on a rounding boundary by one step: allow two such steps.
            let step = sx[r] as f64 * *swc as f64 * 127.0;
            let i = r * n + c;
            let err = (got[i] as f64 - want[i]).abs();
            assert!(
                got[i].is_finite() && err <= rel * scale[i] + 2.0 * step + 1e-30,
                "{what}: [{r}, {c}] got {}, want {}, error {err:.3e}",
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn matches_reference_on_quantized_activations() {
    let mut rng = rng("dp4a matches_reference_on_quantized_activations");
    for gpu in all_gpus() {
        if !gpu.caps.dot4_i8 {
            eprintln!("skipping {}: no dot4I8Packed", gpu.caps.name);
            continue;
        }
        let mut acts = vec![ActDType::F32];
        if gpu.caps.f16 {
            acts.push(ActDType::F16);
        }
        for act in acts {
            for &(m, n, k) in &[(1, 1, 1), (5, 37, 100), (130, 129, 300), (17, 200, 33)] {
                check(&gpu, &mut rng, act, m, n, k, n % 2 == 1, m > 3);
            }
        }
    }
}

#[test]
fn refuses_other_formats() {
    for gpu in all_gpus() {
        let w = vec![0.25f32; 16 * 32];
        let x = Tensor::from_f32(&gpu, &vec![1.0; 2 * 32], 2, 32).unwrap();
        let y = Tensor::empty(&gpu, 2, 16, ActDType::F32).unwrap();
        let p = PackedWeights::quantize(&w, 16, 32, WeightFormat::F16).unwrap();
        let layer = Linear::new(&gpu, &p, None).unwrap();
        assert!(
            layer
                .plan(&gpu, &x, &y, KernelChoice::Force(Strategy::GemmDp4a))
                .is_err()
        );
    }
}
