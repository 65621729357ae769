//! The int8-activation GEMV of binary and ternary weights (`GemvSubgroupQ8`, `GemvWorkgroupQ8`
//! on those formats) against an f64 reference that quantizes x as the kernel does, on every
//! adapter with `dot4I8Packed` (native or polyfilled), with poisoned outputs; and that `Auto`
//! picks it only where int8 activations are allowed.

mod common;

use common::{all_gpus, assert_tensor, low_bit_formats, random, rng, run_forced};
use sparq::config::Config;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::gpu::instance;
use sparq::matmul::{ActivationPrecision, Linear, Strategy, coop, coop_min_rows};
use sparq::tensor::{ActDType, Tensor};
use sparq::{Gpu, reference};

/// Values of x per quantization block: one weight word for binary, one 16-byte weight
/// block for ternary and ternary16 (src/matmul/low_bit_q8.rs).
fn x_block(format: WeightFormat) -> usize {
    match format {
        WeightFormat::Binary { .. } => 32,
        WeightFormat::Ternary { .. } => 64,
        _ => 80,
    }
}

/// x quantized as the kernel does it (blocks from each row's start, step max|x| / 127,
/// round to nearest even), with the slack of values within 1e-4 of a rounding tie, which the
/// GPU's division may send either way: one step each.
fn quantize_x(x: &[f32], m: usize, k: usize, block: usize) -> (Vec<f32>, Vec<f64>) {
    let mut xq = x.to_vec();
    let mut slack = vec![0f64; m * k];
    for r in 0..m {
        for (b, xs) in xq[r * k..(r + 1) * k].chunks_mut(block).enumerate() {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            if amax == 0.0 {
                continue;
            }
            let (inv, step) = (127.0 / amax, amax / 127.0);
            for (i, v) in xs.iter_mut().enumerate() {
                let t = *v * inv;
                if ((t - t.trunc()).abs() - 0.5).abs() < 1e-4 {
                    slack[r * k + b * block + i] = step as f64;
                }
                *v = t.round_ties_even().clamp(-127.0, 127.0) * step;
            }
        }
    }
    (xq, slack)
}

/// One layer run with `strategy` against the reference on quantized x and the weights as
/// the host decodes them.
fn check(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    format: WeightFormat,
    strategy: Strategy,
    act: ActDType,
    shape: (usize, usize, usize),
) {
    check_split(gpu, rng, format, (strategy, act), shape, None);
}

