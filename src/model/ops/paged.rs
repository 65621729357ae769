//! The decoder's paged KV cache (vLLM style): [`kv_append`] rotates a pass's Q and K rows
//! and writes K and V into per-layer block pools at each token's slot, [`paged_attention`]
//! is causal grouped-query attention of token rows over their sequences' blocks, split over
//! the context for long ones (flash-decoding, merged by a combine kernel). Re-exported by
//! `ops`.
//!
//! Per-call metadata lives in storage buffers that the caller rewrites before each submit, so
//! one recorded plan serves every step: `rows` holds two `u32` per token row, `(seq, pos)`;
//! `tables` holds `table_stride` block ids per sequence (sequence `s` at
//! `tables[s · table_stride ..]`). Position `p` of a sequence lives in block
//! `table[p / block_size]` at offset `p % block_size`. A sequence index is valid when the
//! tables buffer holds its whole table row.

use super::rope::{Rope, RopeLayout};
use super::{WG, dispatch, need_f32};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

mod attention;

pub use attention::{paged_attention, paged_scratch_bytes, paged_split};

const KV_APPEND: &str = concat!(
    include_str!("../../../shaders/model/rope_turn.wgsl"),
    include_str!("../../../shaders/model/paged_rows.wgsl"),
    include_str!("../../../shaders/model/kv_append.wgsl")
);

/// How one layer's K and V pools are laid out: each is `blocks × kv_heads × block_size ×
/// head_dim` f16 values, stored as packed pairs in `u32` (so any adapter can hold them; no
/// shader-f16 feature is needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Tokens per block.
    pub block_size: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Components per head (even).
    pub head_dim: usize,
    /// Blocks in the pool.
    pub blocks: usize,
}

impl KvLayout {
    /// Bytes of one pool (K or V).
    pub fn pool_bytes(&self) -> u64 {
        (self.blocks * self.kv_heads * self.block_size * self.head_dim * 2) as u64
    }

    /// The f16 element index of component 0 of `kv_head` at `offset` in `block`.
    pub fn slot(&self, block: usize, kv_head: usize, offset: usize) -> usize {
        ((block * self.kv_heads + kv_head) * self.block_size + offset) * self.head_dim
    }

