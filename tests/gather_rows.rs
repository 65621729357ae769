//! The row gather (`Linear::plan_gather`, `LinearLayer::plan_gather`): every dense format,
//! awkward k, ids repeated, out of order and past the matrix, against the rows of
//! `PackedWeights::dequantize`, on every adapter, with the output poisoned.

mod common;

use common::{all_gpus, random, rng};
use rand::Rng;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::linear::{LinearLayer, LinearOptions};
use sparq::matmul::Linear;
use sparq::sparse::{Csr, SparseWeights, ValueType};
use sparq::tensor::{ActDType, Tensor};
use sparq::weights::LayerWeights;
use sparq::{Error, Gpu, InputError};

fn gather(gpu: &Gpu, layer: &Linear, ids: &[u32], k: usize) -> Tensor {
    let ids_buf = gpu.upload("ids", ids).unwrap();
    let out = Tensor::empty(gpu, ids.len(), k, ActDType::F32).unwrap();
    out.poison(gpu);
    let d = layer.plan_gather(gpu, &ids_buf, &out).unwrap();
    let mut enc = gpu.encoder("gather");
    sparq::gpu::record_pass(&mut enc, &[d], None);
    gpu.submit_and_wait(enc).unwrap();
    out
}

#[test]
fn gathers_decoded_rows_of_every_dense_format() {
    let mut rng = rng("gathers_decoded_rows_of_every_dense_format");
    let mut formats = WeightFormat::all();
    formats.push(WeightFormat::Int4Min { group: 128 });
    for gpu in all_gpus() {
        for &format in &formats {
            for (n, k) in [(1, 1), (7, 3), (5, 31), (9, 33), (4, 100), (3, 1000)] {
                let mut w = random(&mut rng, n * k);
                if n > 2 {
                    w[2 * k..3 * k].fill(-0.25); // a constant row (zero scales under a minimum)
                }
                let p = PackedWeights::quantize(&w, n, k, format).unwrap();
                let layer = Linear::new(&gpu, &p, None).unwrap();
                let d = p.dequantize();
                // Repeated, out of order, and past the matrix (n, n + 5, u32::MAX).
                let mut ids: Vec<u32> = (0..2 * n + 3)
                    .map(|_| rng.random_range(0..n as u32))
                    .collect();
                ids.extend([
                    n as u32 - 1,
                    0,
                    n as u32 - 1,
                    n as u32,
                    n as u32 + 5,
                    u32::MAX,
                ]);
                let out = gather(&gpu, &layer, &ids, k);
                let got = out.to_f32_padded(&gpu).unwrap();
                let s = out.stride();
                let what = format!("{} {n}×{k} on {}", format.name(), gpu.caps.name);
                for (r, &id) in ids.iter().enumerate() {
                    for c in 0..s {
                        let g = got[r * s + c];
                        if c >= k || id as usize >= n {
                            assert_eq!(g.to_bits(), 0, "{what}: out [{r}, {c}] (id {id}) = {g}");
                            continue;
                        }
                        let want = d[id as usize * k + c];
                        // Bit for bit, except that a driver may fuse the min formats'
                        // q · d + m into one rounding.
                        let tol = match format {
                            WeightFormat::Int4Min { .. } => want.abs() * 2e-7 + 1e-7,
                            _ => 0.0,
                        };
                        let same = if tol == 0.0 {
                            g.to_bits() == want.to_bits()
                        } else {
                            (g - want).abs() <= tol
                        };
                        assert!(
                            same,
                            "{what}: out [{r}, {c}] (id {id}) = {g}, row has {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gather_refuses_bad_outputs_and_sparse_weights() {
    let (n, k) = (6, 40);
    let w = vec![0.5f32; n * k];
    for gpu in all_gpus() {
        let p = PackedWeights::quantize(&w, n, k, WeightFormat::Int8G32).unwrap();
        let layer = Linear::new(&gpu, &p, None).unwrap();
        let ids = gpu.upload("ids", &[0u32, 1, 2]).unwrap();
        let shape = |r: sparq::Result<sparq::gpu::Dispatch>| {
            matches!(r, Err(Error::Input(InputError::Shape(_))))
        };
        let wrong_k = Tensor::empty(&gpu, 3, k + 1, ActDType::F32).unwrap();
        assert!(shape(layer.plan_gather(&gpu, &ids, &wrong_k)), "wrong k");
        // (The upload rounds 12 bytes up to 16: 5 rows are past the buffer.)
        let too_many = Tensor::empty(&gpu, 5, k, ActDType::F32).unwrap();
        assert!(
            shape(layer.plan_gather(&gpu, &ids, &too_many)),
            "more rows than ids"
        );
        if gpu.caps.f16 {
            let half = Tensor::empty(&gpu, 3, k, ActDType::F16).unwrap();
            let r = layer.plan_gather(&gpu, &ids, &half);
            assert!(
                matches!(r, Err(Error::Input(InputError::DType(_)))),
                "f16 output"
            );
        }
        // Weights split over several bindings are refused, not read in part.
        let split =
            Linear::with_binding_limit(&gpu, &p, None, 2 * 4 * p.row_words() as u64).unwrap();
        assert!(split.chunks() > 1);
        let out = Tensor::empty(&gpu, 3, k, ActDType::F32).unwrap();
        let r = split.plan_gather(&gpu, &ids, &out);
        assert!(
            matches!(r, Err(Error::Input(InputError::TooLarge { .. }))),
            "split"
        );

        // Through the layer type: dense weights gather, sparse ones are refused.
        let dense = LinearLayer::new(
            &gpu,
            &LayerWeights::Dense(p.clone()),
            None,
            LinearOptions::default(),
        )
        .unwrap();
        let plan = dense.plan_gather(&gpu, &ids, &out).unwrap();
        assert_eq!(plan.len(), 1);
        let mut enc = gpu.encoder("gather");
        sparq::gpu::record_pass(&mut enc, &plan, None);
        gpu.submit_and_wait(enc).unwrap();
        let d = p.dequantize();
        assert_eq!(out.to_f32(&gpu).unwrap(), d[..3 * k].to_vec());
        let csr = Csr::from_dense(&w, n, k, ValueType::F32).unwrap();
        let sparse = LayerWeights::from(SparseWeights::from(csr));
        let layer = LinearLayer::new(&gpu, &sparse, None, LinearOptions::default()).unwrap();
        let r = layer.plan_gather(&gpu, &ids, &out);
        assert!(
            matches!(&r, Err(Error::Input(InputError::Invalid(m))) if m.contains("dense")),
            "sparse: {:?}",
            r.map(|p| p.len())
        );
    }
}