/// [`check`] with the weights split into chunks of at most `limit` bytes (one dispatch each).
fn check_split(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    format: WeightFormat,
    (strategy, act): (Strategy, ActDType),
    (m, n, k): (usize, usize, usize),
    limit: Option<u64>,
) {
    let w = random(rng, n * k);
    let mut x = random(rng, m * k);
    if act == ActDType::F16 {
        x.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let bias = (n % 2 == 1).then(|| random(rng, n));
    let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
    let layer = match limit {
        Some(l) => Linear::with_binding_limit(gpu, &packed, bias.as_deref(), l).unwrap(),
        None => Linear::new(gpu, &packed, bias.as_deref()).unwrap(),
    };
    assert_eq!(layer.chunks() > 1, limit.is_some(), "chunks");
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let yt = Tensor::empty(gpu, m, n, act).unwrap();
    run_forced(gpu, &layer, &xt, &yt, strategy);

    let wq = packed.dequantize();
    let (xq, slack) = quantize_x(&x, m, k, x_block(format));
    let want = reference::linear(&xq, &wq, bias.as_deref(), m, n, k);
    let mut scale = reference::linear_abs(&xq, &wq, bias.as_deref(), m, n, k);
    // f32 sums of exact integer dot products times f16 scales: a few ulps of Σ|x·w|; f16
    // outputs round once more.
    let tol = match act {
        ActDType::F32 => 1e-5,
        ActDType::F16 => 2e-3,
    };
    for r in 0..m {
        for c in 0..n {
            let extra: f64 = (0..k)
                .map(|i| slack[r * k + i] * (wq[c * k + i] as f64).abs())
                .sum();
            scale[r * n + c] += extra / tol;
        }
    }
    let what = format!(
        "{} {} {act:?} m={m} n={n} k={k} on {}",
        format.name(),
        strategy.name(),
        gpu.caps.name
    );
    assert_tensor(gpu, &yt, &want, &scale, tol, &what);
}

/// The int8-activation GEMV strategies `gpu` can run, the one `Auto` picks first.
fn q8_strategies(gpu: &Gpu) -> Vec<Strategy> {
    let mut v = Vec::new();
    if gpu.caps.dot4_i8 {
        if gpu.caps.subgroups {
            v.push(Strategy::GemvSubgroupQ8);
        }
        v.push(Strategy::GemvWorkgroupQ8);
    }
    v
}

/// One format per family (binary with means, the most general binary).
fn families() -> [WeightFormat; 3] {
    [
        WeightFormat::Binary {
            group: 32,
            mean: true,
        },
        WeightFormat::Ternary { group: 64 },
        WeightFormat::Ternary16 { group: 80 },
    ]
}

/// `gpu` reopened with `r` rows per team and `u` blocks in flight.
fn tuned(gpu: &Gpu, r: u32, u: u32) -> Gpu {
    let mut config = Config::default();
    config.gemv.rows_per_team = Some(r);
    config.gemv.unroll = Some(u);
    Gpu::from_adapter_with(gpu.adapter.clone(), &instance(), config).unwrap()
}

/// Every format at every awkward k with one row count each (1, 2, 5, 8 and 13 = 8 + 5 rows
/// in slices go round the formats), on the strategy `Auto` picks, with one row per team and
/// one block in flight: each format and row count is a pipeline to compile, which dominates
/// the run time on CPU adapters, and the small tuning keeps the unrolled code small. The
/// default tunings (several rows per team, blocks in flight) and the other strategy run on
/// one format per family.
#[test]
fn low_bit_q8_gemv_matches_reference() {
    let mut rng = rng("low_bit_q8_gemv_matches_reference");
    let ks = [1, 63, 81, 130, 333, 1000];
    let ms = [1, 2, 5, 8, 13];
    let ns = [1, 37, 70];
    let mut ran = 0;
    for gpu in all_gpus() {
        let strategies = q8_strategies(&gpu);
        let Some(&main) = strategies.first() else {
            continue;
        };
        let small = tuned(&gpu, 1, 1);
        for (fi, format) in low_bit_formats().into_iter().enumerate() {
            let m = ms[fi % ms.len()];
            for (ki, &k) in ks.iter().enumerate() {
                let n = ns[(fi + ki) % ns.len()];
                check(&small, &mut rng, format, main, ActDType::F32, (m, n, k));
                ran += 1;
            }
        }
        for (fi, format) in families().into_iter().enumerate() {
            // The defaults for few and for many rows, and 3 rows per team (n not a multiple).
            for (m, k) in [(1, 333), (8, 1000)] {
                check(&gpu, &mut rng, format, main, ActDType::F32, (m, 70, k));
            }
            check(
                &tuned(&gpu, 3, 1),
                &mut rng,
                format,
                main,
                ActDType::F32,
                (2, 37, 130),
            );
            for &s in &strategies[1..] {
                check(&gpu, &mut rng, format, s, ActDType::F32, (1 + fi, 37, 333));
            }
            if gpu.caps.f16 {
                check(&small, &mut rng, format, main, ActDType::F16, (2, 19, 200));
            }
        }
    }
    assert!(ran > 0, "no adapter has dot4I8Packed");
}

/// A larger row, so that every lane of a team walks several blocks (and U > 1 rounds run),
/// also with the weights split into chunks.
#[test]
fn low_bit_q8_gemv_long_rows() {
    let mut rng = rng("low_bit_q8_gemv_long_rows");
    for gpu in all_gpus() {
        for format in [
            WeightFormat::Binary {
                group: 64,
                mean: false,
            },
            WeightFormat::Ternary { group: 256 },
            WeightFormat::Ternary16 { group: 320 },
        ] {
            if let Some(&s) = q8_strategies(&gpu).first() {
                check(&gpu, &mut rng, format, s, ActDType::F32, (1, 45, 9000));
                // Rows split over three chunks: each dispatch reads the same quantized x.
                let row_bytes = 4 * sparq::formats::row_words(format, 9000) as u64;
                let shape = (2, 45, 9000);
                let limit = Some(16 * row_bytes);
                check_split(&gpu, &mut rng, format, (s, ActDType::F32), shape, limit);
            }
        }
    }
}

/// `Auto` picks the int8-activation GEMV for these formats up to the GEMV row limit (the
/// tensor-core GEMM from its row threshold where the adapter has one) where the adapter has
/// `dot4I8Packed`, reports int8 activations for it, and `SPARQ_Q8=0` keeps
/// exact activations.
#[test]
fn chooser_picks_q8_unless_turned_off() {
    for gpu in all_gpus() {
        let mut off = Config::default();
        off.gemm.q8 = false;
        let gpu_off = Gpu::from_adapter_with(gpu.adapter.clone(), &instance(), off).unwrap();
        for format in low_bit_formats() {
            let w = vec![0.5f32; 4 * 100];
            let packed = PackedWeights::quantize(&w, 4, 100, format).unwrap();
            let layer = Linear::new(&gpu, &packed, None).unwrap();
            let layer_off = Linear::new(&gpu_off, &packed, None).unwrap();
            for m in [1, 2, 8, 16, sparq::matmul::GEMV_MAX_ROWS] {
                let s = layer.strategy_for(&gpu, m);
                let what = format!("{} m={m} on {}", format.name(), gpu.caps.name);
                if coop::available(&gpu) && m >= coop_min_rows(format) {
                    // Tensor cores take over from their row threshold, as for every format.
                    assert_eq!(s, Strategy::GemmCoop, "{what}");
                } else if gpu.caps.dot4_i8 {
                    let want = if gpu.caps.subgroups {
                        Strategy::GemvSubgroupQ8
                    } else {
                        Strategy::GemvWorkgroupQ8
                    };
                    assert_eq!(s, want, "{what}");
                    assert_eq!(
                        ActivationPrecision::of(s, ActDType::F32),
                        ActivationPrecision::Int8,
                        "{what}"
                    );
                } else {
                    assert!(!s.quantizes_activations(), "{what}: {s:?}");
                }
                let s_off = layer_off.strategy_for(&gpu_off, m);
                assert!(
                    !s_off.quantizes_activations(),
                    "{what}, SPARQ_Q8=0: {s_off:?}"
                );
                assert_eq!(
                    ActivationPrecision::of(s_off, ActDType::F32),
                    ActivationPrecision::F32,
                    "{what}, SPARQ_Q8=0"
                );
            }
        }
    }
}
