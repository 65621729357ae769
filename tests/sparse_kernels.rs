//! Every sparse kernel (CSR, BSR, 2:4; every value type; subgroup and portable paths) against
//! the f64 CPU reference, on every adapter, with poisoned outputs, at sparsities from 0 to
//! 100 %, odd shapes, rows of very different lengths, and m ∈ {1, 3, 17, 64}.

mod common;

use common::{all_gpus, assert_close, assert_tensor, random, rng};
use rand::Rng;
use rand::rngs::StdRng;
use sparq::linear::{LinearLayer, LinearOptions};
use sparq::prune::magnitude;
use sparq::sparse::{
    Bsr, CostModel, Csr, Representation, SparseLinear, SparsePath, SparseTuning, SparseWeights,
    TwoFour, ValueType, choose,
};
use sparq::tensor::{ActDType, Tensor};
use sparq::weights::LayerWeights;
use sparq::{Gpu, reference};

const MS: [usize; 4] = [1, 3, 17, 64];
const SPARSITIES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
const VALUE_TYPES: [ValueType; 4] = [
    ValueType::F32,
    ValueType::F16,
    ValueType::Int8,
    ValueType::Int4,
];

fn paths(gpu: &Gpu) -> Vec<SparsePath> {
    let mut v = vec![SparsePath::Workgroup];
    if SparseLinear::subgroups_usable(gpu) {
        v.push(SparsePath::Subgroup);
    }
    v
}

/// `w` with a fraction `s` of its weights (smallest magnitudes) zeroed.
fn pruned(rng: &mut StdRng, n: usize, k: usize, s: f64) -> Vec<f32> {
    magnitude(&random(rng, n * k), n, k, s).unwrap().w
}

/// Runs `weights` on `gpu` and compares with the CPU reference.
fn check(
    gpu: &Gpu,
    rng: &mut StdRng,
    weights: &SparseWeights,
    m: usize,
    act: ActDType,
    with_bias: bool,
    path: SparsePath,
) {
    check_tuned(
        gpu,
        rng,
        weights,
        m,
        act,
        with_bias,
        path,
        SparseTuning::from_config(&gpu.config().sparse),
    );
}

/// [`check`] with explicit tuning.
#[allow(clippy::too_many_arguments)]
fn check_tuned(
    gpu: &Gpu,
    rng: &mut StdRng,
    weights: &SparseWeights,
    m: usize,
    act: ActDType,
    with_bias: bool,
    path: SparsePath,
    tuning: SparseTuning,
) {
    let (n, k) = (weights.n(), weights.k());
    let mut x = random(rng, m * k);
    if act == ActDType::F16 {
        x.iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
    }
    let bias = with_bias.then(|| random(rng, n));
    let layer = SparseLinear::with_tuning(gpu, weights, bias.as_deref(), tuning).unwrap();
    let xt = Tensor::from_f32_as(gpu, &x, m, k, act).unwrap();
    let yt = Tensor::empty(gpu, m, n, act).unwrap();
    yt.poison(gpu);
    let plan = layer.plan(gpu, &xt, &yt, path).unwrap();
    let mut enc = gpu.encoder("test");
    sparq::gpu::record_pass(&mut enc, &plan, None);
    gpu.submit_and_wait(enc).unwrap();
    let dense = weights.to_dense();
    let mut want = weights.matmul_ref(&x, m).unwrap();
    if let Some(b) = &bias {
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] += b[j] as f64;
            }
        }
    }
    let scale = reference::linear_abs(&x, &dense, bias.as_deref(), m, n, k);
    let mut tol: f64 = match act {
        ActDType::F32 => 2e-5,
        ActDType::F16 => 2e-3,
    };
    let dense_path = path == SparsePath::Dense || (path == SparsePath::Auto && layer.densifies(m));
    if dense_path && matches!(weights.value_type(), ValueType::Int8 | ValueType::Int4) {
        // The dense copy holds value × scale rounded to f16 (relative error ≤ 2⁻¹¹).
        tol = tol.max(1e-3);
    }
    let what = format!(
        "{} {path:?} {act:?} {tuning:?} bias={with_bias} m={m} n={n} k={k} on {}",
        weights.name(),
        gpu.caps.name
    );
    assert_tensor(gpu, &yt, &want, &scale, tol, &what);
}

