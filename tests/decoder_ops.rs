//! The decoder's model kernels against the f64 host reference of `model::llama::reference`,
//! at awkward shapes, outputs poisoned first, on every adapter: RoPE (SwiGLU lives in
//! `decoder_ops_rows.rs`).

mod common;

use common::{all_gpus, assert_tensor, random, rng};
use rand::Rng;
use sparq::gpu::{Dispatch, record_pass};
use sparq::model::llama::{RopeLayout, reference};
use sparq::model::ops;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Error, Gpu, InputError};

fn run(gpu: &Gpu, d: &Dispatch) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, std::slice::from_ref(d), None);
    gpu.submit_and_wait(enc).unwrap();
}

fn out(gpu: &Gpu, rows: usize, cols: usize) -> Tensor {
    let t = Tensor::empty(gpu, rows, cols, ActDType::F32).unwrap();
    t.poison(gpu);
    t
}

/// The reference rotation of every head of every row, and the tolerance of each component.
///
/// Error bound of the f32 kernel: the angle `pos · theta^(-2i/d)` is the f32 product of the
/// position (exact below 2^24) and the frequency (rounded to f32 on the host), so it is off by
/// at most 2u · angle = 2^-23 · angle (u = 2^-24), plus about 2^-22 from the reduction to
/// [-π, π]; sin and cos there are within about 2^-21 on the hardware we run (the WGSL spec
/// bound, 2^-11, is far looser than any implementation), and the two products and the sum
/// add 2u relative. A component's error is then at most (|x_a| + |x_b|) times the sum. The
/// tolerance doubles each term: (|x_a| + |x_b|) · (2^-22 · angle + 2^-18). It grows with the
/// position: 1e-3 for the fastest pair at position 4096, 4e-6 for the slow pairs.
fn want(
    x: &[f32],
    pos: &[u32],
    heads: usize,
    d: usize,
    theta: f64,
    layout: RopeLayout,
) -> (Vec<f64>, Vec<f64>) {
    let (cols, half) = (heads * d, d / 2);
    let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut tol = vec![0.0; x.len()];
    for (r, &p) in pos.iter().enumerate() {
        for h in 0..heads {
            let o = r * cols + h * d;
            reference::rope(&mut y[o..o + d], p as usize, theta, layout);
            for i in 0..half {
                let (a, b) = match layout {
                    RopeLayout::HalfSplit => (i, i + half),
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                };
                let angle = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
                let t = (x[o + a].abs() + x[o + b].abs()) as f64
                    * (angle * 2f64.powi(-22) + 2f64.powi(-18));
                tol[o + a] = t;
                tol[o + b] = t;
            }
        }
    }
    (y, tol)
}

#[test]
fn rope_matches_the_reference_in_both_layouts() {
    let mut r = rng("rope");
    for gpu in all_gpus() {
        // (tokens, heads, head size): one token, one pair, widths not a multiple of 4 (3 × 6,
        // 5 × 10), pair counts around the 128-invocation workgroup, Llama's 64 and 128.
        for (rows, heads, d) in [
            (1, 1, 2),
            (1, 3, 6),
            (7, 5, 10),
            (3, 2, 128),
            (130, 1, 254),
            (33, 4, 64),
            (9, 3, 128),
        ] {
            for theta in [10_000.0, 500_000.0] {
                for layout in [RopeLayout::HalfSplit, RopeLayout::Interleaved] {
                    let cols = heads * d;
                    let x = random(&mut r, rows * cols);
                    // Positions up to 4095, with 0 and the largest present.
                    let mut pos: Vec<u32> = (0..rows).map(|_| r.random_range(0..4096)).collect();
                    pos[0] = 0;
                    if rows > 1 {
                        pos[rows - 1] = 4095;
                    }
                    let xt = Tensor::from_f32(&gpu, &x, rows, cols).unwrap();
                    let pb = gpu.upload("positions", &pos).unwrap();
                    let y = out(&gpu, rows, cols);
                    let what = format!("rope {rows}×{heads}×{d} θ={theta} {layout:?}");
                    let dsp = ops::rope(&gpu, &xt, &pb, heads, d, theta, layout, &y).unwrap();
                    run(&gpu, &dsp);
                    let (w, tol) = want(&x, &pos, heads, d, theta, layout);
                    assert_tensor(&gpu, &y, &w, &tol, 1.0, &what);

                    // New positions in the same buffer, replayed without a new dispatch.
                    let pos2: Vec<u32> = (0..rows).map(|_| r.random_range(0..4096)).collect();
                    gpu.queue.write_buffer(&pb, 0, bytemuck::cast_slice(&pos2));
                    y.poison(&gpu);
                    run(&gpu, &dsp);
                    let (w, tol) = want(&x, &pos2, heads, d, theta, layout);
                    assert_tensor(&gpu, &y, &w, &tol, 1.0, &format!("{what}, new positions"));
                }
            }
        }
    }
}

#[test]
fn rope_errors_are_typed() {
    let gpu = all_gpus().remove(0);
    let x = Tensor::from_f32(&gpu, &[0.0; 3 * 12], 3, 12).unwrap();
    let y = out(&gpu, 3, 12);
    let pos = gpu.upload("positions", &[0u32, 1, 2]).unwrap();
    let shape = |e: Error| matches!(e, Error::Input(InputError::Shape(_)));
    let l = RopeLayout::HalfSplit;
    assert!(ops::rope(&gpu, &x, &pos, 2, 6, 1e4, l, &y).is_ok());
    // Heads that do not cover the row, an odd head size, no heads.
    assert!(shape(
        ops::rope(&gpu, &x, &pos, 3, 6, 1e4, l, &y).err().unwrap()
    ));
    assert!(shape(
        ops::rope(&gpu, &x, &pos, 4, 3, 1e4, l, &y).err().unwrap()
    ));
    assert!(shape(
        ops::rope(&gpu, &x, &pos, 0, 12, 1e4, l, &y).err().unwrap()
    ));
    // An output of another shape.
    let y2 = out(&gpu, 2, 12);
    assert!(shape(
        ops::rope(&gpu, &x, &pos, 2, 6, 1e4, l, &y2).err().unwrap()
    ));
    // Fewer positions than tokens (the upload pads to 16 bytes: 4 tokens).
    let x5 = Tensor::from_f32(&gpu, &[0.0; 5 * 12], 5, 12).unwrap();
    let y5 = out(&gpu, 5, 12);
    assert!(shape(
        ops::rope(&gpu, &x5, &pos, 2, 6, 1e4, l, &y5).err().unwrap()
    ));
    // A theta that gives no frequencies.
    for theta in [0.0, -1.0, f64::NAN] {
        let e = ops::rope(&gpu, &x, &pos, 2, 6, theta, l, &y).err().unwrap();
        assert!(matches!(e, Error::Input(InputError::Invalid(_))), "{e}");
    }
    // An f16 tensor, where the device has f16.
    if let Ok(h) = Tensor::empty(&gpu, 3, 12, ActDType::F16) {
        let e = ops::rope(&gpu, &h, &pos, 2, 6, 1e4, l, &y).err().unwrap();
        assert!(matches!(e, Error::Input(InputError::DType(_))), "{e}");
    }
}
