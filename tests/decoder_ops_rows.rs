//! Row-wise decoder ops against f64 loops at awkward shapes, outputs poisoned first, on every
//! adapter, with their shape and dtype errors: SwiGLU (`model::ops::swiglu`), row selection
//! (`model::ops::select_rows`) and row argmax (`model::ops::argmax_rows`).

mod common;

use common::{all_gpus, assert_tensor, rng};
use rand::Rng;
use sparq::gpu::{Dispatch, record_pass};
use sparq::model::ops;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Error, Gpu, InputError};

fn run(gpu: &Gpu, d: Dispatch) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, &[d], None);
    gpu.submit_and_wait(enc).unwrap();
}

/// silu(g) · u in f64.
fn want(g: f32, u: f32) -> f64 {
    let g = g as f64;
    g / (1.0 + (-g).exp()) * u as f64
}

/// Runs the kernel on `x` (`rows × 2·i`) and compares every element with the f64 loop.
///
/// Tolerance from the arithmetic: WGSL's `exp` is accurate to 3 + 2·|x| ULP, and the
/// division and the two products add one rounding each, so |got − want| ≤ (8 + 2·|g|)·ε·|want|
/// (ε the f32 epsilon), plus |g·u|·2^-125 absolute: a driver may flush a subnormal e^-|g|
/// (|g| > 87.3) to zero, which moves silu(g) by at most |g| times the smallest normal f32.
/// The padding of the output must be zero.
fn check(gpu: &Gpu, x: &[f32], rows: usize, i: usize, what: &str) {
    let gate_up = Tensor::from_f32(gpu, x, rows, 2 * i).unwrap();
    let out = Tensor::empty(gpu, rows, i, ActDType::F32).unwrap();
    out.poison(gpu);
    run(gpu, ops::swiglu(gpu, &gate_up, &out).unwrap());
    let (mut want_all, mut tol) = (Vec::new(), Vec::new());
    for r in 0..rows {
        for c in 0..i {
            let (g, u) = (x[r * 2 * i + c], x[r * 2 * i + i + c]);
            let w = want(g, u);
            let ftz = 2.0 * f32::MIN_POSITIVE as f64 * (g as f64 * u as f64).abs();
            want_all.push(w);
            tol.push((8.0 + 2.0 * (g.abs() as f64)) * f32::EPSILON as f64 * w.abs() + ftz);
        }
    }
    assert_tensor(
        gpu,
        &out,
        &want_all,
        &tol,
        1.0,
        &format!("{what} on {}", gpu.caps.name),
    );
}

#[test]
fn swiglu_matches_f64_at_awkward_shapes() {
    let mut r = rng("swiglu");
    for gpu in all_gpus() {
        // (rows, I): one row, one column, widths not a multiple of 4, element counts not a
        // multiple of the 128-wide workgroup, one larger case.
        for (rows, i) in [
            (1, 1),
            (1, 3),
            (5, 7),
            (3, 130),
            (129, 37),
            (2, 1031),
            (64, 256),
        ] {
            let x: Vec<f32> = (0..rows * 2 * i)
                .map(|_| r.random_range(-8.0f32..8.0))
                .collect();
            check(&gpu, &x, rows, i, &format!("swiglu {rows}×{i}"));
        }
    }
}

#[test]
fn swiglu_does_not_overflow_for_large_gates() {
    let mut r = rng("swiglu large");
    let gates = [
        80.0f32, -80.0, 1e4, -1e4, 0.0, -0.0, 88.0, -88.0, 1e30, -1e30, 1.0,
    ];
    let i = gates.len();
    for gpu in all_gpus() {
        let rows = 3;
        let x: Vec<f32> = (0..rows)
            .flat_map(|_| {
                let ups: Vec<f32> = (0..i).map(|_| r.random_range(-2.0f32..2.0)).collect();
                gates.iter().copied().chain(ups)
            })
            .collect();
        check(&gpu, &x, rows, i, "swiglu large gates");
        // The extremes: silu(g) = g for large positive g, exactly 0 for large negative g.
        let gate_up = Tensor::from_f32(&gpu, &x, rows, 2 * i).unwrap();
        let out = Tensor::empty(&gpu, rows, i, ActDType::F32).unwrap();
        out.poison(&gpu);
        run(&gpu, ops::swiglu(&gpu, &gate_up, &out).unwrap());
        let got = out.to_f32(&gpu).unwrap();
        for row in 0..rows {
            let u = |c: usize| x[row * 2 * i + i + c];
            let y = |c: usize| got[row * i + c];
            let near = |got: f32, want: f32| (got - want).abs() <= 2.0 * f32::EPSILON * want.abs();
            assert!(near(y(0), 80.0 * u(0)), "silu(80) · u: {}", y(0));
            assert!(near(y(2), 1e4 * u(2)), "silu(1e4) · u: {}", y(2));
            assert_eq!(y(3), 0.0, "silu(-1e4) · u");
            assert_eq!(y(9), 0.0, "silu(-1e30) · u");
        }
    }
}