    /// Refuses an empty pool or an odd head size.
    pub fn validate(&self) -> Result<()> {
        if self.block_size == 0 || self.kv_heads == 0 || self.blocks == 0 {
            return Err(Error::shape(format!(
                "KV layout with nothing in it: {self:?}"
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(Error::shape(format!(
                "KV head size must be even, is {}",
                self.head_dim
            )));
        }
        if self.pool_bytes() > u32::MAX as u64 {
            return Err(Error::shape(format!(
                "KV pool of {} bytes is past 32-bit addressing",
                self.pool_bytes()
            )));
        }
        Ok(())
    }
}

/// Params of `kv_append.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct KvAppendParams {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    half: u32,
    qkv_stride: u32,
    q_stride: u32,
    words: u32,
    block_size: u32,
    blocks: u32,
    table_stride: u32,
    seqs: u32,
    _p0: u32,
}

const K_KV_APPEND: Kernel<KvAppendParams> = Kernel::new(
    "model_kv_append",
    &[
        Read("qkv"),
        Read("rows"),
        Read("tables"),
        Read("inv_freq"),
        ReadWrite("q"),
        ReadWrite("k_pool"),
        ReadWrite("v_pool"),
    ],
);

#[cfg(test)]
pub(super) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    let mut v = vec![
        params_layout!(K_KV_APPEND.name, KV_APPEND, "Params", KvAppendParams;
        rows, heads, kv_heads, half, qkv_stride, q_stride, words, block_size, blocks,
        table_stride, seqs, _p0),
    ];
    v.extend(attention::params_layouts());
    v
}

/// A kernel variant: kernel name, template, variables.
type Variant = (&'static str, &'static str, Vec<(&'static str, i64)>);

/// Every paged kernel variant, for the offline listing.
pub(super) fn variants() -> Vec<Variant> {
    let mut out = vec![(K_KV_APPEND.name, KV_APPEND, Vec::new())];
    out.extend(attention::variants());
    out
}

/// Sequences `tables` holds whole rows of `table_stride` ids for (at least one).
fn table_rows(tables: &wgpu::Buffer, table_stride: usize, what: &str) -> Result<usize> {
    let seqs = (tables.size() / 4) as usize / table_stride.max(1);
    if table_stride == 0 || seqs == 0 {
        return Err(Error::shape(format!(
            "{what}: a tables buffer of {} bytes holds no table of {table_stride} blocks",
            tables.size()
        )));
    }
    Ok(seqs)
}

/// Shape checks common to both kernels: the layout, the heads, the row metadata and pools.
fn check_common(
    what: &str,
    t: usize,
    rows: &wgpu::Buffer,
    heads: usize,
    layout: &KvLayout,
    pools: [&wgpu::Buffer; 2],
) -> Result<()> {
    layout.validate()?;
    if heads == 0 || !heads.is_multiple_of(layout.kv_heads) {
        return Err(Error::shape(format!(
            "{what}: {heads} query heads do not group over {} kv heads",
            layout.kv_heads
        )));
    }
    if t == 0 {
        return Err(Error::shape(format!("{what}: no token rows")));
    }
    if rows.size() < (t * 8) as u64 {
        return Err(Error::shape(format!(
            "{what}: rows buffer holds {} rows, needs {t}",
            rows.size() / 8
        )));
    }
    for p in pools {
        if p.size() < layout.pool_bytes() {
            return Err(Error::shape(format!(
                "{what}: a pool of {} bytes for a layout of {}",
                p.size(),
                layout.pool_bytes()
            )));
        }
    }
    Ok(())
}

/// Appends one pass's token rows to the cache. `qkv` is `T × (heads + 2·kv_heads)·head_dim`
/// f32, `[Q | K | V]` (as the fused projection writes it, bias included); for each row `r`
/// at `(seq, pos) = rows[r]`: `q_out[r] = RoPE(Q)` (f32, `T × heads·head_dim`, not `qkv`'s
/// buffer), and `RoPE(K)` and `V` go to the pools at the row's slot, rounded to f16. RoPE is
/// `rope`'s (the same frequencies and rotation), turning to `pos`. A row whose sequence is past `tables`, whose position is past its table
/// row (`table_stride · block_size`), or whose block id is past the pool writes no K or V.
#[allow(clippy::too_many_arguments)]
pub fn kv_append(
    gpu: &Gpu,
    qkv: &Tensor,
    rows: &wgpu::Buffer,
    tables: &wgpu::Buffer,
    table_stride: usize,
    heads: usize,
    layout: &KvLayout,
    rope: &Rope,
    q_out: &Tensor,
    k_pool: &wgpu::Buffer,
    v_pool: &wgpu::Buffer,
) -> Result<Dispatch> {
    need_f32(qkv, "qkv")?;
    need_f32(q_out, "rotated q")?;
    let t = qkv.rows;
    check_common("kv_append", t, rows, heads, layout, [k_pool, v_pool])?;
    let d = layout.head_dim;
    if rope.head_dim() != d {
        return Err(Error::shape(format!(
            "kv_append: RoPE over heads of {} for a cache of {d}",
            rope.head_dim()
        )));
    }
    let kv = layout.kv_heads;
    if qkv.cols != (heads + 2 * kv) * d || (q_out.rows, q_out.cols) != (t, heads * d) {
        return Err(Error::shape(format!(
            "kv_append: qkv {} × {} and q {} × {} for {t} rows of {heads} + 2 × {kv} heads of {d}",
            qkv.rows, qkv.cols, q_out.rows, q_out.cols
        )));
    }
    let seqs = table_rows(tables, table_stride, "kv_append")?;
    let words = q_out.stride() / 2 + kv * d;
    let params = KvAppendParams {
        rows: t as u32,
        heads: heads as u32,
        kv_heads: kv as u32,
        half: (d / 2) as u32,
        qkv_stride: qkv.stride() as u32,
        q_stride: q_out.stride() as u32,
        words: words as u32,
        block_size: layout.block_size as u32,
        blocks: layout.blocks as u32,
        table_stride: table_stride as u32,
        seqs: seqs as u32,
        _p0: 0,
    };
    dispatch(
        gpu,
        &K_KV_APPEND,
        KV_APPEND,
        format!("kv_append {t}×({heads}+2×{kv})×{d}"),
        &[],
        &[(
            "INTERLEAVED",
            (rope.layout() == RopeLayout::Interleaved) as u8 as f64,
        )],
        &params,
        &[
            Some(&qkv.buffer),
            Some(rows),
            Some(tables),
            Some(&rope.inv_freq),
            Some(&q_out.buffer),
            Some(k_pool),
            Some(v_pool),
        ],
        (t * words).div_ceil(WG as usize) as u32,
    )
}
