//! f64 references of the paged KV cache kernels (`model::ops::kv_append`,
//! `model::ops::paged_attention`): the same addressing over host pools of f64 values (indexed
//! as [`KvLayout::slot`]), RoPE from `llama::reference::rope` and attention as
//! `llama::reference` computes it. Rows are `(seq, pos)`; `tables` holds `table_stride`
//! block ids per sequence.

use crate::model::llama::reference::rope;
use crate::model::ops::{KvLayout, RopeLayout};

/// RoPE of the Q and K heads of each row of `qkv` (`T × (heads + 2·kv_heads)·head_dim`,
/// dense, `[Q | K | V]`) to its position; returns the rotated Q (`T × heads·head_dim`) and
/// writes rotated K and plain V into `k_pool` and `v_pool` at each row's slot.
#[allow(clippy::too_many_arguments)]
pub fn paged_kv_append(
    qkv: &[f64],
    rows: &[(u32, u32)],
    tables: &[u32],
    table_stride: usize,
    heads: usize,
    layout: &KvLayout,
    theta: f64,
    rope_layout: RopeLayout,
    k_pool: &mut [f64],
    v_pool: &mut [f64],
) -> Vec<f64> {
    let (d, kv) = (layout.head_dim, layout.kv_heads);
    let width = (heads + 2 * kv) * d;
    let mut q_out = Vec::with_capacity(rows.len() * heads * d);
    for (r, &(seq, pos)) in rows.iter().enumerate() {
        let mut row = qkv[r * width..(r + 1) * width].to_vec();
        for head in row[..(heads + kv) * d].chunks_mut(d) {
            rope(head, pos as usize, theta, rope_layout);
        }
        q_out.extend_from_slice(&row[..heads * d]);
        let (seq, pos) = (seq as usize, pos as usize);
        let block = tables[seq * table_stride + pos / layout.block_size] as usize;
        for h in 0..kv {
            let at = layout.slot(block, h, pos % layout.block_size);
            let k = (heads + h) * d;
            let v = (heads + kv + h) * d;
            k_pool[at..at + d].copy_from_slice(&row[k..k + d]);
            v_pool[at..at + d].copy_from_slice(&row[v..v + d]);
        }
    }
    q_out
}

/// Causal grouped-query attention of each row's `heads` query heads (`q`, `T ×
/// heads·head_dim`, RoPE applied) over keys and values `0 ..= pos` of its sequence in the
/// pools: head `h` reads kv head `h / (heads / kv_heads)`, scores scaled by `1/sqrt(d)`.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    q: &[f64],
    rows: &[(u32, u32)],
    tables: &[u32],
    table_stride: usize,
    layout: &KvLayout,
    heads: usize,
    k_pool: &[f64],
    v_pool: &[f64],
) -> Vec<f64> {
    let d = layout.head_dim;
    let group = heads / layout.kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; rows.len() * heads * d];
    for (r, &(seq, pos)) in rows.iter().enumerate() {
        let slot = |j: usize, h: usize| {
            let block = tables[seq as usize * table_stride + j / layout.block_size] as usize;
            layout.slot(block, h / group, j % layout.block_size)
        };
        for h in 0..heads {
            let qh = &q[(r * heads + h) * d..(r * heads + h + 1) * d];
            let scores: Vec<f64> = (0..=pos as usize)
                .map(|j| {
                    let k = &k_pool[slot(j, h)..slot(j, h) + d];
                    qh.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let oh = &mut out[(r * heads + h) * d..(r * heads + h + 1) * d];
            for (j, p) in e.iter().enumerate() {
                let v = &v_pool[slot(j, h)..slot(j, h) + d];
                oh.iter_mut().zip(v).for_each(|(o, v)| *o += p / sum * v);
            }
        }
    }
    out
}