#[test]
fn swiglu_shape_and_dtype_errors_are_typed() {
    let gpu = all_gpus().remove(0);
    let t = |rows, cols| Tensor::empty(&gpu, rows, cols, ActDType::F32).unwrap();
    let shape = |r: sparq::Result<Dispatch>| {
        assert!(
            matches!(r, Err(Error::Input(InputError::Shape(_)))),
            "expected a shape error"
        )
    };
    // Rows differ; the input is not twice the output's width (odd, equal, too wide).
    shape(ops::swiglu(&gpu, &t(3, 8), &t(2, 4)));
    shape(ops::swiglu(&gpu, &t(2, 7), &t(2, 3)));
    shape(ops::swiglu(&gpu, &t(2, 4), &t(2, 4)));
    shape(ops::swiglu(&gpu, &t(2, 12), &t(2, 4)));
    // An f16 input or output (the buffers reused: the dtype check comes first).
    let x = t(2, 8);
    let y = t(2, 4);
    let f16 = |s: &Tensor| Tensor {
        buffer: s.buffer.clone(),
        rows: s.rows,
        cols: s.cols,
        dtype: ActDType::F16,
    };
    for r in [
        ops::swiglu(&gpu, &f16(&x), &y),
        ops::swiglu(&gpu, &x, &f16(&y)),
    ] {
        assert!(
            matches!(r, Err(Error::Input(InputError::DType(_)))),
            "expected a dtype error"
        );
    }
}

#[test]
fn select_rows_copies_the_named_rows_and_zeros_for_ids_past_the_end() {
    let mut r = rng("select rows");
    for gpu in all_gpus() {
        // (source rows, width, ids): repeated, out of order, the last row, one id past the end.
        for (src_rows, cols, ids) in [
            (1usize, 1usize, vec![0u32]),
            (7, 5, vec![6, 0, 6, 3]),
            (130, 37, vec![129, 1, 64, 130, u32::MAX, 2]),
            (3, 576, vec![2]),
        ] {
            let x: Vec<f32> = (0..src_rows * cols)
                .map(|_| r.random_range(-4.0f32..4.0))
                .collect();
            let xt = Tensor::from_f32(&gpu, &x, src_rows, cols).unwrap();
            let idb = gpu.upload("ids", &ids).unwrap();
            let out = Tensor::empty(&gpu, ids.len(), cols, ActDType::F32).unwrap();
            out.poison(&gpu);
            run(&gpu, ops::select_rows(&gpu, &xt, &idb, &out).unwrap());
            let x = &x;
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&id| {
                    (0..cols).map(move |c| {
                        if (id as usize) < src_rows {
                            x[id as usize * cols + c] as f64
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let exact = vec![0.0; want.len()];
            assert_tensor(
                &gpu,
                &out,
                &want,
                &exact,
                1.0,
                &format!("select {ids:?} of {src_rows}×{cols} on {}", gpu.caps.name),
            );
        }
        // Shape errors: widths differ, too few ids.
        let x = Tensor::empty(&gpu, 4, 8, ActDType::F32).unwrap();
        let ids = gpu.upload("ids", &[0u32; 2]).unwrap();
        // (upload pads the 2 ids to 16 bytes, so 5 rows are too many)
        for (out_rows, out_cols) in [(2, 9), (5, 8)] {
            let out = Tensor::empty(&gpu, out_rows, out_cols, ActDType::F32).unwrap();
            assert!(
                matches!(
                    ops::select_rows(&gpu, &x, &ids, &out),
                    Err(Error::Input(InputError::Shape(_)))
                ),
                "{out_rows}×{out_cols}"
            );
        }
    }
}

#[test]
fn argmax_rows_picks_the_lowest_column_of_the_largest_value() {
    let mut r = rng("argmax rows");
    for gpu in all_gpus() {
        // Widths below, at and past the 256-wide workgroup, and the vocabulary of SmolLM2.
        for (rows, cols) in [(1usize, 1usize), (3, 7), (5, 256), (2, 1000), (4, 49152)] {
            let mut x: Vec<f32> = (0..rows * cols)
                .map(|_| r.random_range(-4.0f32..4.0))
                .collect();
            // Row 0: the maximum twice (the lower column wins); row 1 (if any): NaN beside it.
            let top = r.random_range(0..cols);
            x[top] = 9.0;
            x[cols - 1] = 9.0;
            if rows > 1 {
                x[cols] = f32::NAN;
            }
            let xt = Tensor::from_f32(&gpu, &x, rows, cols).unwrap();
            let out = Tensor::empty(&gpu, rows, 1, ActDType::F32).unwrap();
            out.poison(&gpu);
            run(&gpu, ops::argmax_rows(&gpu, &xt, &out).unwrap());
            let got: Vec<u32> = out
                .to_f32(&gpu)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let want: Vec<u32> = x
                .chunks(cols)
                .map(|row| {
                    let mut best = None::<usize>;
                    for (c, &v) in row.iter().enumerate() {
                        if !v.is_nan() && best.is_none_or(|b| v > row[b]) {
                            best = Some(c);
                        }
                    }
                    best.unwrap_or(0) as u32
                })
                .collect();
            assert_eq!(got, want, "{rows}×{cols} on {}", gpu.caps.name);
            let padded = out.to_f32_padded(&gpu).unwrap();
            assert!(
                padded
                    .chunks(4)
                    .all(|p| p[1..].iter().all(|v| v.to_bits() == 0))
            );
        }
        let x = Tensor::empty(&gpu, 2, 8, ActDType::F32).unwrap();
        let bad = Tensor::empty(&gpu, 2, 2, ActDType::F32).unwrap();
        assert!(matches!(
            ops::argmax_rows(&gpu, &x, &bad),
            Err(Error::Input(InputError::Shape(_)))
        ));
    }
}
