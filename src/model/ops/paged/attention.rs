//! Paged attention (`paged_attention.wgsl`, `paged_combine.wgsl`): the context split, the
//! tile size and the launcher. Re-exported by `ops::paged`.

use super::{KvLayout, check_common, table_rows};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::model::ops::{WG, dispatch, need_f32};
use crate::tensor::Tensor;

const PAGED: &str = concat!(
    include_str!("../../../../shaders/model/paged_rows.wgsl"),
    include_str!("../../../../shaders/model/paged_attention.wgsl")
);
const COMBINE: &str = concat!(
    include_str!("../../../../shaders/model/paged_rows.wgsl"),
    include_str!("../../../../shaders/model/paged_combine.wgsl")
);

/// Invocations per workgroup of the attention kernel.
const PA_WG: usize = 64;
/// Workgroup memory the attention kernel carves up, in u32 words: 16 KiB (every adapter's
/// minimum) less the row kernels' reduction array that every model module starts with.
const PA_SH: usize = (16 * 1024 - 4 * PA_WG) / 4;
/// Most accumulator pairs per invocation (a group of query heads of at most 4096 components).
const PA_MAX_NA: usize = 32;
/// Fewest keys a context split takes: below that the partials cost more than they save.
const SPLIT_MIN_KEYS: usize = 128;
/// Split keys are a multiple of this (whole tiles of the largest size).
const SPLIT_ALIGN: usize = 64;
/// Query-head work items (rows × heads × splits) that fill a large GPU: a workgroup takes a
/// group of query heads (3-4 in SmolLM2 and Llama 3), so this is about a thousand
/// workgroups, what a large GPU needs to be busy (a quarter of that left a batch of long
/// sequences with a few hundred workgroups, each walking its whole context alone).
const SPLIT_TARGET: usize = 4096;

/// Params of `paged_attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PagedParams {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    group: u32,
    block_size: u32,
    blocks: u32,
    table_stride: u32,
    seqs: u32,
    max_context: u32,
    splits: u32,
    split_keys: u32,
    kc: u32,
    q_stride: u32,
    out_stride: u32,
    scale: f32,
}

/// Params of `paged_combine.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CombineParams {
    rows: u32,
    heads: u32,
    head_dim: u32,
    out_stride: u32,
    seqs: u32,
    max_context: u32,
    table_stride: u32,
    block_size: u32,
    splits: u32,
    split_keys: u32,
    _p0: u32,
    _p1: u32,
}

const K_PAGED: Kernel<PagedParams> = Kernel::new(
    "model_paged_attention",
    &[
        Read("q"),
        Read("rows"),
        Read("tables"),
        Read("k_pool"),
        Read("v_pool"),
        ReadWrite("dst"),
    ],
);
const K_COMBINE: Kernel<CombineParams> = Kernel::new(
    "model_paged_combine",
    &[Read("rows"), Read("part"), ReadWrite("out")],
);

#[cfg(test)]
pub(super) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    vec![
        params_layout!(K_PAGED.name, PAGED, "Params", PagedParams;
            rows, heads, kv_heads, head_dim, group, block_size, blocks, table_stride, seqs,
            max_context, splits, split_keys, kc, q_stride, out_stride, scale),
        params_layout!(K_COMBINE.name, COMBINE, "Params", CombineParams;
            rows, heads, head_dim, out_stride, seqs, max_context, table_stride, block_size,
            splits, split_keys, _p0, _p1),
    ]
}

/// The attention and combine variants: every accumulator count, with and without splits.
pub(super) fn variants() -> Vec<super::Variant> {
    let mut out = vec![(K_COMBINE.name, COMBINE, Vec::new())];
    for na in 1..=PA_MAX_NA {
        for merge in [false, true] {
            out.push((K_PAGED.name, PAGED, paged_vars(na, merge)));
        }
    }
    out
}

fn paged_vars(na: usize, merge: bool) -> Vec<(&'static str, i64)> {
    vec![
        ("WG", PA_WG as i64),
        ("SH", PA_SH as i64),
        ("NA", na as i64),
        ("MERGE", merge as i64),
    ]
}