#[test]
fn csr_matches_reference_at_every_sparsity() {
    let mut rng = rng("csr");
    for gpu in all_gpus() {
        for path in paths(&gpu) {
            for (i, &s) in SPARSITIES.iter().enumerate() {
                for (j, vt) in [ValueType::F16, ValueType::F32].into_iter().enumerate() {
                    let (n, k) = (37 + 2 * i, 203 + 50 * j);
                    let w = pruned(&mut rng, n, k, s);
                    let csr = Csr::from_dense(&w, n, k, vt).unwrap();
                    let m = MS[(i + j) % MS.len()];
                    // x read row-major, or transposed per tile (the default from m = 2) in
                    // turns; with one row, from global memory or staged in workgroup memory.
                    let tuning = SparseTuning {
                        transpose_x_from: if (i / 2 + j) % 2 == 0 { 2 } else { usize::MAX },
                        stage_x: (i + j / 2) % 2 == 0,
                        ..SparseTuning::from_config(&gpu.config().sparse)
                    };
                    let bias = i % 2 == 0;
                    check_tuned(
                        &gpu,
                        &mut rng,
                        &csr.into(),
                        m,
                        ActDType::F32,
                        bias,
                        path,
                        tuning,
                    );
                }
            }
        }
    }
}

#[test]
fn bsr_matches_reference_for_every_value_type_and_block() {
    let mut rng = rng("bsr");
    let vts = VALUE_TYPES;
    let blocks = [(1, 32), (4, 32), (16, 32), (2, 64)];
    for gpu in all_gpus() {
        for path in paths(&gpu) {
            for (i, vt) in vts.into_iter().enumerate() {
                for (j, &(br, bc)) in blocks.iter().enumerate() {
                    let s = SPARSITIES[(i + j) % SPARSITIES.len()];
                    let (n, k) = (45 + j, 150 + 37 * i);
                    let w = pruned(&mut rng, n, k, s);
                    let bsr = Bsr::from_dense(&w, n, k, br, bc, vt).unwrap();
                    let m = MS[(i + 2 * j) % MS.len()];
                    check(
                        &gpu,
                        &mut rng,
                        &bsr.into(),
                        m,
                        ActDType::F32,
                        j % 2 == 1,
                        path,
                    );
                }
            }
        }
    }
}

#[test]
fn two_four_matches_reference_for_every_value_type() {
    let mut rng = rng("2:4");
    let vts = VALUE_TYPES;
    for gpu in all_gpus() {
        for path in paths(&gpu) {
            for (i, vt) in vts.into_iter().enumerate() {
                for (j, &m) in MS.iter().enumerate().filter(|(j, _)| (i + j) % 2 == 0) {
                    let (n, k) = (33 + i, 130 + 67 * j);
                    let w = sparq::prune::n_of_m(&random(&mut rng, n * k), n, k, 2, 4)
                        .unwrap()
                        .w;
                    let tf: SparseWeights = TwoFour::from_dense(&w, n, k, vt).unwrap().into();
                    // Rows per item: the default, and one or three (not dividing n), in turns.
                    for rows in [
                        if i % 2 == 0 { 8 } else { 4 },
                        if (i + j / 2) % 2 == 0 { 1 } else { 3 },
                    ] {
                        let tuning = SparseTuning {
                            two_four_rows: Some(rows),
                            ..SparseTuning::from_config(&gpu.config().sparse)
                        };
                        let bias = (j + rows) % 2 == 0;
                        check_tuned(&gpu, &mut rng, &tf, m, ActDType::F32, bias, path, tuning);
                    }
                }
            }
        }
    }
}

