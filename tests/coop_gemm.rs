//! The tensor-core GEMM: its WGSL validated by naga everywhere (CI has no adapter with
//! cooperative matrices), and its results against the f64 CPU reference on every adapter
//! that has them (skipped with a message elsewhere).

mod common;

use common::{all_gpus, assert_tensor, random, rng};
use sparq::activation::Activation;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{CoopTiling, KernelChoice, Linear, Strategy, coop};
use sparq::model::reference::activate;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Gpu, reference};

fn formats() -> Vec<WeightFormat> {
    vec![
        WeightFormat::F16,
        WeightFormat::Int8,
        WeightFormat::Int4 {
            group: 32,
            asymmetric: false,
        },
        WeightFormat::Int4 {
            group: 128,
            asymmetric: true,
        },
        WeightFormat::Int8G32,
        WeightFormat::Int4Min { group: 32 },
        // Blocks of 64-128 weights, deeper than most slices (staged in parts); binary groups
        // below a block, with means, and ternary groups of several blocks.
        WeightFormat::Binary {
            group: 128,
            mean: false,
        },
        WeightFormat::Binary {
            group: 32,
            mean: true,
        },
        WeightFormat::Ternary { group: 128 },
        WeightFormat::Ternary16 { group: 80 },
        WeightFormat::Ternary16 { group: 320 },
    ]
}

#[test]
fn every_variant_is_valid_wgsl_and_spirv() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    for format in formats() {
        for act in [ActDType::F16, ActDType::F32] {
            for t in CoopTiling::candidates() {
                if !t.slices(format) {
                    continue;
                }
                let src = coop::wgsl(format, act, &t, 32).unwrap();
                let what = format!("{} {act:?} {}", format.name(), t.label());
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
                let info = Validator::new(ValidationFlags::all(), Capabilities::all())
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
                let opts = naga::back::spv::Options {
                    lang_version: (1, 3),
                    ..Default::default()
                };
                // Overrides keep their defaults, as when the pipeline sets none.
                let (module, info) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, "main")),
                    &Default::default(),
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                naga::back::spv::write_vec(&module, &info, &opts, None)
                    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
            }
        }
    }
}

