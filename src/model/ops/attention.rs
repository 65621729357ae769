//! Multi-head self-attention (`shaders/model/attention.wgsl`): how the kernel lays queries over
//! invocations ([`AttentionLayout`]: keys split across invocations for small grids, several
//! queries per invocation for large ones) and its launcher. Re-exported by `ops`.

use super::{MAX_HEAD_DIM, MAX_SEQ, dispatch, need_f32, token_rows};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

const ATTENTION: &str = include_str!("../../../shaders/model/attention.wgsl");

/// Invocations per workgroup of the attention kernel (it covers 64 · qpi / split queries).
const ATT_WG: u32 = 64;
/// Keys an attention invocation scores together (one softmax rescale per chunk).
const ATT_CHUNK: usize = 4;
/// Invocations that may share one attention query.
const ATT_SPLITS: [usize; 4] = [1, 2, 4, 8];
/// Queries one attention invocation may take.
const ATT_QPIS: [usize; 3] = [1, 2, 4];
/// Attention grids smaller than this split each query's keys across invocations.
const ATT_SMALL_GRID: usize = 256;

/// Params of `attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AttentionParams {
    pub(crate) rows: u32,
    pub(crate) seq: u32,
    pub(crate) heads: u32,
    pub(crate) head_dim: u32,
    pub(crate) hidden: u32,
    pub(crate) qkv_stride: u32,
    pub(crate) out_stride: u32,
    pub(crate) scale: f32,
}

const K_ATTENTION: Kernel<AttentionParams> = Kernel::new(
    "model_attention",
    &[Read("qkv"), Read("tokens"), ReadWrite("out")],
);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(K_ATTENTION.name, ATTENTION, "Params", AttentionParams;
        rows, seq, heads, head_dim, hidden, qkv_stride, out_stride, scale)
}

/// Self-attention of `batch` sequences of `seq` tokens: `qkv` is `batch·seq × 3H` (Q, K, V
/// blocks), `out` is `batch·seq × H`; keys whose token mask is 0 are ignored.
///
/// The kernel's [`AttentionLayout`] comes from [`AttentionLayout::for_shape`]: each query's
/// keys are split across invocations when the plain grid is small, and each invocation takes
/// two queries when it is large. `SPARQ_ATTENTION_SPLIT=1|2|4|8` and
/// `SPARQ_ATTENTION_QPI=1|2|4` override either choice, for comparing layouts on a GPU; a value
/// that is not one of those, or a QPI over [`AttentionLayout::max_qpi`] for the head size, is
/// ignored. Use [`attention_with`] to pick the layout in code.
pub fn attention(
    gpu: &Gpu,
    qkv: &Tensor,
    tokens: &wgpu::Buffer,
    seq: usize,
    heads: usize,
    out: &Tensor,
) -> Result<Dispatch> {
    let env = |name: &str| -> Option<usize> { std::env::var(name).ok()?.trim().parse().ok() };
    let d = out.cols.checked_div(heads).unwrap_or(0);
    let mut layout =
        AttentionLayout::for_shape(qkv.rows.checked_div(seq).unwrap_or(0), seq, heads, d);
    if let Some(split) = env("SPARQ_ATTENTION_SPLIT").filter(|s| ATT_SPLITS.contains(s)) {
        layout.split = split;
    }
    if let Some(qpi) = env("SPARQ_ATTENTION_QPI")
        .filter(|q| ATT_QPIS.contains(q) && *q <= AttentionLayout::max_qpi(d))
    {
        layout.qpi = qpi;
    }
    attention_with(gpu, qkv, tokens, seq, heads, out, layout)
}

/// How the attention kernel spreads queries over the invocations of a workgroup of 64:
/// `split` invocations share each query (each scoring an interleaved `split`-th of its keys,
/// their partial softmaxes merged in the workgroup) and each invocation takes `qpi` queries
/// (which share every key and value it reads from workgroup memory). A workgroup covers
/// `64 · qpi / split` queries of one (sequence, head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionLayout {
    /// Invocations per query: 1, 2, 4 or 8.
    pub split: usize,
    /// Queries per invocation: 1, 2 or 4, at most [`AttentionLayout::max_qpi`].
    pub qpi: usize,
}