/// Every format and value type through the dense path (the weights written out dense, then
/// the dense GEMM): the copy equals the weights exactly (rounded to f16 where it is f16), and
/// the product matches the reference, with and without a shared scratch buffer.
#[test]
fn dense_path_matches_reference() {
    let mut rng = rng("dense path");
    let vts = VALUE_TYPES;
    for gpu in all_gpus() {
        for (i, &s) in [0.0, 0.5, 0.99, 1.0].iter().enumerate() {
            let (n, k) = (29 + i, 197 + 64 * i);
            let w = pruned(&mut rng, n, k, s);
            let w24 = sparq::prune::n_of_m(&w, n, k, 2, 4).unwrap().w;
            let mut cases: Vec<SparseWeights> = vec![
                Csr::from_dense(&w, n, k, vts[i % 2]).unwrap().into(),
                Bsr::from_dense(&w, n, k, 1 + 3 * (i % 2), 32, vts[i])
                    .unwrap()
                    .into(),
            ];
            cases.extend(
                vts.iter()
                    .map(|&vt| TwoFour::from_dense(&w24, n, k, vt).unwrap().into()),
            );
            for (j, c) in cases.iter().enumerate() {
                let layer = SparseLinear::new(&gpu, c, None).unwrap();
                let scratch = gpu.storage("scratch", layer.dense_bytes() + 64).unwrap();
                let mut enc = gpu.encoder("densify");
                sparq::gpu::record_pass(&mut enc, &[layer.densify(&gpu, &scratch).unwrap()], None);
                gpu.submit_and_wait(enc).unwrap();
                let f16 = layer.dense_format() == sparq::formats::WeightFormat::F16;
                let per_row = if f16 {
                    k.div_ceil(8) * 4
                } else {
                    k.div_ceil(4) * 4
                };
                let view = Tensor {
                    buffer: scratch.clone(),
                    rows: n,
                    cols: per_row,
                    dtype: ActDType::F32,
                };
                let words: Vec<u32> = view
                    .to_f32_padded(&gpu)
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let want = c.to_dense();
                for r in 0..n {
                    let row = &words[r * view.stride()..];
                    for col in 0..per_row * if f16 { 2 } else { 1 } {
                        let got = if f16 {
                            half::f16::from_bits((row[col / 2] >> (16 * (col % 2))) as u16).to_f32()
                        } else {
                            f32::from_bits(row[col])
                        };
                        let w = if col < k { want[r * k + col] } else { 0.0 };
                        let w = if f16 {
                            half::f16::from_f32(w).to_f32()
                        } else {
                            w
                        };
                        assert_eq!(
                            got,
                            w,
                            "{} copy [{r}, {col}] on {}",
                            c.name(),
                            gpu.caps.name
                        );
                    }
                }
                let m = [1, 17][j % 2];
                let act = if gpu.caps.f16 && j % 3 == 2 {
                    ActDType::F16
                } else {
                    ActDType::F32
                };
                check(&gpu, &mut rng, c, m, act, j % 2 == 0, SparsePath::Dense);
            }
        }
    }
}

/// Rows of very different lengths: empty rows, single weights, and rows long enough to get a
/// whole workgroup, side by side; also u32 column indices (k > 65536).
#[test]
fn uneven_rows_and_wide_matrices() {
    let mut rng = rng("uneven");
    let (n, k) = (11, 8300);
    let mut w = vec![0f32; n * k];
    for r in 0..n {
        let len = match r % 4 {
            0 => k,
            1 => 0,
            2 => 1,
            _ => rng.random_range(0..300),
        };
        for c in 0..len {
            let c = if len == k { c } else { rng.random_range(0..k) };
            w[r * k + c] = rng.random_range(-1.0f32..1.0);
        }
    }
    let (wn, wk) = (3, 70_000);
    let wide = pruned(&mut rng, wn, wk, 0.99);
    let tf_k = 4200;
    let tf_w = sparq::prune::n_of_m(&random(&mut rng, 5 * tf_k), 5, tf_k, 2, 4)
        .unwrap()
        .w;
    let cases: Vec<SparseWeights> = vec![
        Csr::from_dense(&w, n, k, ValueType::F16).unwrap().into(),
        Bsr::from_dense(&w, n, k, 1, 32, ValueType::Int4)
            .unwrap()
            .into(),
        Csr::from_dense(&wide, wn, wk, ValueType::F32)
            .unwrap()
            .into(),
        TwoFour::from_dense(&tf_w, 5, tf_k, ValueType::F16)
            .unwrap()
            .into(),
    ];
    for gpu in all_gpus() {
        for path in paths(&gpu) {
            for (i, c) in cases.iter().enumerate() {
                check(&gpu, &mut rng, c, MS[i % 4], ActDType::F32, true, path);
            }
        }
    }
}

