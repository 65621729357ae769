//! Binary and ternary weights (every group size, binary with and without means) through every
//! float-activation kernel the adapter has, and through the row gather, against the rows of
//! `PackedWeights::dequantize` (f64 CPU reference), on every adapter, with poisoned outputs,
//! at shapes whose k ends inside a block (binary padding decodes to ±s + m, not zero).

mod common;

use common::{all_gpus, assert_tensor, low_bit_formats, random, rng, run_forced};
use rand::Rng;
use sparq::activation::Activation;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{Linear, Strategy, coop};
use sparq::model::reference::activate;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Gpu, reference};

/// The float-activation strategies `gpu` can run.
fn strategies(gpu: &Gpu) -> Vec<Strategy> {
    let mut v = vec![Strategy::GemmTiled, Strategy::GemvWorkgroup];
    if gpu.caps.subgroups {
        v.push(Strategy::GemvSubgroup);
    }
    if coop::available(gpu) {
        v.push(Strategy::GemmCoop);
    }
    v
}

/// Random weights with an all-zero row (zero scales) and, in a longer row, a constant run
/// (a binary group of one value around its mean has a zero scale).
fn weights(rng: &mut rand::rngs::StdRng, n: usize, k: usize) -> Vec<f32> {
    let mut w = random(rng, n * k);
    if n > 2 {
        w[k..2 * k].fill(0.0);
        w[2 * k..2 * k + k.min(64)].fill(-0.375);
    }
    w
}

/// One shape through `strategy`: `act` activations, an optional bias and fused activation.
struct Case {
    m: usize,
    n: usize,
    k: usize,
    act: ActDType,
    bias: bool,
    activation: Option<Activation>,
}

