//! Every linear kernel against the f64 CPU reference, on every adapter, with poisoned outputs.

mod common;

use common::{all_gpus, assert_tensor, random, rng, run_forced};
use sparq::activation::Activation;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{KernelChoice, Linear, Strategy};
use sparq::model::reference::activate;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Gpu, reference};

/// Runs one case and compares with the reference on the dequantized weights.
#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    format: WeightFormat,
    strategy: Strategy,
    act: ActDType,
    m: usize,
    n: usize,
    k: usize,
    with_bias: bool,
) {
    check_activated(gpu, rng, format, strategy, act, (m, n, k), with_bias, None);
}

/// [`check`] with an activation fused into the layer's epilogue.
#[allow(clippy::too_many_arguments)]
fn check_activated(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    format: WeightFormat,
    strategy: Strategy,
    act: ActDType,
    (m, n, k): (usize, usize, usize),
    with_bias: bool,
    activation: Option<Activation>,
) {
    let w = random(rng, n * k);
    let mut x = random(rng, m * k);
    let bias = with_bias.then(|| random(rng, n));
    let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
    let mut layer = Linear::new(gpu, &packed, bias.as_deref()).unwrap();
    layer.set_activation(activation);
    if act == ActDType::F16 {
        x.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let yt = Tensor::empty(gpu, m, n, act).unwrap();
    run_forced(gpu, &layer, &xt, &yt, strategy);
    let wq = packed.dequantize();
    let want = reference::linear(&x, &wq, bias.as_deref(), m, n, k);
    let scale = reference::linear_abs(&x, &wq, bias.as_deref(), m, n, k);
    let tol = match act {
        ActDType::F32 => 2e-5,
        ActDType::F16 => 2e-3,
    };
    let what = format!(
        "{} {} {:?} {act:?} {activation:?} m={m} n={n} k={k} on {}",
        format.name(),
        strategy.name(),
        with_bias,
        gpu.caps.name
    );
    // Int8 activations: compare with the reference on x quantized as the kernel does (blocks
    // of 32, step max|x| / 127, round to nearest even). The GPU's division may differ from the
    // CPU's by an ulp, so a value within 1e-4 of a rounding tie may land on either side: such
    // values get a tolerance of one step times their weights; all others must agree exactly.
    let (want, scale) = if strategy.quantizes_activations() {
        let mut xq = x.clone();
        let mut slack = vec![0f64; m * k];
        for r in 0..m {
            for (blk, xs) in xq[r * k..(r + 1) * k].chunks_mut(32).enumerate() {
                let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                if amax == 0.0 {
                    continue;
                }
                let (inv, step) = (127.0 / amax, amax / 127.0);
                for (i, v) in xs.iter_mut().enumerate() {
                    let t = *v * inv;
                    if ((t - t.trunc()).abs() - 0.5).abs() < 1e-4 {
                        slack[r * k + blk * 32 + i] = step as f64;
                    }
                    *v = t.round_ties_even().clamp(-127.0, 127.0) * step;
                }
            }
        }
        let want = reference::linear(&xq, &wq, bias.as_deref(), m, n, k);
        let mut scale = reference::linear_abs(&xq, &wq, bias.as_deref(), m, n, k);
        for r in 0..m {
            for c in 0..n {
                let extra: f64 = (0..k)
                    .map(|i| slack[r * k + i] * (wq[c * k + i] as f64).abs())
                    .sum();
                scale[r * n + c] += extra / tol;
            }
        }
        (want, scale)
    } else {
        (want, scale)
    };
    // Every activation here has |f'| ≤ 1.13, so the linear output's error scale bounds it.
    let want = match activation {
        Some(a) => want.iter().map(|&v| activate(a, v)).collect(),
        None => want,
    };
    assert_tensor(gpu, &yt, &want, &scale, tol, &what);
}

fn strategies(gpu: &Gpu, format: WeightFormat, m: usize) -> Vec<Strategy> {
    let mut v = vec![Strategy::GemmTiled];
    let int = matches!(format, WeightFormat::Int8 | WeightFormat::Int4 { .. });
    // GEMV kernels take 8 rows per dispatch; more rows go in slices (Auto does so up to 64).
    if m <= sparq::matmul::GEMV_MAX_ROWS {
        v.push(Strategy::GemvWorkgroup);
        if gpu.caps.subgroups {
            v.push(Strategy::GemvSubgroup);
        }
        if int && gpu.caps.dot4_i8 {
            v.push(Strategy::GemvWorkgroupQ8);
            if gpu.caps.subgroups {
                v.push(Strategy::GemvSubgroupQ8);
            }
        }
    }
    v
}

#[test]
fn every_format_and_kernel_matches_reference() {
    let mut rng = rng("every_format_and_kernel_matches_reference");
    let shapes = [(1, 1), (37, 100), (130, 259), (65, 64)];
    for gpu in all_gpus() {
        for format in WeightFormat::all() {
            for &(n, k) in &shapes {
                for m in [1, 3, 8, 17, 64] {
                    for s in strategies(&gpu, format, m) {
                        check(
                            &gpu,
                            &mut rng,
                            format,
                            s,
                            ActDType::F32,
                            m,
                            n,
                            k,
                            (n + m) % 2 == 0,
                        );
                    }
                }
            }
        }
    }
}

/// The activation fused into the epilogue (`Linear::set_activation`), every kind, on every
/// strategy the adapter has, f32 and f16 activations.
#[test]
fn fused_activation_matches_reference() {
    let mut rng = rng("fused_activation_matches_reference");
    let kinds = [
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
    ];
    for gpu in all_gpus() {
        let dtypes: &[ActDType] = if gpu.caps.f16 {
            &[ActDType::F32, ActDType::F16]
        } else {
            &[ActDType::F32]
        };
        for format in [
            WeightFormat::F32,
            WeightFormat::F16,
            WeightFormat::Int4 {
                group: 32,
                asymmetric: false,
            },
        ] {
            for m in [1, 17] {
                for s in strategies(&gpu, format, m) {
                    for (i, &a) in kinds.iter().enumerate() {
                        let dtype = dtypes[i % dtypes.len()];
                        let shape = (m, 37, 100);
                        check_activated(
                            &gpu,
                            &mut rng,
                            format,
                            s,
                            dtype,
                            shape,
                            i % 2 == 0,
                            Some(a),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn large_k() {
    let mut rng = rng("large_k");
    for gpu in all_gpus() {
        for format in [
            WeightFormat::F16,
            WeightFormat::Int8,
            WeightFormat::Int4 {
                group: 128,
                asymmetric: true,
            },
        ] {
            // M = 8 stages x in several chunks (32 KiB of workgroup memory hold 1024 columns).
            for m in [1, 8, 17] {
                for s in strategies(&gpu, format, m) {
                    check(&gpu, &mut rng, format, s, ActDType::F32, m, 19, 4133, true);
                }
            }
            // M = 1 stages up to 8192 columns at once; 9001 needs two chunks.
            for s in strategies(&gpu, format, 1) {
                check(&gpu, &mut rng, format, s, ActDType::F32, 1, 7, 9001, false);
            }
        }
    }
}

#[test]
fn f16_activations() {
    let mut rng = rng("f16_activations");
    for gpu in all_gpus().into_iter().filter(|g| g.caps.f16) {
        for format in WeightFormat::all() {
            for m in [1, 5, 33] {
                for s in strategies(&gpu, format, m) {
                    check(&gpu, &mut rng, format, s, ActDType::F16, m, 45, 300, true);
                }
            }
        }
    }
}

/// The tiled GEMM on a grid large enough for 128 × 128 tiles, and the tile rule itself (small
/// grids take 64 × 64 tiles; the other tests run those).
#[test]
fn tiled_gemm_on_a_large_grid() {
    use sparq::matmul::{GEMM_SMALL_GRID, gemm_tile};
    assert_eq!(gemm_tile(16 * 1024, 4096, 4096), 64, "memory too small");
    // The rule itself, which a configured tile (`SPARQ_GEMM_TILE`) no longer changes.
    assert_eq!(gemm_tile(48 * 1024, 128, 384), 64);
    assert_eq!(gemm_tile(48 * 1024, 130, 128 * GEMM_SMALL_GRID / 2), 128);
    assert_eq!(
        gemm_tile(48 * 1024, 256, 128 * (GEMM_SMALL_GRID / 2 - 1)),
        64
    );
    let mut rng = rng("tiled_gemm_on_a_large_grid");
    let (m, n, k) = (130, 128 * GEMM_SMALL_GRID / 2 + 9, 40);
    for gpu in all_gpus() {
        for format in [WeightFormat::F16, WeightFormat::Int8] {
            check(
                &gpu,
                &mut rng,
                format,
                Strategy::GemmTiled,
                ActDType::F32,
                m,
                n,
                k,
                true,
            );
        }
        // The same rows alone (a small grid: 64-tiles) give the same bits as inside the
        // large grid (128-tiles), which the data-parallel scheduler's bit-identity relies on.
        let w = random(&mut rng, n * k);
        let x = random(&mut rng, m * k);
        let layer = Linear::new(
            &gpu,
            &PackedWeights::quantize(&w, n, k, WeightFormat::F16).unwrap(),
            None,
        )
        .unwrap();
        let run = |rows: usize| {
            let xt = Tensor::from_f32_as(&gpu, &x[..rows * k], rows, k, ActDType::F32).unwrap();
            let yt = Tensor::empty(&gpu, rows, n, ActDType::F32).unwrap();
            let plan = layer
                .plan(&gpu, &xt, &yt, KernelChoice::Force(Strategy::GemmTiled))
                .unwrap();
            let mut enc = gpu.encoder("test");
            sparq::gpu::record_pass(&mut enc, &plan, None);
            gpu.submit_and_wait(enc).unwrap();
            yt.to_f32(&gpu).unwrap()
        };
        let (all, few) = (run(m), run(3));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&all[..3 * n]), bits(&few), "{}", gpu.caps.name);
    }
}