#[test]
fn f16_activations() {
    let mut rng = rng("f16 act");
    for gpu in all_gpus().into_iter().filter(|g| g.caps.f16) {
        let (n, k) = (29, 170);
        let w = pruned(&mut rng, n, k, 0.9);
        let cases: Vec<SparseWeights> = vec![
            Csr::from_dense(&w, n, k, ValueType::F16).unwrap().into(),
            Bsr::from_dense(&w, n, k, 1, 32, ValueType::Int8)
                .unwrap()
                .into(),
        ];
        let w24 = sparq::prune::n_of_m(&w, n, k, 2, 4).unwrap().w;
        let tf: SparseWeights = TwoFour::from_dense(&w24, n, k, ValueType::Int4)
            .unwrap()
            .into();
        for (i, c) in cases.iter().chain([&tf]).enumerate() {
            check(
                &gpu,
                &mut rng,
                c,
                MS[(i + 2) % MS.len()],
                ActDType::F16,
                true,
                SparsePath::Auto,
            );
        }
    }
}

#[test]
fn bad_input_is_refused() {
    let mut rng = rng("errors");
    for gpu in all_gpus() {
        let (n, k) = (8, 64);
        let w = pruned(&mut rng, n, k, 0.5);
        let csr: SparseWeights = Csr::from_dense(&w, n, k, ValueType::F16).unwrap().into();
        assert!(matches!(
            SparseLinear::new(&gpu, &csr, Some(&[1.0; 3])),
            Err(sparq::Error::Input(sparq::InputError::Shape(_)))
        ));
        let layer = SparseLinear::new(&gpu, &csr, None).unwrap();
        let x = Tensor::from_f32(&gpu, &random(&mut rng, 2 * 63), 2, 63).unwrap();
        assert!(matches!(
            layer.forward(&gpu, &x),
            Err(sparq::Error::Input(sparq::InputError::Shape(_)))
        ));
        let x = Tensor::from_f32(&gpu, &random(&mut rng, 2 * k), 2, k).unwrap();
        let y = Tensor::empty(&gpu, 3, n, ActDType::F32).unwrap();
        assert!(matches!(
            layer.plan(&gpu, &x, &y, SparsePath::Auto),
            Err(sparq::Error::Input(sparq::InputError::Shape(_)))
        ));
        if !SparseLinear::subgroups_usable(&gpu) {
            let y = Tensor::empty(&gpu, 2, n, ActDType::F32).unwrap();
            assert!(matches!(
                layer.plan(&gpu, &x, &y, SparsePath::Subgroup),
                Err(sparq::Error::Device(
                    sparq::DeviceError::MissingFeature { .. }
                ))
            ));
        }
        // int4 blocks narrower than 32 columns have no kernel.
        let bsr: SparseWeights = Bsr::from_dense(&w, n, k, 1, 16, ValueType::Int4)
            .unwrap()
            .into();
        assert!(matches!(
            SparseLinear::new(&gpu, &bsr, None),
            Err(sparq::Error::Input(sparq::InputError::BlockShape {
                rows: 1,
                cols: 16,
                ..
            }))
        ));
    }
}

/// Dense and sparse layers behind one interface give the same result for the same weights,
/// with and without batch invariance.
#[test]
fn one_linear_layer_switches_format_without_the_caller_changing() {
    let mut rng = rng("linear layer");
    let (n, k, m) = (40, 96, 3);
    let w = pruned(&mut rng, n, k, 0.7);
    let x = random(&mut rng, m * k);
    let bias = random(&mut rng, n);
    let packed =
        sparq::formats::PackedWeights::quantize(&w, n, k, sparq::formats::WeightFormat::F32)
            .unwrap();
    let sparse = Csr::from_dense(&w, n, k, ValueType::F32).unwrap();
    let weights: [LayerWeights; 2] = [packed.into(), SparseWeights::from(sparse).into()];
    for gpu in all_gpus() {
        let want = reference::linear(&x, &w, Some(&bias), m, n, k);
        let scale = reference::linear_abs(&x, &w, Some(&bias), m, n, k);
        let xt = Tensor::from_f32(&gpu, &x, m, k).unwrap();
        for (weights, batch_invariant) in weights.iter().flat_map(|w| [(w, false), (w, true)]) {
            let options = LinearOptions { batch_invariant };
            let l = LinearLayer::new(&gpu, weights, Some(&bias), options).unwrap();
            let what = format!("{} invariant {batch_invariant}", l.format_name());
            assert_eq!((l.n(), l.k(), l.options()), (n, k, options));
            let y = l.forward(&gpu, &xt).unwrap();
            assert_close(&y.to_f32(&gpu).unwrap(), &want, &scale, 2e-5, &what);
            let y2 = Tensor::empty(&gpu, m, n, ActDType::F32).unwrap();
            y2.poison(&gpu);
            let plan = l.plan(&gpu, &xt, &y2).unwrap();
            let mut enc = gpu.encoder("test");
            sparq::gpu::record_pass(&mut enc, &plan, None);
            gpu.submit_and_wait(enc).unwrap();
            assert_close(&y2.to_f32(&gpu).unwrap(), &want, &scale, 2e-5, &what);
        }
    }
}

