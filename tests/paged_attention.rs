//! The paged KV cache kernels (`ops::kv_append`, `ops::paged_attention`) against the f64
//! references of `model::reference`, on every adapter: head sizes 64, 40 and 6 (an odd
//! number of pairs), query/kv heads 9/3, 4/4 and 8/1, blocks of 16, sequences of 1, 15, 16,
//! 17, 100 and 300 tokens (past the 128-key context splits) on shuffled, non-contiguous
//! block tables, decode (one row per sequence) and prefill; pools and outputs poisoned first.

mod common;

use common::{all_gpus, assert_tensor, random, rng};
use half::f16;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sparq::gpu::{Dispatch, read_buffer, record_pass};
use sparq::model::llama::RopeLayout;
use sparq::model::ops::{self, KvLayout, Rope};
use sparq::model::reference;
use sparq::tensor::{ActDType, Tensor};
use sparq::{Error, Gpu, InputError};

const BS: usize = 16;
const LENS: [usize; 6] = [1, 15, 16, 17, 100, 300];
const MAX_CONTEXT: usize = 320;
/// A poisoned pool word: two f16 NaNs.
const POISON: u32 = u32::MAX;
const THETA: f64 = 10_000.0;

fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, ds, None);
    gpu.submit_and_wait(enc).unwrap();
}

fn out(gpu: &Gpu, rows: usize, cols: usize) -> Tensor {
    let t = Tensor::empty(gpu, rows, cols, ActDType::F32).unwrap();
    t.poison(gpu);
    t
}

/// Sequences of `LENS` (plus room for `extra` more tokens each) on one pool: every
/// sequence's blocks drawn from a shuffled pool with spare blocks, table entries past a
/// sequence's blocks pointing at a spare (poisoned) block.
struct Cache {
    layout: KvLayout,
    heads: usize,
    stride: usize,
    tables: Vec<u32>,
}

impl Cache {
    fn new(r: &mut StdRng, d: usize, heads: usize, kv_heads: usize, extra: usize) -> Self {
        let per: Vec<usize> = LENS.iter().map(|l| (l + extra).div_ceil(BS)).collect();
        let stride = per.iter().max().unwrap() + 2;
        let blocks = per.iter().sum::<usize>() + 5;
        let mut ids: Vec<u32> = (0..blocks as u32).collect();
        ids.shuffle(r);
        let spare = ids[blocks - 1];
        let mut tables = vec![spare; LENS.len() * stride];
        let mut next = 0;
        for (s, &n) in per.iter().enumerate() {
            tables[s * stride..s * stride + n].copy_from_slice(&ids[next..next + n]);
            next += n;
        }
        let layout = KvLayout {
            block_size: BS,
            kv_heads,
            head_dim: d,
            blocks,
        };
        Cache {
            layout,
            heads,
            stride,
            tables,
        }
    }

    fn words(&self) -> usize {
        (self.layout.pool_bytes() / 4) as usize
    }
}

fn rows_buffer(gpu: &Gpu, rows: &[(u32, u32)]) -> wgpu::Buffer {
    let flat: Vec<u32> = rows.iter().flat_map(|&(s, p)| [s, p]).collect();
    gpu.upload("rows", &flat).unwrap()
}

/// A pool read back as f16 pairs widened to f64 (NaN where poisoned), and its raw words.
fn read_pool(gpu: &Gpu, b: &wgpu::Buffer, words: usize) -> (Vec<f64>, Vec<u32>) {
    let raw = read_buffer(gpu, b, (words * 4) as u64).unwrap();
    let w: Vec<u32> = bytemuck::cast_slice(&raw).to_vec();
    let v = w
        .iter()
        .flat_map(|&x| [x as u16, (x >> 16) as u16])
        .map(|h| f16::from_bits(h).to_f64())
        .collect();
    (v, w)
}

/// Error bound of one RoPE component, as in `tests/decoder_ops.rs`: (|x_a| + |x_b|) ·
/// (2^-22 · angle + 2^-18) for the f32 angle, range reduction, sin/cos and products.
fn rope_tol(x: &[f32], pos: usize, layout: RopeLayout) -> Vec<f64> {
    let (d, half) = (x.len(), x.len() / 2);
    let mut tol = vec![0.0; d];
    for i in 0..half {
        let (a, b) = match layout {
            RopeLayout::HalfSplit => (i, i + half),
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        };
        let angle = pos as f64 * THETA.powf(-2.0 * i as f64 / d as f64);
        let t = (x[a].abs() + x[b].abs()) as f64 * (angle * 2f64.powi(-22) + 2f64.powi(-18));
        tol[a] = t;
        tol[b] = t;
    }
    tol
}

/// Every (sequence, position) of the cache in shuffled order: one prefill pass of all of it.
fn all_rows(r: &mut StdRng) -> Vec<(u32, u32)> {
    let mut rows: Vec<(u32, u32)> = LENS
        .iter()
        .enumerate()
        .flat_map(|(s, &n)| (0..n as u32).map(move |p| (s as u32, p)))
        .collect();
    rows.shuffle(r);
    rows
}

const SHAPES: [(usize, usize, usize); 3] = [(64, 9, 3), (40, 4, 4), (6, 8, 1)];

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