/// Runs one case through `plan` (or `plan_coop` with a tiling) and compares with the
/// reference on the dequantized weights.
#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    rng: &mut rand::rngs::StdRng,
    format: WeightFormat,
    act: ActDType,
    tiling: Option<CoopTiling>,
    m: usize,
    n: usize,
    k: usize,
    with_bias: bool,
    activation: Option<Activation>,
) {
    let w = random(rng, n * k);
    let mut x = random(rng, m * k);
    // The kernel multiplies in f16: give it inputs f16 holds exactly.
    x.iter_mut()
        .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    let bias = with_bias.then(|| random(rng, n));
    let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
    let mut layer = Linear::new(gpu, &packed, bias.as_deref()).unwrap();
    layer.set_activation(activation);
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let yt = Tensor::empty(gpu, m, n, act).unwrap();
    yt.poison(gpu);
    let plan = match tiling {
        Some(t) => layer.plan_coop(gpu, &xt, &yt, t),
        None => layer.plan(gpu, &xt, &yt, KernelChoice::Force(Strategy::GemmCoop)),
    }
    .unwrap();
    let mut enc = gpu.encoder("test");
    sparq::gpu::record_pass(&mut enc, &plan, None);
    gpu.submit_and_wait(enc).unwrap();
    let mut wq = packed.dequantize();
    if format != WeightFormat::Int8 {
        // Weights are rounded to f16 when staged, decoded with their group scales (int8
        // ones are exact: the row scale is applied to the f32 sum).
        wq.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let mut want = reference::linear(&x, &wq, bias.as_deref(), m, n, k);
    if let Some(a) = activation {
        // |f'| ≤ 1.13 for every activation: the linear output's error scale still bounds it.
        want.iter_mut().for_each(|v| *v = activate(a, *v));
    }
    let scale = reference::linear_abs(&x, &wq, bias.as_deref(), m, n, k);
    // f32 accumulation of exact f16 products; f16 outputs round once more.
    let tol = match act {
        ActDType::F32 => 2e-5,
        ActDType::F16 => 2e-3,
    };
    let what = format!(
        "{} {act:?} {} {activation:?} m={m} n={n} k={k} bias={with_bias} on {}",
        format.name(),
        tiling.map_or("default".into(), |t| t.label()),
        gpu.caps.name
    );
    assert_tensor(gpu, &yt, &want, &scale, tol, &what);
}

fn coop_gpus() -> Vec<Gpu> {
    all_gpus()
        .into_iter()
        .filter(|g| {
            let ok = coop::available(g);
            if !ok {
                eprintln!(
                    "skipping {} ({}): no f16 16x16x16 cooperative matrix with f32 accumulator",
                    g.caps.name, g.caps.backend
                );
            }
            ok
        })
        .collect()
}

#[test]
fn matches_reference_at_awkward_shapes() {
    let mut rng = rng("coop matches_reference_at_awkward_shapes");
    for gpu in coop_gpus() {
        for format in formats() {
            for act in [ActDType::F16, ActDType::F32] {
                for &(m, n, k) in &[
                    (1, 1, 1),
                    (17, 37, 100),
                    (130, 259, 300),
                    (64, 128, 64),
                    (300, 200, 1000),
                    (129, 520, 4100),
                ] {
                    let bias = (m + n) % 2 == 0;
                    check(&gpu, &mut rng, format, act, None, m, n, k, bias, None);
                }
            }
        }
    }
}

/// The activation fused into the epilogue (`Linear::set_activation`), as BERT's FFN uses it.
#[test]
fn fused_activation_matches_reference() {
    let mut rng = rng("coop fused_activation_matches_reference");
    for gpu in coop_gpus() {
        for (i, a) in [Activation::Gelu, Activation::Silu, Activation::Relu]
            .into_iter()
            .enumerate()
        {
            for format in formats() {
                let act = [ActDType::F16, ActDType::F32][i % 2];
                check(
                    &gpu,
                    &mut rng,
                    format,
                    act,
                    None,
                    130,
                    259,
                    300,
                    true,
                    Some(a),
                );
            }
        }
    }
}

#[test]
fn every_tiling_matches_reference() {
    let mut rng = rng("coop every_tiling_matches_reference");
    for gpu in coop_gpus() {
        for t in CoopTiling::candidates() {
            for format in formats() {
                if !t.fits(&gpu, format) {
                    continue;
                }
                check(
                    &gpu,
                    &mut rng,
                    format,
                    ActDType::F16,
                    Some(t),
                    261,
                    300,
                    333,
                    true,
                    None,
                );
            }
        }
    }
}

#[test]
fn refuses_what_it_cannot_do() {
    for gpu in all_gpus() {
        let w = vec![0.5f32; 64 * 64];
        let x = Tensor::from_f32(&gpu, &vec![1.0; 2 * 64], 2, 64).unwrap();
        let y = Tensor::empty(&gpu, 2, 64, ActDType::F32).unwrap();
        let f32w = PackedWeights::quantize(&w, 64, 64, WeightFormat::F32).unwrap();
        let layer = Linear::new(&gpu, &f32w, None).unwrap();
        // f32 weights (or no cooperative matrices at all) are a typed error, not a panic.
        assert!(
            layer
                .plan(&gpu, &x, &y, KernelChoice::Force(Strategy::GemmCoop))
                .is_err()
        );
        let f16w = PackedWeights::quantize(&w, 64, 64, WeightFormat::F16).unwrap();
        let layer = Linear::new(&gpu, &f16w, None).unwrap();
        let r = layer.plan(&gpu, &x, &y, KernelChoice::Force(Strategy::GemmCoop));
        assert_eq!(r.is_ok(), coop::available(&gpu), "{}", gpu.caps.name);
        // Auto picks tensor cores for many rows exactly where the adapter has them.
        assert_eq!(
            layer.strategy_for(&gpu, 4096) == Strategy::GemmCoop,
            coop::available(&gpu),
            "{}",
            gpu.caps.name
        );
        assert_ne!(layer.strategy_for(&gpu, 1), Strategy::GemmCoop);
    }
}