#[test]
fn chooser_follows_the_bytes() {
    let mut rng = rng("chooser");
    let (n, k) = (64, 512);
    // Equal rates: the pick is the representation with the fewest bytes.
    let bytes_only = CostModel {
        gbps: [1000.0; 4],
        launch_us: 0.0,
        source: "test".into(),
    };
    let pick = |w: &[f32], vt, model: &CostModel| choose(w, n, k, vt, model).unwrap().pick;
    let dense = random(&mut rng, n * k);
    assert_eq!(
        pick(&dense, ValueType::F16, &bytes_only),
        Representation::Dense
    );
    let sparse = pruned(&mut rng, n, k, 0.99);
    assert_eq!(
        pick(&sparse, ValueType::F16, &bytes_only),
        Representation::Csr
    );
    let w24 = sparq::prune::n_of_m(&dense, n, k, 2, 4).unwrap().w;
    assert_eq!(
        pick(&w24, ValueType::F16, &bytes_only),
        Representation::TwoFour
    );
    assert_eq!(
        pick(&w24, ValueType::Int4, &bytes_only),
        Representation::TwoFour
    );
    // Whole 32-column blocks pruned: BSR stores no index per weight.
    let mut blocky = dense.clone();
    for (b, chunk) in blocky.chunks_mut(32).enumerate() {
        if b % 10 != 0 {
            chunk.fill(0.0);
        }
    }
    assert_eq!(
        pick(&blocky, ValueType::Int4, &bytes_only),
        Representation::Bsr
    );
    // The measured rates change the pick where the H100 measured it so: 2:4 int4 is slower
    // than dense int4 there, and a 99 % sparse matrix still goes to CSR.
    let h100 = CostModel::h100();
    assert_eq!(pick(&w24, ValueType::Int4, &h100), Representation::Dense);
    assert_eq!(pick(&sparse, ValueType::F16, &h100), Representation::Csr);
    // Every candidate's bytes match what the format really holds.
    let c = choose(&blocky, n, k, ValueType::F16, &bytes_only).unwrap();
    let bytes = |r| {
        c.candidates
            .iter()
            .find(|c| c.representation == r)
            .unwrap()
            .bytes
    };
    let bsr = Bsr::from_dense(&blocky, n, k, 1, 32, ValueType::F16).unwrap();
    assert_eq!(bytes(Representation::Bsr), bsr.bytes());
    let tf = TwoFour::from_dense(&w24, n, k, ValueType::Int4).unwrap();
    let c24 = choose(&w24, n, k, ValueType::Int4, &bytes_only).unwrap();
    let b24 = c24
        .candidates
        .iter()
        .find(|c| c.representation == Representation::TwoFour)
        .unwrap()
        .bytes;
    assert_eq!(b24, tf.bytes());
    assert!(choose(&dense[1..], n, k, ValueType::F16, &bytes_only).is_err());
}