/// Pools of f16-exact random values at every slot of `LENS`, poison elsewhere, as (GPU
/// buffer, the f64 values) for K and V.
fn random_pools(gpu: &Gpu, r: &mut StdRng, c: &Cache) -> [(wgpu::Buffer, Vec<f64>); 2] {
    [0, 1].map(|_| {
        let mut words = vec![POISON; c.words()];
        let half = c.layout.head_dim / 2;
        for (s, &n) in LENS.iter().enumerate() {
            for p in 0..n {
                let block = c.tables[s * c.stride + p / BS] as usize;
                for h in 0..c.layout.kv_heads {
                    let at = c.layout.slot(block, h, p % BS) / 2;
                    for w in &mut words[at..at + half] {
                        let a = f16::from_f32(r.random_range(-1.0f32..1.0)).to_bits() as u32;
                        let b = f16::from_f32(r.random_range(-1.0f32..1.0)).to_bits() as u32;
                        *w = a | (b << 16);
                    }
                }
            }
        }
        let vals = words
            .iter()
            .flat_map(|&x| [x as u16, (x >> 16) as u16])
            .map(|h| f16::from_bits(h).to_f64())
            .collect();
        (gpu.upload("pool", &words).unwrap(), vals)
    })
}

/// Error bound of each output component of `paged_attention` for exact (f16) K and V, per
/// (row, head): with S = max_j Σ_i |q_i k_ji| / sqrt(d) and n keys, a score is off by at
/// most (d + 2)·u·S (u = 2^-24: the scaled q, the dot product), moving the output, a convex
/// combination, by at most 2·max|v| per unit of score error; exp adds (3 + 2|x|) ulp per
/// weight (|x| ≤ 2S), and the sums of n weights and weighted values n·u each, relative to
/// max|v|. The tolerance doubles the total: max|v| · 2^-22 · ((2d + 20)·S + 2n + 48).
fn attention_tol(q: &[f32], rows: &[(u32, u32)], c: &Cache, k: &[f64], v: &[f64]) -> Vec<f64> {
    let (d, heads) = (c.layout.head_dim, c.heads);
    let group = heads / c.layout.kv_heads;
    let mut tol = Vec::with_capacity(q.len());
    for (i, &(s, p)) in rows.iter().enumerate() {
        for h in 0..heads {
            let qh = &q[(i * heads + h) * d..(i * heads + h + 1) * d];
            let (mut sm, mut vm) = (0.0f64, 0.0f64);
            for j in 0..=p as usize {
                let block = c.tables[s as usize * c.stride + j / BS] as usize;
                let at = c.layout.slot(block, h / group, j % BS);
                let dot: f64 = qh
                    .iter()
                    .zip(&k[at..at + d])
                    .map(|(a, b)| (*a as f64 * b).abs())
                    .sum();
                sm = sm.max(dot / (d as f64).sqrt());
                vm = v[at..at + d].iter().fold(vm, |m, x| m.max(x.abs()));
            }
            let n = p as f64 + 1.0;
            let t = vm * 2f64.powi(-22) * ((2 * d + 20) as f64 * sm + 2.0 * n + 48.0);
            tol.extend(std::iter::repeat_n(t, d));
        }
    }
    tol
}

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
                let tol = attention_tol(&x, &rows, &c, &kf, &vf);
                assert_tensor(&gpu, &o, &want, &tol, 1.0, &what);
            }
        }
    }
}

/// A whole layer's cache traffic: one prefill pass (kv_append then paged_attention in one
/// submission, attention reading what the append has just written), then two decode steps
/// replaying one recorded plan with the rows rewritten, all against the f64 chain whose K and
/// V are not rounded. Extra error bound over `attention_tol`: K and V are f16 (one ulp, 2^-10
/// relative) and q and k carry RoPE's error (below 2^-12 relative up to position 320), so a
/// score moves by at most (2^-10 + 2^-11)·S and the output by twice that times max|v|, plus
/// 2^-10·max|v| from V; doubled: max|v| · (2^-8·S + 2^-9).
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
                    let q32: Vec<f32> = wq.iter().map(|&v| v as f32).collect();
                    let mut tol = attention_tol(&q32, rows, &c, &wk, &wv);
                    for (i, &(s, p)) in rows.iter().enumerate() {
                        for h in 0..heads {
                            let qh = &wq[(i * heads + h) * d..(i * heads + h + 1) * d];
                            let (mut sm, mut vm) = (0.0f64, 0.0f64);
                            for j in 0..=p as usize {
                                let block = c.tables[s as usize * c.stride + j / BS] as usize;
                                let at = l.slot(block, h / (heads / kv), j % BS);
                                let dot: f64 = qh
                                    .iter()
                                    .zip(&wk[at..at + d])
                                    .map(|(a, b)| (a * b).abs())
                                    .sum();
                                sm = sm.max(dot / (d as f64).sqrt());
                                vm = wv[at..at + d].iter().fold(vm, |m, x| m.max(x.abs()));
                            }
                            let extra = vm * (2f64.powi(-8) * sm + 2f64.powi(-9));
                            tol[(i * heads + h) * d..(i * heads + h + 1) * d]
                                .iter_mut()
                                .for_each(|t| *t += extra);
                        }
                    }
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
        let mut tol = attention_tol(&x, &seen, &c, &kf, &vf);
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
