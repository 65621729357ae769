//! The paged attention kernel (`ops::paged_attention`) against the f64 reference of
//! `model::reference`, on every adapter: head sizes 64, 40 and 6 (an odd number of pairs),
//! query/kv heads 9/3, 4/4 and 8/1, blocks of 16, sequences of 1, 15, 16, 17, 100 and 300
//! tokens (past the 128-key context splits) on shuffled, non-contiguous block tables, decode
//! (one row per sequence) and prefill, pools holding f16-exact values with every other slot
//! poisoned, outputs and scratch poisoned; out-of-range rows; typed errors of both paged
//! kernels. `tests/paged_cache.rs` tests `ops::kv_append` and the two together.

mod common;

use common::paged::*;
use common::{all_gpus, assert_tensor, random, rng};
use rand::seq::SliceRandom;
use sparq::model::llama::RopeLayout;
use sparq::model::ops::{self, KvLayout, Rope};
use sparq::model::reference;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Error, InputError};

#[test]
fn paged_attention_matches_the_reference_in_decode_and_prefill() {
    let mut r = rng("paged_attention");
    for gpu in all_gpus() {
        for (d, heads, kv) in SHAPES {
            let c = Cache::new(&mut r, d, heads, kv, 0);
            let [(kp, kf), (vp, vf)] = random_pools(&gpu, &mut r, &c);
            let tb = gpu.upload("tables", &c.tables).unwrap();
            let last = |s: usize| (s as u32, LENS[s] as u32 - 1);
            // Decode (the last position of each sequence, split over the context), the last
            // 8 positions of each (split), and a whole-cache prefill (one split).
            let decode: Vec<(u32, u32)> = (0..LENS.len()).map(last).collect();
            let mut chunk: Vec<(u32, u32)> = (0..LENS.len())
                .flat_map(|s| {
                    let n = LENS[s] as u32;
                    (n.saturating_sub(8)..n).map(move |p| (s as u32, p))
                })
                .collect();
            chunk.shuffle(&mut r);
            for rows in [decode, chunk, all_rows(&mut r)] {
                let t = rows.len();
                let (splits, _) = ops::paged_split(t, heads, MAX_CONTEXT);
                let what = format!("paged attention {heads}/{kv}×{d}, {t} rows, {splits} splits");
                let x: Vec<f32> = random(&mut r, t * heads * d)
                    .iter()
                    .map(|v| 3.0 * v)
                    .collect();
                let q = Tensor::from_f32(&gpu, &x, t, heads * d).unwrap();
                let rb = rows_buffer(&gpu, &rows);
                let o = out(&gpu, t, heads * d);
                let scratch = gpu
                    .storage(
                        "scratch",
                        ops::paged_scratch_bytes(t, heads, d, MAX_CONTEXT),
                    )
                    .unwrap();
                // Poisoned too: the combine must read only the partials of splits that ran.
                let junk = vec![0xFFu8; scratch.size() as usize];
                gpu.queue.write_buffer(&scratch, 0, &junk);
                let l = &c.layout;
                let ds = ops::paged_attention(
                    &gpu,
                    &q,
                    &rb,
                    &tb,
                    c.stride,
                    l,
                    heads,
                    MAX_CONTEXT,
                    &kp,
                    &vp,
                    Some(&scratch),
                    &o,
                )
                .unwrap();
                assert_eq!(ds.len(), 1 + (splits > 1) as usize, "{what}");
                run(&gpu, &ds);
                let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let want =
                    reference::paged_attention(&xf, &rows, &c.tables, c.stride, l, heads, &kf, &vf);
                let tol = attention_tol(&xf, &rows, &c, &kf, &vf, false);
                assert_tensor(&gpu, &o, &want, &tol, 1.0, &what);
            }
        }
    }
}