impl AttentionLayout {
    /// The layout [`attention`] uses for `seqs` sequences of `seq` tokens with `heads` heads
    /// of `head_dim`: the split of [`attention_split`]; then, where that is 1 and the grid has
    /// at least `4 × ATT_SMALL_GRID` (1024) workgroups, two queries per invocation if the
    /// head size allows it, else one. Two queries halve the workgroup-memory reads per query,
    /// which bound the kernel, but also halve the grid, so they wait for a grid that stays
    /// large.
    pub fn for_shape(seqs: usize, seq: usize, heads: usize, head_dim: usize) -> Self {
        let split = attention_split(seqs, seq, heads);
        let grid = seqs * heads * seq.div_ceil(ATT_WG as usize);
        let qpi = if split == 1 && grid >= 4 * ATT_SMALL_GRID && Self::max_qpi(head_dim) >= 2 {
            2
        } else {
            1
        };
        AttentionLayout { split, qpi }
    }

    /// The most queries an invocation may take for heads of `head_dim`: each query keeps its q
    /// and output accumulator in registers (`2 · ⌈head_dim / 4⌉` vec4s), and their total is
    /// held to what one 128-wide head needs, so 4 up to 32, 2 up to 64, else 1.
    pub fn max_qpi(head_dim: usize) -> usize {
        let dp4 = head_dim.div_ceil(4).max(1);
        ATT_QPIS
            .into_iter()
            .rev()
            .find(|&q| q * dp4 <= MAX_HEAD_DIM / 4)
            .unwrap_or(1)
    }
}

/// The key split [`AttentionLayout::for_shape`] uses for `seqs` sequences of `seq` tokens
/// with `heads` heads: 1 (one invocation per query) unless that grid has fewer than
/// `ATT_SMALL_GRID` (256) workgroups, then the smallest of 2, 4, 8 that reaches it (or the
/// largest allowed), while every invocation still gets two chunks of keys per query.
pub fn attention_split(seqs: usize, seq: usize, heads: usize) -> usize {
    let grid = |s: usize| seqs * heads * seq.div_ceil(ATT_WG as usize / s);
    let most = ATT_SPLITS
        .into_iter()
        .rev()
        .find(|&s| s * 2 * ATT_CHUNK <= seq)
        .unwrap_or(1);
    ATT_SPLITS
        .into_iter()
        .take_while(|&s| s <= most)
        .find(|&s| grid(s) >= ATT_SMALL_GRID)
        .unwrap_or(most)
}

