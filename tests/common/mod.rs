//! Test helpers: every adapter on the machine, seeded random data, tolerance checks.
#![allow(dead_code)]

pub mod bert;
pub mod minilm;
pub mod paged;
pub mod train;

use rand::{Rng, SeedableRng, rngs::StdRng};
use sparq::Gpu;
use sparq::gpu::{enumerate_adapters, instance};

/// One opened device per adapter the machine has (lavapipe and llvmpipe in CI).
/// `SPARQ_TEST_ADAPTERS=vulkan` (a backend or name substring) restricts the set.
pub fn all_gpus() -> Vec<Gpu> {
    let inst = instance();
    let filter = std::env::var("SPARQ_TEST_ADAPTERS").ok();
    let gpus: Vec<Gpu> = enumerate_adapters(&inst)
        .into_iter()
        .filter(|a| {
            let info = a.get_info();
            filter.as_ref().is_none_or(|f| {
                let f = f.to_ascii_lowercase();
                info.name.to_ascii_lowercase().contains(&f)
                    || format!("{:?}", info.backend).to_ascii_lowercase() == f
            })
        })
        .filter_map(|a| match Gpu::from_adapter(a, &inst) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("skipping adapter: {e}");
                None
            }
        })
        .collect();
    assert!(
        !gpus.is_empty(),
        "no adapter to test on (install mesa-vulkan-drivers)"
    );
    gpus
}

/// A generator seeded from the clock (printed, so a failure can be replayed with SPARQ_SEED).
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("SPARQ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: SPARQ_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// `len` values uniform in [-1, 1).
pub fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Checks `got` against `want` elementwise: |got − want| ≤ tol · scale (scale = Σ|x·w|).
pub fn assert_close(got: &[f32], want: &[f64], scale: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(
            g.is_finite() && err <= tol * s.max(1e-30) + 1e-30,
            "{what}: element {i}: got {g}, want {w}, error {err:.3e} > {tol:.1e} × {s:.3e}"
        );
    }
}

/// Reads `y` back and checks it: the row padding beyond `y.cols` must be exactly zero (every
/// kernel writes it, so layers chain without clean-up), and the values must pass
/// [`assert_close`].
pub fn assert_tensor(
    gpu: &Gpu,
    y: &sparq::Tensor,
    want: &[f64],
    scale: &[f64],
    tol: f64,
    what: &str,
) {
    let padded = y.to_f32_padded(gpu).unwrap();
    let s = y.stride();
    for r in 0..y.rows {
        for c in y.cols..s {
            assert_eq!(
                padded[r * s + c],
                0.0,
                "{what}: padding [{r}, {c}] not zero"
            );
        }
    }
    assert_close(&y.to_f32(gpu).unwrap(), want, scale, tol, what);
}

/// Cosine similarity of an f32 row and an f64 reference, accumulated in f64.
pub fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Every binary and ternary format: all group sizes, binary with and without means.
pub fn low_bit_formats() -> Vec<sparq::formats::WeightFormat> {
    use sparq::formats::WeightFormat;
    let mut v = Vec::new();
    for group in [32, 64, 128] {
        for mean in [false, true] {
            v.push(WeightFormat::Binary { group, mean });
        }
    }
    v.extend([64, 128, 256].map(|group| WeightFormat::Ternary { group }));
    v.extend([80, 160, 320].map(|group| WeightFormat::Ternary16 { group }));
    v
}

/// Runs `layer` on `x` into `y` with `strategy` forced, `y` poisoned first so that an
/// output the kernel never writes shows.
pub fn run_forced(
    gpu: &Gpu,
    layer: &sparq::matmul::Linear,
    x: &sparq::tensor::Tensor,
    y: &sparq::tensor::Tensor,
    strategy: sparq::matmul::Strategy,
) {
    y.poison(gpu);
    let plan = layer
        .plan(gpu, x, y, sparq::matmul::KernelChoice::Force(strategy))
        .unwrap();
    let mut enc = gpu.encoder("test");
    sparq::gpu::record_pass(&mut enc, &plan, None);
    gpu.submit_and_wait(enc).unwrap();
}