/// The context split of [`paged_attention`] for `t` rows of `heads` query heads under a plan
/// bound of `max_context` keys: `(splits, keys per split)`. One split unless the rows give
/// fewer than `SPLIT_TARGET` (4096) query-head work items; then enough splits to reach it,
/// each of at least `SPLIT_MIN_KEYS` (128) keys, a multiple of 64.
pub fn paged_split(t: usize, heads: usize, max_context: usize) -> (usize, usize) {
    let max_context = max_context.max(1);
    let most = max_context.div_ceil(SPLIT_MIN_KEYS);
    let splits = SPLIT_TARGET.div_ceil((t * heads).max(1)).clamp(1, most);
    let keys = max_context.div_ceil(splits).next_multiple_of(SPLIT_ALIGN);
    (max_context.div_ceil(keys), keys)
}

/// Bytes of the scratch [`paged_attention`] needs for `t` rows of `heads` heads of
/// `head_dim` under `max_context`: each split's (max, sum, accumulator) per row and head, or
/// 0 when the context is not split (no scratch is read or written then).
pub fn paged_scratch_bytes(t: usize, heads: usize, head_dim: usize, max_context: usize) -> u64 {
    let (splits, _) = paged_split(t, heads, max_context);
    if splits == 1 {
        return 0;
    }
    (t * heads * splits * (head_dim + 2) * 4) as u64
}

/// Keys per staged tile for a group of `group` heads of `d`: the most of 64, 32, ..., 4 whose
/// tile (K words in rows padded to an odd count, V words, group × kc scores) fits beside the
/// group's q and its per-head max and rescale factor.
fn tile_keys(group: usize, d: usize) -> Option<usize> {
    [64, 32, 16, 8, 4]
        .into_iter()
        .find(|&kc| kc * (((d / 2) | 1) + d / 2) + group * d + group * kc + 2 * group <= PA_SH)
}

