//! The group formats GGUF maps onto (int8 g32 = Q8_0, int4 g32 = Q4_0, int4 g32 m = Q4_1)
//! through every float-activation kernel, against the f64 CPU reference on the dequantized
//! weights, on every adapter, with poisoned outputs; and the strategy choice that keeps them
//! off the int8-activation kernels, which have no decoder for them.

mod common;

use common::{all_gpus, assert_tensor, random, rng};
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{KernelChoice, Linear, Strategy};
use sparq::tensor::{ActDType, Tensor};
use sparq::{Error, Gpu, InputError, reference};

fn formats() -> [WeightFormat; 4] {
    [
        WeightFormat::Int8G32,
        WeightFormat::Int4 {
            group: 32,
            asymmetric: false,
        },
        WeightFormat::Int4Min { group: 32 },
        WeightFormat::Int4Min { group: 128 },
    ]
}

fn float_strategies(gpu: &Gpu, m: usize) -> Vec<Strategy> {
    let mut v = vec![Strategy::GemmTiled];
    if m <= sparq::matmul::GEMV_MAX_ROWS {
        v.push(Strategy::GemvWorkgroup);
        if gpu.caps.subgroups {
            v.push(Strategy::GemvSubgroup);
        }
    }
    v
}

/// Random weights with some constant groups (a zero scale under a non-zero minimum in the
/// min formats) and a zero row.
fn weights(rng: &mut rand::rngs::StdRng, n: usize, k: usize) -> Vec<f32> {
    let mut w = random(rng, n * k);
    if n > 2 {
        w[k..k + k.min(40)].fill(0.375);
        w[2 * k..3 * k].fill(0.0);
    }
    w
}

fn run(
    gpu: &Gpu,
    layer: &Linear,
    x: &Tensor,
    y: &Tensor,
    choice: KernelChoice,
) -> sparq::Result<()> {
    let plan = layer.plan(gpu, x, y, choice)?;
    let mut enc = gpu.encoder("test");
    sparq::gpu::record_pass(&mut enc, &plan, None);
    gpu.submit_and_wait(enc)
}

#[test]
fn group_formats_match_reference_at_awkward_shapes() {
    let mut rng = rng("group_formats_match_reference_at_awkward_shapes");
    // k = 1, a partial block, a partial group, several groups with a partial one, and a long
    // row (x staged in chunks); n odd.
    let shapes = [(1, 1), (3, 31), (17, 33), (9, 100), (5, 4133)];
    for gpu in all_gpus() {
        for format in formats() {
            for &(n, k) in &shapes {
                for m in [1, 3, 17, 70] {
                    // The long row at a few row counts only (each is slow on CPU adapters).
                    if k > 1000 && !matches!(m, 1 | 17) {
                        continue;
                    }
                    let w = weights(&mut rng, n, k);
                    let x = random(&mut rng, m * k);
                    let bias = ((n + m) % 2 == 0).then(|| random(&mut rng, n));
                    let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
                    let layer = Linear::new(&gpu, &packed, bias.as_deref()).unwrap();
                    let wq = packed.dequantize();
                    let want = reference::linear(&x, &wq, bias.as_deref(), m, n, k);
                    let scale = reference::linear_abs(&x, &wq, bias.as_deref(), m, n, k);
                    let xt = Tensor::from_f32(&gpu, &x, m, k).unwrap();
                    let mut choices: Vec<KernelChoice> = float_strategies(&gpu, m)
                        .into_iter()
                        .map(KernelChoice::Force)
                        .collect();
                    // Auto, where it keeps f32 activations (symmetric int4 may take int8 ones:
                    // tests/linear.rs checks those against quantized x).
                    if !layer.strategy_for(&gpu, m).quantizes_activations() {
                        choices.push(KernelChoice::Auto);
                    }
                    for choice in choices {
                        let yt = Tensor::empty(&gpu, m, n, ActDType::F32).unwrap();
                        yt.poison(&gpu);
                        run(&gpu, &layer, &xt, &yt, choice).unwrap();
                        let what = format!(
                            "{} {choice:?} m={m} n={n} k={k} on {}",
                            format.name(),
                            gpu.caps.name
                        );
                        assert_tensor(&gpu, &yt, &want, &scale, 2e-5, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn group_formats_stay_off_the_int8_activation_kernels() {
    let (n, k) = (5, 70);
    let w = vec![0.5f32; n * k];
    for gpu in all_gpus() {
        let x = Tensor::from_f32(&gpu, &vec![1.0; 2 * k], 2, k).unwrap();
        let y = Tensor::empty(&gpu, 2, n, ActDType::F32).unwrap();
        for format in [WeightFormat::Int8G32, WeightFormat::Int4Min { group: 32 }] {
            let layer = Linear::new(
                &gpu,
                &PackedWeights::quantize(&w, n, k, format).unwrap(),
                None,
            )
            .unwrap();
            for m in [1, 2, 8, 64] {
                let s = layer.strategy_for(&gpu, m);
                assert!(
                    !s.quantizes_activations() && s != Strategy::GemmDp4a,
                    "{} m={m}: {s:?} on {}",
                    format.name(),
                    gpu.caps.name
                );
            }
            for s in [
                Strategy::GemvWorkgroupQ8,
                Strategy::GemvSubgroupQ8,
                Strategy::GemmDp4a,
            ] {
                let r = layer.plan(&gpu, &x, &y, KernelChoice::Force(s));
                // Where the adapter could run the kernel, the format is what is refused.
                let runnable = gpu.caps.dot4_i8 && (!s.needs_subgroups() || gpu.caps.subgroups);
                let ok = match &r {
                    Err(Error::Input(InputError::Invalid(m))) => m.contains(&format.name()),
                    Err(Error::Device(_)) => !runnable,
                    _ => false,
                };
                assert!(
                    ok,
                    "{} forced {s:?}: {:?}",
                    format.name(),
                    r.map(|p| p.len())
                );
            }
        }
    }
}