#[test]
fn block_pruning_zeros_whole_blocks_of_smallest_norm() {
    let mut rng = rng("blocks_l2");
    let (n, k, br, bc) = (10, 70, 4, 32); // edge blocks are partial in both directions
    let w = random(&mut rng, n * k);
    let p = sparq::prune::blocks_l2(&w, n, k, br, bc, 0.5).unwrap();
    let (gr, gc) = (n.div_ceil(br), k.div_ceil(bc));
    let norm = |m: &[f32], b: usize| -> f64 {
        let (r0, c0) = ((b / gc) * br, (b % gc) * bc);
        (r0..(r0 + br).min(n))
            .flat_map(|r| (c0..(c0 + bc).min(k)).map(move |c| r * k + c))
            .map(|i| m[i] as f64 * m[i] as f64)
            .sum()
    };
    let zeroed: Vec<usize> = (0..gr * gc).filter(|&b| norm(&p.w, b) == 0.0).collect();
    assert_eq!(
        zeroed.len(),
        (gr * gc).div_ceil(2),
        "round(0.5 · 9) blocks zeroed"
    );
    let max_gone = zeroed.iter().map(|&b| norm(&w, b)).fold(0.0, f64::max);
    for b in (0..gr * gc).filter(|b| !zeroed.contains(b)) {
        assert!(
            norm(&w, b) >= max_gone,
            "kept block {b} is smaller than a pruned one"
        );
        assert_eq!(norm(&p.w, b), norm(&w, b), "kept block {b} changed");
    }
    assert!(sparq::prune::blocks_l2(&w, n, k, 0, 32, 0.5).is_err());
    assert!(sparq::prune::blocks_l2(&w, n, k, 1, 32, 1.5).is_err());
}

#[test]
fn bins_group_short_items_and_isolate_long_ones() {
    use sparq::sparse::gpu::{BinShape, bins};
    let shape = BinShape {
        long_units: 10,
        items: 3,
    };
    // Items: 0..=4 short, 5 long, 6..=7 short, 8 long; a bin closes at 3 items or 15 units.
    let units = [1, 2, 3, 0, 9, 11, 5, 5, 100];
    let got = bins(units.into_iter(), shape);
    let whole = 1 << 31;
    assert_eq!(
        got,
        vec![0, 3, 3, 2, 5, 1 | whole, 6, 2, 8, 1 | whole],
        "bins as (first, count | whole)"
    );
    // Near-long items close a bin early (16 units ≥ 3 · 10 / 2).
    assert_eq!(bins([8, 8, 1].into_iter(), shape), vec![0, 2, 2, 1]);
    assert!(bins(std::iter::empty(), shape).is_empty());
}

/// Through `SparsePath::Kernel`, a row's result does not depend on the rows around it (m = 1,
/// 3, 17 and 64 take different tile sizes, and CSR a transposed x from m = 2): the
/// data-parallel scheduler returns split runs bit-identical to whole ones only if this holds.
#[test]
fn rows_do_not_depend_on_the_batch() {
    let mut rng = rng("rows_do_not_depend_on_the_batch");
    let (n, k) = (45, 300);
    let w = pruned(&mut rng, n, k, 0.5);
    let w24 = sparq::prune::n_of_m(&w, n, k, 2, 4).unwrap().w;
    let cases: Vec<SparseWeights> = vec![
        Csr::from_dense(&w, n, k, ValueType::F16).unwrap().into(),
        Bsr::from_dense(&w, n, k, 4, 16, ValueType::F16)
            .unwrap()
            .into(),
        TwoFour::from_dense(&w24, n, k, ValueType::Int4)
            .unwrap()
            .into(),
    ];
    let x = random(&mut rng, 64 * k);
    for gpu in all_gpus() {
        for c in &cases {
            let layer = SparseLinear::new(&gpu, c, None).unwrap();
            let run = |m: usize| {
                let xt = Tensor::from_f32_as(&gpu, &x[..m * k], m, k, ActDType::F32).unwrap();
                let yt = Tensor::empty(&gpu, m, n, ActDType::F32).unwrap();
                let plan = layer.plan(&gpu, &xt, &yt, SparsePath::Kernel).unwrap();
                let mut enc = gpu.encoder("test");
                sparq::gpu::record_pass(&mut enc, &plan, None);
                gpu.submit_and_wait(enc).unwrap();
                let y = yt.to_f32(&gpu).unwrap();
                y[..n].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let one = run(1);
            for m in [3, 17, 64] {
                assert_eq!(one, run(m), "{} m={m} on {}", c.name(), gpu.caps.name);
            }
        }
    }
}