/// Causal grouped-query attention of `q` (`T × heads·head_dim` f32, RoPE applied, e.g. by
/// [`kv_append`](super::kv_append)) over the paged cache: row `r` at `(seq, pos) = rows[r]`
/// attends with each query head `h` to keys and values `0 ..= pos` of its sequence in kv head
/// `h / (heads / kv_heads)`, scaled by `1/sqrt(head_dim)`, softmax in f32 (online). `out` is
/// `T × heads·head_dim` f32 (row padding zero), another tensor than `q`. Prefill (a pass's
/// prompt rows, whose K and V `kv_append` has just written) and decode (one row per
/// sequence) are the same call.
///
/// `max_context` is the plan's bound on `pos + 1`; it fixes the context split
/// ([`paged_split`]): with more than one split the splits write partials to `scratch`
/// (at least [`paged_scratch_bytes`]; `None`: allocated here) and a second dispatch merges
/// them. Out-of-range metadata never reads out of bounds: a row attends to
/// `min(pos + 1, max_context, table_stride · block_size)` keys (so a `pos` past the plan
/// silently sees only the first `max_context`), a sequence past `tables` gives zeros, and a
/// block id past the pool reads the last block.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    gpu: &Gpu,
    q: &Tensor,
    rows: &wgpu::Buffer,
    tables: &wgpu::Buffer,
    table_stride: usize,
    layout: &KvLayout,
    heads: usize,
    max_context: usize,
    k_pool: &wgpu::Buffer,
    v_pool: &wgpu::Buffer,
    scratch: Option<&wgpu::Buffer>,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    need_f32(q, "attention q")?;
    need_f32(out, "attention output")?;
    let t = q.rows;
    check_common("paged_attention", t, rows, heads, layout, [k_pool, v_pool])?;
    let d = layout.head_dim;
    if q.cols != heads * d || (out.rows, out.cols) != (t, q.cols) {
        return Err(Error::shape(format!(
            "paged_attention: q {} × {} and out {} × {} for {heads} heads of {d}",
            q.rows, q.cols, out.rows, out.cols
        )));
    }
    if max_context == 0 || max_context > u32::MAX as usize / 2 {
        return Err(Error::shape(format!(
            "paged_attention: max_context {max_context}"
        )));
    }
    let seqs = table_rows(tables, table_stride, "paged_attention")?;
    if gpu.caps.workgroup_storage < 16 * 1024 {
        return Err(Error::invalid(format!(
            "paged_attention needs 16 KiB of workgroup memory, the device has {}",
            gpu.caps.workgroup_storage
        )));
    }
    let group = heads / layout.kv_heads;
    let na = (group * d / 2).div_ceil(PA_WG);
    let kc = tile_keys(group, d)
        .filter(|_| na <= PA_MAX_NA)
        .ok_or_else(|| {
            Error::invalid(format!(
                "paged_attention: a group of {group} heads of {d} does not fit in workgroup memory"
            ))
        })?;
    let (splits, split_keys) = paged_split(t, heads, max_context);
    let merge = splits > 1;
    let need = paged_scratch_bytes(t, heads, d, max_context);
    let own;
    let part = match scratch {
        _ if !merge => None,
        Some(s) if s.size() >= need => Some(s),
        Some(s) => {
            return Err(Error::shape(format!(
                "paged_attention: scratch of {} bytes, needs {need}",
                s.size()
            )));
        }
        None => {
            own = gpu.storage("paged attention scratch", need)?;
            Some(&own)
        }
    };
    let params = PagedParams {
        rows: t as u32,
        heads: heads as u32,
        kv_heads: layout.kv_heads as u32,
        head_dim: d as u32,
        group: group as u32,
        block_size: layout.block_size as u32,
        blocks: layout.blocks as u32,
        table_stride: table_stride as u32,
        seqs: seqs as u32,
        max_context: max_context as u32,
        splits: splits as u32,
        split_keys: split_keys as u32,
        kc: kc as u32,
        q_stride: q.stride() as u32,
        out_stride: out.stride() as u32,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let attend = dispatch(
        gpu,
        &K_PAGED,
        PAGED,
        format!(
            "paged attention {t}×{heads}h/{}×{d} split {splits}",
            layout.kv_heads
        ),
        &paged_vars(na, merge),
        &[],
        &params,
        &[
            Some(&q.buffer),
            Some(rows),
            Some(tables),
            Some(k_pool),
            Some(v_pool),
            Some(part.unwrap_or(&out.buffer)),
        ],
        (t * layout.kv_heads * splits) as u32,
    )?;
    let Some(part) = part else {
        return Ok(vec![attend]);
    };
    let combine = dispatch(
        gpu,
        &K_COMBINE,
        COMBINE,
        format!("paged combine {t}×{heads}×{d} of {splits}"),
        &[],
        &[],
        &CombineParams {
            rows: t as u32,
            heads: heads as u32,
            head_dim: d as u32,
            out_stride: out.stride() as u32,
            seqs: seqs as u32,
            max_context: max_context as u32,
            table_stride: table_stride as u32,
            block_size: layout.block_size as u32,
            splits: splits as u32,
            split_keys: split_keys as u32,
            _p0: 0,
            _p1: 0,
        },
        &[Some(rows), Some(part), Some(&out.buffer)],
        (t * out.stride()).div_ceil(WG as usize) as u32,
    )?;
    Ok(vec![attend, combine])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_context_and_fill_small_grids() {
        for t in [1, 3, 64, 200] {
            for heads in [1, 9, 32] {
                for mc in [1, 16, 127, 128, 129, 300, 2048, 32768] {
                    let (s, k) = paged_split(t, heads, mc);
                    assert!(
                        s * k >= mc && (s - 1) * k < mc,
                        "{t} {heads} {mc}: {s} × {k}"
                    );
                    assert!(s == 1 || k >= SPLIT_MIN_KEYS);
                    assert!(s == 1 || t * heads * (s - 1) < SPLIT_TARGET);
                }
            }
        }
        assert_eq!(paged_split(1, 9, 4096).0, 32);
        assert_eq!(paged_split(512, 9, 4096).0, 1);
    }
}
