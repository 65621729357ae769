//! Shared scaffolding of the paged KV cache tests (`tests/paged_attention.rs`,
//! `tests/paged_cache.rs`): a cache of sequences on shuffled blocks, poisoned pools, the
//! per-call buffers and the tolerances.

use half::f16;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sparq::Gpu;
use sparq::gpu::{Dispatch, read_buffer, record_pass};
use sparq::model::llama::RopeLayout;
use sparq::model::ops::KvLayout;
use sparq::tensor::{ActDType, Tensor};

pub const BS: usize = 16;
pub const LENS: [usize; 6] = [1, 15, 16, 17, 100, 300];
pub const MAX_CONTEXT: usize = 320;
/// A poisoned pool word: two f16 NaNs.
pub const POISON: u32 = u32::MAX;
pub const THETA: f64 = 10_000.0;

pub fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, ds, None);
    gpu.submit_and_wait(enc).unwrap();
}

pub fn out(gpu: &Gpu, rows: usize, cols: usize) -> Tensor {
    let t = Tensor::empty(gpu, rows, cols, ActDType::F32).unwrap();
    t.poison(gpu);
    t
}

/// Sequences of `LENS` (plus room for `extra` more tokens each) on one pool: every
/// sequence's blocks drawn from a shuffled pool with spare blocks, table entries past a
/// sequence's blocks pointing at a spare (poisoned) block.
pub struct Cache {
    pub layout: KvLayout,
    pub heads: usize,
    pub stride: usize,
    pub tables: Vec<u32>,
}

impl Cache {
    pub fn new(r: &mut StdRng, d: usize, heads: usize, kv_heads: usize, extra: usize) -> Self {
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

    pub fn words(&self) -> usize {
        (self.layout.pool_bytes() / 4) as usize
    }
}

pub fn rows_buffer(gpu: &Gpu, rows: &[(u32, u32)]) -> wgpu::Buffer {
    let flat: Vec<u32> = rows.iter().flat_map(|&(s, p)| [s, p]).collect();
    gpu.upload("rows", &flat).unwrap()
}

/// A pool read back as f16 pairs widened to f64 (NaN where poisoned), and its raw words.
pub fn read_pool(gpu: &Gpu, b: &wgpu::Buffer, words: usize) -> (Vec<f64>, Vec<u32>) {
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
pub fn rope_tol(x: &[f32], pos: usize, layout: RopeLayout) -> Vec<f64> {
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
pub fn all_rows(r: &mut StdRng) -> Vec<(u32, u32)> {
    let mut rows: Vec<(u32, u32)> = LENS
        .iter()
        .enumerate()
        .flat_map(|(s, &n)| (0..n as u32).map(move |p| (s as u32, p)))
        .collect();
    rows.shuffle(r);
    rows
}

pub const SHAPES: [(usize, usize, usize); 3] = [(64, 9, 3), (40, 4, 4), (6, 8, 1)];

/// Pools of f16-exact random values at every slot of `LENS`, poison elsewhere, as (GPU
/// buffer, the f64 values) for K and V.
pub fn random_pools(gpu: &Gpu, r: &mut StdRng, c: &Cache) -> [(wgpu::Buffer, Vec<f64>); 2] {
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

/// Error bound of each output component of `paged_attention` for f16 K and V, per (row,
/// head), with S = max_j Σ_i |q_i k_ji| / sqrt(d) and n keys. For exact K and V
/// (`rounded` false): a score is off by at most (d + 2)·u·S (u = 2^-24: the scaled q, the dot
/// product), moving the output, a convex combination, by at most 2·max|v| per unit of score
/// error; exp adds (3 + 2|x|) ulp per weight (|x| ≤ 2S), and the sums of n weights and
/// weighted values n·u each, relative to max|v|. The tolerance doubles the total:
/// max|v| · 2^-22 · ((2d + 20)·S + 2n + 48). With K and V rounded to f16 on the way in
/// (`rounded`: one ulp, 2^-10 relative) and q and k carrying RoPE's error (below 2^-12
/// relative up to position 320), a score moves by at most (2^-10 + 2^-11)·S more and the
/// output by twice that times max|v|, plus 2^-10·max|v| from V; doubled, that adds
/// max|v| · (2^-8·S + 2^-9).
pub fn attention_tol(
    q: &[f64],
    rows: &[(u32, u32)],
    c: &Cache,
    k: &[f64],
    v: &[f64],
    rounded: bool,
) -> Vec<f64> {
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
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                sm = sm.max(dot / (d as f64).sqrt());
                vm = v[at..at + d].iter().fold(vm, |m, x| m.max(x.abs()));
            }
            let n = p as f64 + 1.0;
            let mut t = vm * 2f64.powi(-22) * ((2 * d + 20) as f64 * sm + 2.0 * n + 48.0);
            if rounded {
                t += vm * (2f64.powi(-8) * sm + 2f64.powi(-9));
            }
            tol.extend(std::iter::repeat_n(t, d));
        }
    }
    tol
}