/// [`attention`] with the given `layout`; a split or QPI it does not allow (see
/// [`AttentionLayout`]) is an [`crate::InputError::Invalid`].
pub fn attention_with(
    gpu: &Gpu,
    qkv: &Tensor,
    tokens: &wgpu::Buffer,
    seq: usize,
    heads: usize,
    out: &Tensor,
    layout: AttentionLayout,
) -> Result<Dispatch> {
    let AttentionLayout { split, qpi } = layout;
    need_f32(qkv, "qkv")?;
    need_f32(out, "attention output")?;
    if !ATT_SPLITS.contains(&split) {
        return Err(Error::invalid(format!(
            "attention split {split} is not one of {ATT_SPLITS:?}"
        )));
    }
    let hidden = out.cols;
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::shape(format!(
            "{hidden} columns do not split into {heads} heads"
        )));
    }
    let d = hidden / heads;
    if d > MAX_HEAD_DIM {
        return Err(Error::invalid(format!(
            "head size {d} is over {MAX_HEAD_DIM}"
        )));
    }
    if !ATT_QPIS.contains(&qpi) || qpi > AttentionLayout::max_qpi(d) {
        return Err(Error::invalid(format!(
            "attention QPI {qpi} is not one of {ATT_QPIS:?} up to {} for head size {d}",
            AttentionLayout::max_qpi(d)
        )));
    }
    if seq == 0 || seq > MAX_SEQ || !qkv.rows.is_multiple_of(seq) {
        return Err(Error::shape(format!(
            "{} rows are not whole sequences of {seq} (at most {MAX_SEQ})",
            qkv.rows
        )));
    }
    if qkv.cols != 3 * hidden || qkv.rows != out.rows {
        return Err(Error::shape(format!(
            "qkv is {} × {}, expected {} × {}",
            qkv.rows,
            qkv.cols,
            out.rows,
            3 * hidden
        )));
    }
    token_rows(tokens, qkv.rows, "attention")?;
    let params = AttentionParams {
        rows: qkv.rows as u32,
        seq: seq as u32,
        heads: heads as u32,
        head_dim: d as u32,
        hidden: hidden as u32,
        qkv_stride: qkv.stride() as u32,
        out_stride: out.stride() as u32,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let wg = ATT_WG as usize;
    let seqs = qkv.rows / seq;
    dispatch(
        gpu,
        &K_ATTENTION,
        ATTENTION,
        format!(
            "attention {}×{heads}h×{d} split {split} qpi {qpi}",
            qkv.rows
        ),
        &attention_vars(d, layout, gpu.caps.workgroup_storage),
        &[],
        &params,
        &[Some(&qkv.buffer), Some(tokens), Some(&out.buffer)],
        (seqs * heads * seq.div_ceil(wg / split * qpi)) as u32,
    )
}

/// The attention kernel's name and template, for the offline variant listing.
pub(super) fn kernel_source() -> (&'static str, &'static str) {
    (K_ATTENTION.name, ATTENTION)
}
/// Template variables of the attention kernel for heads of `d` with `layout` on
/// `workgroup_storage` bytes of workgroup memory.
fn attention_vars(
    d: usize,
    layout: AttentionLayout,
    workgroup_storage: u32,
) -> Vec<(&'static str, i64)> {
    // Keys staged per step: as many whole chunks as 16 KiB of workgroup memory holds (K and
    // V, plus 256 bytes of mask flags). The split's merge reuses the K/V array and needs WG
    // vec4s in each half, which the budget always gives (128-wide heads stage 12 × 32).
    let wg = ATT_WG as usize;
    let dp4 = d.div_ceil(4);
    let budget = (workgroup_storage as usize).min(16 * 1024) - 256;
    let fit = budget / (dp4 * 32) / ATT_CHUNK * ATT_CHUNK;
    let kc = fit.clamp(wg.div_ceil(dp4).next_multiple_of(ATT_CHUNK), 64);
    let kcdp4 = kc * dp4;
    vec![
        ("WG", ATT_WG as i64),
        ("DP4", dp4 as i64),
        ("KC", kc as i64),
        ("KCDP4", kcdp4 as i64),
        ("KVDP4", 2 * kcdp4 as i64),
        ("CH", ATT_CHUNK as i64),
        ("SPLIT", layout.split as i64),
        ("QPI", layout.qpi as i64),
        ("MERGE", (layout.split > 1) as i64),
    ]
}

/// The template variables of every attention variant: each head size in vec4s up to
/// [`MAX_HEAD_DIM`], every split, every QPI the head size allows, on 16 and 32 KiB.
pub(super) fn variant_vars() -> Vec<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for d in (4..=MAX_HEAD_DIM).step_by(4) {
        for split in ATT_SPLITS {
            for qpi in ATT_QPIS
                .into_iter()
                .filter(|&q| q <= AttentionLayout::max_qpi(d))
            {
                for storage in [16 * 1024, 32 * 1024] {
                    out.push(attention_vars(d, AttentionLayout { split, qpi }, storage));
                }
            }
        }
    }
    out
}