/// Metadata outside the plan reads and writes nothing outside it: a position past
/// `max_context` attends to the first `max_context` keys, a sequence past the tables gives
/// zeros, and `kv_append` of a row past its table row or the tables writes no K or V.
#[test]
fn rows_outside_the_plan_stay_in_bounds() {
    let mut r = rng("paged_bounds");
    for gpu in all_gpus() {
        let (d, heads, kv) = (40, 4, 4);
        let c = Cache::new(&mut r, d, heads, kv, 0);
        let l = &c.layout;
        let [(kp, kf), (vp, vf)] = random_pools(&gpu, &mut r, &c);
        let tb = gpu.upload("tables", &c.tables).unwrap();
        let mc = 256;
        let far = LENS.len() as u32 + 3;
        let rows = [(5u32, 299u32), (far, 7), (5, u32::MAX), (4, 99)];
        let x = random(&mut r, rows.len() * heads * d);
        let q = Tensor::from_f32(&gpu, &x, rows.len(), heads * d).unwrap();
        let rb = rows_buffer(&gpu, &rows);
        let o = out(&gpu, rows.len(), heads * d);
        let ds = ops::paged_attention(
            &gpu, &q, &rb, &tb, c.stride, l, heads, mc, &kp, &vp, None, &o,
        )
        .unwrap();
        run(&gpu, &ds);
        // What the clamped rows see: seq 5 at the plan's last position, zeros for `far`.
        let seen = [(5u32, mc as u32 - 1), (0, 0), (5, mc as u32 - 1), (4, 99)];
        let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut want =
            reference::paged_attention(&xf, &seen, &c.tables, c.stride, l, heads, &kf, &vf);
        let mut tol = attention_tol(&xf, &seen, &c, &kf, &vf, false);
        let w = heads * d;
        want[w..2 * w].iter_mut().for_each(|v| *v = 0.0);
        tol[w..2 * w].iter_mut().for_each(|t| *t = 0.0);
        assert_tensor(&gpu, &o, &want, &tol, 1.0, "clamped rows");

        let width = (heads + 2 * kv) * d;
        let rows = [(0u32, (c.stride * BS) as u32), (far, 0), (0, u32::MAX)];
        let qkv =
            Tensor::from_f32(&gpu, &random(&mut r, rows.len() * width), rows.len(), width).unwrap();
        let rb = rows_buffer(&gpu, &rows);
        let pools = [0, 1].map(|_| gpu.upload("pool", &vec![POISON; c.words()]).unwrap());
        let rope = Rope::new(&gpu, d, THETA, RopeLayout::Interleaved).unwrap();
        let qo = out(&gpu, rows.len(), heads * d);
        let dsp = ops::kv_append(
            &gpu, &qkv, &rb, &tb, c.stride, heads, l, &rope, &qo, &pools[0], &pools[1],
        )
        .unwrap();
        run(&gpu, &[dsp]);
        for p in &pools {
            let (_, raw) = read_pool(&gpu, p, c.words());
            assert!(
                raw.iter().all(|&w| w == POISON),
                "a row outside the tables wrote"
            );
        }
        assert!(qo.to_f32(&gpu).unwrap().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn paged_errors_are_typed() {
    let gpu = all_gpus().remove(0);
    let shape = |e: Error| matches!(e, Error::Input(InputError::Shape(_)));
    let (d, heads, kv) = (8, 4, 2);
    let layout = KvLayout {
        block_size: 16,
        kv_heads: kv,
        head_dim: d,
        blocks: 4,
    };
    let pool = gpu.storage("pool", layout.pool_bytes()).unwrap();
    let small = gpu.storage("small", layout.pool_bytes() - 4).unwrap();
    let rows = gpu.upload("rows", &[0u32, 0, 0, 1]).unwrap();
    let tables = gpu.upload("tables", &[0u32, 1, 2, 3]).unwrap();
    let rope = Rope::new(&gpu, d, THETA, RopeLayout::HalfSplit).unwrap();
    let qkv = Tensor::from_f32(
        &gpu,
        &vec![0.0; 2 * (heads + 2 * kv) * d],
        2,
        (heads + 2 * kv) * d,
    )
    .unwrap();
    let q = out(&gpu, 2, heads * d);
    let o = out(&gpu, 2, heads * d);
    let append = |qkv: &Tensor,
                  rows: &wgpu::Buffer,
                  stride: usize,
                  heads: usize,
                  l: &KvLayout,
                  rope: &Rope,
                  q: &Tensor,
                  k: &wgpu::Buffer| {
        ops::kv_append(
            &gpu, qkv, rows, &tables, stride, heads, l, rope, q, k, &pool,
        )
    };
    let attend = |q: &Tensor,
                  rows: &wgpu::Buffer,
                  stride: usize,
                  heads: usize,
                  l: &KvLayout,
                  mc: usize,
                  k: &wgpu::Buffer,
                  s: Option<&wgpu::Buffer>,
                  o: &Tensor| {
        ops::paged_attention(&gpu, q, rows, &tables, stride, l, heads, mc, k, &pool, s, o)
    };
    assert!(append(&qkv, &rows, 2, heads, &layout, &rope, &q, &pool).is_ok());
    assert!(attend(&q, &rows, 2, heads, &layout, 32, &pool, None, &o).is_ok());
    // Heads that do not group over the kv heads; an odd or zero head size; an empty pool.
    let odd = KvLayout {
        head_dim: 7,
        ..layout
    };
    for (h, l) in [
        (3, layout),
        (0, layout),
        (heads, odd),
        (
            heads,
            KvLayout {
                blocks: 0,
                ..layout
            },
        ),
    ] {
        assert!(shape(
            append(&qkv, &rows, 2, h, &l, &rope, &q, &pool)
                .err()
                .unwrap()
        ));
        assert!(shape(
            attend(&q, &rows, 2, h, &l, 32, &pool, None, &o)
                .err()
                .unwrap()
        ));
    }
    // RoPE of another head size; qkv, q or out of the wrong shape.
    let rope6 = Rope::new(&gpu, 6, THETA, RopeLayout::HalfSplit).unwrap();
    assert!(shape(
        append(&qkv, &rows, 2, heads, &layout, &rope6, &q, &pool)
            .err()
            .unwrap()
    ));
    let q3 = out(&gpu, 3, heads * d);
    let wide = out(&gpu, 2, heads * d + 2);
    assert!(shape(
        append(&qkv, &rows, 2, heads, &layout, &rope, &q3, &pool)
            .err()
            .unwrap()
    ));
    assert!(shape(
        append(&wide, &rows, 2, heads, &layout, &rope, &q, &pool)
            .err()
            .unwrap()
    ));
    assert!(shape(
        attend(&q, &rows, 2, heads, &layout, 32, &pool, None, &q3)
            .err()
            .unwrap()
    ));
    assert!(shape(
        attend(&wide, &rows, 2, heads, &layout, 32, &pool, None, &wide)
            .err()
            .unwrap()
    ));
    // Buffers too small: the pools, the rows (the upload pads to 16 bytes: 2 rows), the
    // tables (no row of 5 blocks), the scratch; no table at all, no context.
    let rows3 = Tensor::from_f32(
        &gpu,
        &vec![0.0; 3 * (heads + 2 * kv) * d],
        3,
        (heads + 2 * kv) * d,
    )
    .unwrap();
    assert!(shape(
        append(&qkv, &rows, 2, heads, &layout, &rope, &q, &small)
            .err()
            .unwrap()
    ));
    assert!(shape(
        attend(&q, &rows, 2, heads, &layout, 32, &small, None, &o)
            .err()
            .unwrap()
    ));
    assert!(shape(
        append(&rows3, &rows, 2, heads, &layout, &rope, &q3, &pool)
            .err()
            .unwrap()
    ));
    assert!(shape(
        append(&qkv, &rows, 5, heads, &layout, &rope, &q, &pool)
            .err()
            .unwrap()
    ));
    assert!(shape(
        append(&qkv, &rows, 0, heads, &layout, &rope, &q, &pool)
            .err()
            .unwrap()
    ));
    assert!(shape(
        attend(&q, &rows, 5, heads, &layout, 32, &pool, None, &o)
            .err()
            .unwrap()
    ));
    assert!(shape(
        attend(&q, &rows, 2, heads, &layout, 0, &pool, None, &o)
            .err()
            .unwrap()
    ));
    let need = ops::paged_scratch_bytes(2, heads, d, 1024);
    assert!(need > 0);
    let tiny = gpu.storage("tiny", need - 4).unwrap();
    assert!(shape(
        attend(&q, &rows, 2, heads, &layout, 1024, &pool, Some(&tiny), &o)
            .err()
            .unwrap()
    ));
    // A group too large for workgroup memory (64 heads of 128 on one kv head).
    let big = KvLayout {
        kv_heads: 1,
        head_dim: 128,
        ..layout
    };
    let bp = gpu.storage("big pool", big.pool_bytes()).unwrap();
    let qb = out(&gpu, 2, 64 * 128);
    let e = ops::paged_attention(
        &gpu, &qb, &rows, &tables, 2, &big, 64, 32, &bp, &bp, None, &qb,
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::Input(InputError::Invalid(_))), "{e}");
    let ob = out(&gpu, 2, 8 * 128);
    let qs = out(&gpu, 2, 8 * 128);
    assert!(
        ops::paged_attention(
            &gpu, &qs, &rows, &tables, 2, &big, 8, 32, &bp, &bp, None, &ob
        )
        .is_ok()
    );
    // Rope: an odd head size, a theta that gives no frequencies.
    assert!(shape(
        Rope::new(&gpu, 5, THETA, RopeLayout::HalfSplit)
            .err()
            .unwrap()
    ));
    let e = Rope::new(&gpu, 8, f64::NAN, RopeLayout::HalfSplit)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Input(InputError::Invalid(_))), "{e}");
    // f16 tensors, where the device has them.
    if let Ok(h) = Tensor::empty(&gpu, 2, heads * d, ActDType::F16) {
        let e = attend(&h, &rows, 2, heads, &layout, 32, &pool, None, &o)
            .err()
            .unwrap();
        assert!(matches!(e, Error::Input(InputError::DType(_))), "{e}");
    }
}
