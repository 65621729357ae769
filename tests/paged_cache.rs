//! The paged KV cache append (`ops::kv_append`: RoPE of Q and K, K and V to f16 pool slots)
//! against the f64 reference of `model::reference` in both RoPE layouts, and a prefill then
//! replayed decode steps through `kv_append` and `ops::paged_attention` together, on every
//! adapter, at the shapes and shuffled block tables of `tests/paged_attention.rs`.

mod common;

use common::paged::*;
use common::{all_gpus, assert_tensor, random, rng};
use sparq::gpu::Dispatch;
use sparq::model::llama::RopeLayout;
use sparq::model::ops::{self, Rope};
use sparq::model::reference;
use sparq::tensor::Tensor;

#[test]
fn kv_append_matches_the_reference() {
    let mut r = rng("kv_append");
    for gpu in all_gpus() {
        for (d, heads, kv) in SHAPES {
            for rl in [RopeLayout::HalfSplit, RopeLayout::Interleaved] {
                let c = Cache::new(&mut r, d, heads, kv, 0);
                let what = format!("kv_append {heads}/{kv}×{d} {rl:?}");
                let rows = all_rows(&mut r);
                let t = rows.len();
                let width = (heads + 2 * kv) * d;
                let x = random(&mut r, t * width);
                let qkv = Tensor::from_f32(&gpu, &x, t, width).unwrap();
                let rb = rows_buffer(&gpu, &rows);
                let tb = gpu.upload("tables", &c.tables).unwrap();
                let kp = gpu.upload("k", &vec![POISON; c.words()]).unwrap();
                let vp = gpu.upload("v", &vec![POISON; c.words()]).unwrap();
                let rope = Rope::new(&gpu, d, THETA, rl).unwrap();
                let q = out(&gpu, t, heads * d);
                let l = &c.layout;
                let dsp = ops::kv_append(
                    &gpu, &qkv, &rb, &tb, c.stride, heads, l, &rope, &q, &kp, &vp,
                )
                .unwrap();
                run(&gpu, &[dsp]);

                let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut wk = vec![f64::NAN; c.words() * 2];
                let mut wv = wk.clone();
                let wq = reference::paged_kv_append(
                    &xf, &rows, &c.tables, c.stride, heads, l, THETA, rl, &mut wk, &mut wv,
                );
                // Tolerances per component: RoPE's bound for q and k, plus for the pools the
                // f16 rounding (WGSL lets the conversion round either way: one f16 ulp,
                // 2^-10 relative, or 2^-24 below the normal range).
                let mut tq = Vec::with_capacity(wq.len());
                let mut tk = vec![0.0; wk.len()];
                let mut tv = vec![0.0; wk.len()];
                for (i, &(s, p)) in rows.iter().enumerate() {
                    let row = &x[i * width..(i + 1) * width];
                    for h in 0..heads {
                        tq.extend(rope_tol(&row[h * d..(h + 1) * d], p as usize, rl));
                    }
                    let block = c.tables[s as usize * c.stride + p as usize / BS] as usize;
                    for h in 0..kv {
                        let at = l.slot(block, h, p as usize % BS);
                        let k = (heads + h) * d;
                        let rt = rope_tol(&row[k..k + d], p as usize, rl);
                        for e in 0..d {
                            tk[at + e] = rt[e] + wk[at + e].abs() * 2f64.powi(-10) + 2f64.powi(-24);
                            tv[at + e] = wv[at + e].abs() * 2f64.powi(-10) + 2f64.powi(-24);
                        }
                    }
                }
                assert_tensor(&gpu, &q, &wq, &tq, 1.0, &format!("{what}: q"));
                for (name, pool, want, tol) in [("k", &kp, &wk, &tk), ("v", &vp, &wv, &tv)] {
                    let (got, raw) = read_pool(&gpu, pool, c.words());
                    for (i, w) in want.iter().enumerate() {
                        if w.is_nan() {
                            // Not a slot of any row: still the poison, so nothing strayed.
                            assert_eq!(raw[i / 2], POISON, "{what}: {name} word {} written", i / 2);
                        } else {
                            let e = (got[i] - w).abs();
                            assert!(
                                e <= tol[i],
                                "{what}: {name}[{i}] = {}, want {w}, error {e:.2e} > {:.2e}",
                                got[i],
                                tol[i]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A whole layer's cache traffic: one prefill pass (kv_append then paged_attention in one
/// submission, attention reading what the append has just written), then two decode steps
/// replaying one recorded plan with the rows and qkv rewritten, all against the f64 chain
/// whose K and V are not rounded (so `attention_tol` with its f16 and RoPE terms).
#[test]
fn prefill_then_decode_through_the_cache() {
    let mut r = rng("paged_cache");
    for gpu in all_gpus() {
        for (d, heads, kv) in SHAPES {
            let rl = RopeLayout::HalfSplit;
            let c = Cache::new(&mut r, d, heads, kv, 2);
            let l = &c.layout;
            let width = (heads + 2 * kv) * d;
            let tb = gpu.upload("tables", &c.tables).unwrap();
            let kp = gpu.upload("k", &vec![POISON; c.words()]).unwrap();
            let vp = gpu.upload("v", &vec![POISON; c.words()]).unwrap();
            let rope = Rope::new(&gpu, d, THETA, rl).unwrap();
            let mut wk = vec![f64::NAN; c.words() * 2];
            let mut wv = wk.clone();
            let mut step =
                |rows: &[(u32, u32)],
                 plan: Option<(&Tensor, &wgpu::Buffer, &[Dispatch], &Tensor)>| {
                    let t = rows.len();
                    let x = random(&mut r, t * width);
                    let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    let wq = reference::paged_kv_append(
                        &xf, rows, &c.tables, c.stride, heads, l, THETA, rl, &mut wk, &mut wv,
                    );
                    let want = reference::paged_attention(
                        &wq, rows, &c.tables, c.stride, l, heads, &wk, &wv,
                    );
                    let tol = attention_tol(&wq, rows, &c, &wk, &wv, true);
                    match plan {
                        None => {
                            let qkv = Tensor::from_f32(&gpu, &x, t, width).unwrap();
                            let rb = rows_buffer(&gpu, rows);
                            let q = out(&gpu, t, heads * d);
                            let o = out(&gpu, t, heads * d);
                            let mut ds = vec![
                                ops::kv_append(
                                    &gpu, &qkv, &rb, &tb, c.stride, heads, l, &rope, &q, &kp, &vp,
                                )
                                .unwrap(),
                            ];
                            ds.extend(
                                ops::paged_attention(
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
                                    None,
                                    &o,
                                )
                                .unwrap(),
                            );
                            run(&gpu, &ds);
                            assert_tensor(
                                &gpu,
                                &o,
                                &want,
                                &tol,
                                1.0,
                                &format!("prefill {heads}/{kv}×{d}"),
                            );
                        }
                        Some((qkv, rb, ds, o)) => {
                            let padded: Vec<f32> = x
                                .chunks(width)
                                .flat_map(|row| {
                                    let mut v = row.to_vec();
                                    v.resize(qkv.stride(), 0.0);
                                    v
                                })
                                .collect();
                            gpu.queue
                                .write_buffer(&qkv.buffer, 0, bytemuck::cast_slice(&padded));
                            let flat: Vec<u32> = rows.iter().flat_map(|&(s, p)| [s, p]).collect();
                            gpu.queue.write_buffer(rb, 0, bytemuck::cast_slice(&flat));
                            o.poison(&gpu);
                            run(&gpu, ds);
                            assert_tensor(
                                &gpu,
                                o,
                                &want,
                                &tol,
                                1.0,
                                &format!("decode {heads}/{kv}×{d} {rows:?}"),
                            );
                        }
                    }
                };
            // (`r` is the step's; the prefill order only needs some shuffle.)
            step(&all_rows(&mut rand::SeedableRng::seed_from_u64(7)), None);
            // The decode plan: one row per sequence, recorded once.
            let n = LENS.len();
            let qkv = Tensor::from_f32(&gpu, &vec![0.0; n * width], n, width).unwrap();
            let rb = gpu.storage("rows", (n * 8) as u64).unwrap();
            let q = out(&gpu, n, heads * d);
            let o = out(&gpu, n, heads * d);
            let mut ds = vec![
                ops::kv_append(
                    &gpu, &qkv, &rb, &tb, c.stride, heads, l, &rope, &q, &kp, &vp,
                )
                .unwrap(),
            ];
            ds.extend(
                ops::paged_attention(
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
                    None,
                    &o,
                )
                .unwrap(),
            );
            for k in 0..2u32 {
                let rows: Vec<(u32, u32)> =
                    (0..n).map(|s| (s as u32, LENS[s] as u32 + k)).collect();
                step(&rows, Some((&qkv, &rb, &ds, &o)));
            }
        }
    }
}