fn check(gpu: &Gpu, rng: &mut rand::rngs::StdRng, format: WeightFormat, c: &Case) {
    let Case { m, n, k, act, .. } = *c;
    let w = weights(rng, n, k);
    let mut x = random(rng, m * k);
    if act == ActDType::F16 {
        x.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let bias = c.bias.then(|| random(rng, n));
    let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
    let mut layer = Linear::new(gpu, &packed, bias.as_deref()).unwrap();
    layer.set_activation(c.activation);
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let wq = packed.dequantize();
    let scale = reference::linear_abs(&x, &wq, bias.as_deref(), m, n, k);
    let mut want = reference::linear(&x, &wq, bias.as_deref(), m, n, k);
    if let Some(a) = c.activation {
        want.iter_mut().for_each(|v| *v = activate(a, *v));
    }
    // The kernels multiply exact weights (the decoders reproduce `dequantize` bit for bit)
    // by exact x and sum in f32: at most k + 3 roundings (products, sums, bias, epilogue) of
    // u = 2⁻²⁴ relative to Σ|x·w| + |b|. f16 outputs round once more (2⁻¹¹); a fused
    // activation has |f'| ≤ 1.13 and its erf / exp approximations add about 2e-7 of its input.
    let u = (2f64).powi(-24);
    let mut tol = 1.1 * (k as f64 + 3.0) * u;
    if c.activation.is_some() {
        tol = 1.13 * tol + 4e-7;
    }
    if act == ActDType::F16 {
        tol += (2f64).powi(-11);
    }
    for strategy in strategies(gpu) {
        let (want, scale) = if strategy == Strategy::GemmCoop {
            coop_reference(&x, &packed, bias.as_deref(), c)
        } else {
            (want.clone(), scale.clone())
        };
        let yt = Tensor::empty(gpu, m, n, act).unwrap();
        run_forced(gpu, &layer, &xt, &yt, strategy);
        let what = format!(
            "{} {} {act:?} bias={} {:?} m={m} n={n} k={k} on {}",
            format.name(),
            strategy.name(),
            c.bias,
            c.activation,
            gpu.caps.name
        );
        assert_tensor(gpu, &yt, &want, &scale, tol, &what);
    }
}

/// The tensor-core GEMM stages weights and x as f16: its reference rounds them so.
fn coop_reference(
    x: &[f32],
    packed: &PackedWeights,
    bias: Option<&[f32]>,
    c: &Case,
) -> (Vec<f64>, Vec<f64>) {
    let wq: Vec<f32> = packed
        .dequantize()
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    // x is staged in f16 as well.
    let x: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let mut want = reference::linear(&x, &wq, bias, c.m, c.n, c.k);
    if let Some(a) = c.activation {
        want.iter_mut().for_each(|v| *v = activate(a, *v));
    }
    (want, reference::linear_abs(&x, &wq, bias, c.m, c.n, c.k))
}

#[test]
fn low_bit_formats_match_reference_through_every_float_kernel() {
    let mut rng = rng("low_bit_formats_match_reference_through_every_float_kernel");
    // k = 1, ends inside a ternary block (63), one ternary16 block and a weight (81), inside
    // a binary block's second half (130), several blocks and a partial group (333); m = 1, 3
    // and 9 (a GEMV slice of 8 and one of 1), each format taking every m; n odd, never a
    // multiple of the GEMV's rows per workgroup.
    let ks = [1, 63, 81, 130, 333];
    let ns = [13, 37, 1, 7, 37];
    for gpu in all_gpus() {
        for (fi, format) in low_bit_formats().into_iter().enumerate() {
            for (ki, &k) in ks.iter().enumerate() {
                let case = Case {
                    m: [1, 3, 9][(ki + fi) % 3],
                    n: ns[ki],
                    k,
                    // f16 activations and outputs once per format where the adapter has them.
                    act: if k == 63 && gpu.caps.f16 {
                        ActDType::F16
                    } else {
                        ActDType::F32
                    },
                    bias: (ki + fi) % 2 == 0 || k == 130,
                    activation: (k == 130).then_some(Activation::Gelu),
                };
                check(&gpu, &mut rng, format, &case);
            }
        }
        // A row longer than the x chunks that a GEMV of 8 rows stages (at most 32 KiB of
        // workgroup memory: 256 vec4s, 1024 values, per row; fewer beside the workgroup
        // reduction), once per layout (slow on CPU adapters).
        for format in [
            WeightFormat::Binary {
                group: 64,
                mean: true,
            },
            WeightFormat::Ternary { group: 256 },
            WeightFormat::Ternary16 { group: 80 },
        ] {
            let case = Case {
                m: 9,
                n: 5,
                k: 1100,
                act: ActDType::F32,
                bias: true,
                activation: None,
            };
            check(&gpu, &mut rng, format, &case);
        }
    }
}

#[test]
fn low_bit_rows_gather_as_dequantized() {
    let mut rng = rng("low_bit_rows_gather_as_dequantized");
    for gpu in all_gpus() {
        for format in low_bit_formats() {
            for (n, k) in [(1, 1), (5, 63), (4, 81), (6, 130), (3, 333)] {
                let w = weights(&mut rng, n, k);
                let p = PackedWeights::quantize(&w, n, k, format).unwrap();
                let layer = Linear::new(&gpu, &p, None).unwrap();
                let d = p.dequantize();
                let mut ids: Vec<u32> = (0..2 * n).map(|_| rng.random_range(0..n as u32)).collect();
                ids.extend([n as u32 - 1, 0, n as u32, u32::MAX]);
                let ids_buf = gpu.upload("ids", &ids).unwrap();
                let out = Tensor::empty(&gpu, ids.len(), k, ActDType::F32).unwrap();
                out.poison(&gpu);
                let dispatch = layer.plan_gather(&gpu, &ids_buf, &out).unwrap();
                let mut enc = gpu.encoder("gather");
                sparq::gpu::record_pass(&mut enc, &[dispatch], None);
                gpu.submit_and_wait(enc).unwrap();
                let got = out.to_f32_padded(&gpu).unwrap();
                let s = out.stride();
                let what = format!("{} {n}×{k} on {}", format.name(), gpu.caps.name);
                for (r, &id) in ids.iter().enumerate() {
                    for c in 0..s {
                        let g = got[r * s + c];
                        if c >= k || id as usize >= n {
                            // Binary padding decodes to ±s + m: the gather must mask it.
                            assert_eq!(g.to_bits(), 0, "{what}: out [{r}, {c}] (id {id}) = {g}");
                            continue;
                        }
                        // Exact (a zero scale may give −0 where the host has +0: == holds).
                        let want = d[id as usize * k + c];
                        assert!(
                            g == want,
                            "{what}: out [{r}, {c}] (id {id}) = {g}, row has {want}"
                        );
                    }
                }
            }
        }
    }
}
