//! The model kernels other than the linear layers: embedding lookup, LayerNorm / RMSNorm
//! (with a fused residual add), activations and residual add, softmax, multi-head
//! self-attention with a padding mask, and pooling with L2 normalisation.
//!
//! Each function validates shapes and returns a [`Dispatch`] with its uniform and bind group
//! already made, so a forward pass plans once and replays its dispatches on every call.
//! Activations are f32 [`Tensor`]s (rows padded to a multiple of four, padding zero); token
//! rows are `vec4<u32>` (id, position, type, mask).

use crate::error::{Error, Result};
use crate::gpu::wgsl::expand;
use crate::gpu::{Dispatch, Gpu, PipelineKey};
use crate::model::config::{Activation, Pooling};
use crate::tensor::{ActDType, Tensor};
use wgpu::util::DeviceExt;

/// Largest head size the attention kernel takes (q and the output live in registers).
pub const MAX_HEAD_DIM: usize = 128;
/// Longest sequence the model runtime pads to (BERT's position embeddings end at 512).
pub const MAX_SEQ: usize = 512;

const REDUCE: &str = include_str!("../../shaders/model_reduce.wgsl");
const EMBED: &str = include_str!("../../shaders/embed.wgsl");
const NORM: &str = include_str!("../../shaders/norm.wgsl");
const ELEMENTWISE: &str = concat!(
    include_str!("../../shaders/activation.wgsl"),
    include_str!("../../shaders/elementwise.wgsl")
);
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const POOL: &str = include_str!("../../shaders/pool.wgsl");

/// Invocations per workgroup of the row kernels.
const WG: u32 = 128;
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

/// One kernel of the family: its name, source, and read-only storage inputs (binding 0 is the
/// uniform, then the inputs, then the one output).
struct Kernel {
    name: &'static str,
    src: &'static str,
    inputs: u32,
}

const K_EMBED: Kernel = Kernel {
    name: "model_embed",
    src: EMBED,
    inputs: 4,
};
const K_NORM: Kernel = Kernel {
    name: "model_norm",
    src: NORM,
    inputs: 4,
};
const K_ELEMENTWISE: Kernel = Kernel {
    name: "model_elementwise",
    src: ELEMENTWISE,
    inputs: 2,
};
const K_SOFTMAX: Kernel = Kernel {
    name: "model_softmax",
    src: SOFTMAX,
    inputs: 1,
};
const K_ATTENTION: Kernel = Kernel {
    name: "model_attention",
    src: ATTENTION,
    inputs: 2,
};
const K_POOL: Kernel = Kernel {
    name: "model_pool",
    src: POOL,
    inputs: 2,
};

fn layout(gpu: &Gpu, k: &Kernel) -> std::sync::Arc<crate::gpu::Layout> {
    gpu.layouts.get_or_create(&gpu.device, k.name, || {
        crate::gpu::uniform_and_storage(k.inputs, 1)
    })
}

#[allow(clippy::too_many_arguments)]
/// Compiles (once) and binds kernel `k`: `inputs` in order (None binds the dummy buffer).
fn dispatch(
    gpu: &Gpu,
    k: &Kernel,
    label: String,
    vars: &[(&'static str, i64)],
    constants: &[(&str, f64)],
    params: &[u8],
    inputs: &[Option<&wgpu::Buffer>],
    output: &wgpu::Buffer,
    workgroups: u32,
) -> Result<Dispatch> {
    debug_assert_eq!(inputs.len(), k.inputs as usize);
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(n, _)| *n == "WG") {
        vars.push(("WG", WG as i64));
    }
    let name: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
    let key = PipelineKey::new(format!("{}{name}", k.name), constants).trusted();
    let lay = layout(gpu, k);
    let pipeline = gpu
        .pipelines
        .get_or_create(&gpu.device, &key, Some(&lay.pipeline), || {
            // The templates are part of the crate: a failure here is a bug in sparq.
            expand(&format!("{REDUCE}\n{}", k.src), &vars)
                .unwrap_or_else(|e| panic!("bad WGSL template {}: {e}", k.name))
        })?;
    let uniform = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(k.name),
            contents: params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: uniform.as_entire_binding(),
    }];
    for (i, b) in inputs.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: 1 + i as u32,
            resource: b.unwrap_or(gpu.dummy()).as_entire_binding(),
        });
    }
    entries.push(wgpu::BindGroupEntry {
        binding: 1 + k.inputs,
        resource: output.as_entire_binding(),
    });
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(k.name),
        layout: &lay.bind_group,
        entries: &entries,
    });
    let grid = gpu.grid(workgroups);
    if grid.1 > gpu.caps.max_workgroups_per_dim {
        return Err(Error::TooLarge {
            what: format!("{label}: {workgroups} workgroups"),
            bytes: workgroups as u64,
            limit_name: "max_compute_workgroups_per_dimension",
            limit: gpu.caps.max_workgroups_per_dim as u64,
        });
    }
    Ok(Dispatch {
        label,
        pipeline,
        bind_group,
        grid,
    })
}

fn words(v: &[u32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn need_f32(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype != ActDType::F32 {
        return Err(Error::DType(format!(
            "{what} must be f32, is {:?}",
            t.dtype
        )));
    }
    Ok(())
}

fn same_shape(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(Error::Shape(format!(
            "{what}: {} × {} vs {} × {}",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    Ok(())
}

fn token_rows(tokens: &wgpu::Buffer, rows: usize, what: &str) -> Result<()> {
    if tokens.size() < (rows * 16) as u64 {
        return Err(Error::Shape(format!(
            "{what}: token buffer holds {} rows, needs {rows}",
            tokens.size() / 16
        )));
    }
    Ok(())
}

/// An embedding table on the device (`rows × cols`, dense).
pub struct Table {
    /// The values.
    pub buffer: wgpu::Buffer,
    /// Entries.
    pub rows: usize,
    /// Width.
    pub cols: usize,
}

impl Table {
    /// Uploads `data` (`rows × cols`).
    pub fn new(gpu: &Gpu, label: &str, data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols || rows == 0 || cols == 0 {
            return Err(Error::Shape(format!(
                "{label}: {} values for a {rows} × {cols} table",
                data.len()
            )));
        }
        Ok(Table {
            buffer: gpu.upload(label, data)?,
            rows,
            cols,
        })
    }
}

/// `out[r] = word[id] (+ pos[position]) (+ types[type])` for the token rows in `tokens`.
pub fn embed(
    gpu: &Gpu,
    tokens: &wgpu::Buffer,
    word: &Table,
    pos: Option<&Table>,
    types: Option<&Table>,
    out: &Tensor,
) -> Result<Dispatch> {
    need_f32(out, "embedding output")?;
    token_rows(tokens, out.rows, "embedding")?;
    for t in [pos, types].into_iter().flatten() {
        if t.cols != word.cols {
            return Err(Error::Shape(format!(
                "embedding tables are {} and {} wide",
                word.cols, t.cols
            )));
        }
    }
    if out.cols != word.cols {
        return Err(Error::Shape(format!(
            "embedding output has {} columns, the table {}",
            out.cols, word.cols
        )));
    }
    let params = words(&[
        out.rows as u32,
        out.cols as u32,
        out.stride() as u32,
        word.rows as u32,
        pos.map_or(1, |t| t.rows) as u32,
        types.map_or(1, |t| t.rows) as u32,
        0,
        0,
    ]);
    dispatch(
        gpu,
        &K_EMBED,
        format!("embed {}×{}", out.rows, out.cols),
        &[],
        &[
            ("HAS_POS", pos.is_some() as u8 as f64),
            ("HAS_TYPE", types.is_some() as u8 as f64),
        ],
        &params,
        &[
            Some(tokens),
            Some(&word.buffer),
            pos.map(|t| &t.buffer),
            types.map(|t| &t.buffer),
        ],
        &out.buffer,
        out.rows as u32,
    )
}

/// A normalisation layer's parameters on the device.
pub struct Norm {
    /// Scale per column.
    pub gamma: wgpu::Buffer,
    /// Shift per column (LayerNorm), none for RMSNorm.
    pub beta: Option<wgpu::Buffer>,
    /// Columns.
    pub cols: usize,
    /// Added to the variance.
    pub eps: f32,
    /// RMSNorm (no mean subtraction) instead of LayerNorm.
    pub rms: bool,
}

impl Norm {
    /// LayerNorm with `gamma` and `beta`.
    pub fn layer(gpu: &Gpu, gamma: &[f32], beta: &[f32], eps: f64) -> Result<Self> {
        if gamma.len() != beta.len() || gamma.is_empty() {
            return Err(Error::Shape(format!(
                "LayerNorm gamma has {} values, beta {}",
                gamma.len(),
                beta.len()
            )));
        }
        Ok(Norm {
            gamma: gpu.upload("layernorm gamma", gamma)?,
            beta: Some(gpu.upload("layernorm beta", beta)?),
            cols: gamma.len(),
            eps: eps as f32,
            rms: false,
        })
    }

    /// RMSNorm with `gamma`.
    pub fn rms(gpu: &Gpu, gamma: &[f32], eps: f64) -> Result<Self> {
        if gamma.is_empty() {
            return Err(Error::Shape("RMSNorm gamma is empty".into()));
        }
        Ok(Norm {
            gamma: gpu.upload("rmsnorm gamma", gamma)?,
            beta: None,
            cols: gamma.len(),
            eps: eps as f32,
            rms: true,
        })
    }

    /// `out = norm(x (+ residual))`.
    pub fn plan(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        residual: Option<&Tensor>,
        out: &Tensor,
    ) -> Result<Dispatch> {
        need_f32(x, "norm input")?;
        need_f32(out, "norm output")?;
        same_shape(x, out, "norm output")?;
        if let Some(r) = residual {
            need_f32(r, "residual")?;
            same_shape(x, r, "residual")?;
        }
        if x.cols != self.cols {
            return Err(Error::Shape(format!(
                "norm over {} columns applied to {}",
                self.cols, x.cols
            )));
        }
        let mut params = words(&[x.rows as u32, x.cols as u32, x.stride() as u32, 0]);
        params.extend(words(&[self.eps.to_bits(), 0, 0, 0]));
        // About 8 columns per invocation, 32 to 128 invocations per row.
        let tpr = (x.cols.div_ceil(8).next_power_of_two()).clamp(32, WG as usize);
        let rows_per_wg = WG as usize / tpr;
        dispatch(
            gpu,
            &K_NORM,
            format!(
                "{}{} {}×{}",
                if residual.is_some() { "add+" } else { "" },
                if self.rms { "rmsnorm" } else { "layernorm" },
                x.rows,
                x.cols
            ),
            &[("TPR", tpr as i64)],
            &[
                ("RMS", self.rms as u8 as f64),
                ("HAS_RES", residual.is_some() as u8 as f64),
                ("HAS_BETA", self.beta.is_some() as u8 as f64),
            ],
            &params,
            &[
                Some(&x.buffer),
                residual.map(|r| &r.buffer),
                Some(&self.gamma),
                self.beta.as_ref(),
            ],
            &out.buffer,
            x.rows.div_ceil(rows_per_wg) as u32,
        )
    }
}

/// `out = act(a (+ b))` elementwise (`act` None: identity, i.e. a plain residual add).
pub fn elementwise(
    gpu: &Gpu,
    act: Option<Activation>,
    a: &Tensor,
    b: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    need_f32(a, "input")?;
    need_f32(out, "output")?;
    same_shape(a, out, "elementwise output")?;
    if let Some(b) = b {
        need_f32(b, "second input")?;
        same_shape(a, b, "elementwise inputs")?;
    }
    let len = (a.rows * a.stride()) as u32;
    dispatch(
        gpu,
        &K_ELEMENTWISE,
        format!(
            "{}{} {}×{}",
            if b.is_some() { "add+" } else { "" },
            act.map_or("copy".into(), |a| format!("{a:?}").to_lowercase()),
            a.rows,
            a.cols
        ),
        &[],
        &[
            ("ACT", act.map_or(0, |a| a.code()) as f64),
            ("HAS_B", b.is_some() as u8 as f64),
        ],
        &words(&[len, 0, 0, 0]),
        &[Some(&a.buffer), b.map(|b| &b.buffer)],
        &out.buffer,
        len.div_ceil(WG),
    )
}

/// `out = softmax(x)` along each row.
pub fn softmax(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    need_f32(x, "softmax input")?;
    need_f32(out, "softmax output")?;
    same_shape(x, out, "softmax output")?;
    dispatch(
        gpu,
        &K_SOFTMAX,
        format!("softmax {}×{}", x.rows, x.cols),
        &[],
        &[],
        &words(&[x.rows as u32, x.cols as u32, x.stride() as u32, 0]),
        &[Some(&x.buffer)],
        &out.buffer,
        x.rows as u32,
    )
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
/// [`AttentionLayout`]) is an [`Error::Invalid`].
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
        return Err(Error::Invalid(format!(
            "attention split {split} is not one of {ATT_SPLITS:?}"
        )));
    }
    let hidden = out.cols;
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::Shape(format!(
            "{hidden} columns do not split into {heads} heads"
        )));
    }
    let d = hidden / heads;
    if d > MAX_HEAD_DIM {
        return Err(Error::Invalid(format!(
            "head size {d} is over {MAX_HEAD_DIM}"
        )));
    }
    if !ATT_QPIS.contains(&qpi) || qpi > AttentionLayout::max_qpi(d) {
        return Err(Error::Invalid(format!(
            "attention QPI {qpi} is not one of {ATT_QPIS:?} up to {} for head size {d}",
            AttentionLayout::max_qpi(d)
        )));
    }
    if seq == 0 || seq > MAX_SEQ || !qkv.rows.is_multiple_of(seq) {
        return Err(Error::Shape(format!(
            "{} rows are not whole sequences of {seq} (at most {MAX_SEQ})",
            qkv.rows
        )));
    }
    if qkv.cols != 3 * hidden || qkv.rows != out.rows {
        return Err(Error::Shape(format!(
            "qkv is {} × {}, expected {} × {}",
            qkv.rows,
            qkv.cols,
            out.rows,
            3 * hidden
        )));
    }
    token_rows(tokens, qkv.rows, "attention")?;
    let mut params = words(&[
        qkv.rows as u32,
        seq as u32,
        heads as u32,
        d as u32,
        hidden as u32,
        qkv.stride() as u32,
        out.stride() as u32,
    ]);
    params.extend(words(&[(1.0 / (d as f32).sqrt()).to_bits()]));
    // Keys staged per step: as many whole chunks as 16 KiB of workgroup memory holds (K and
    // V, plus 256 bytes of mask flags). The split's merge reuses the K/V array and needs WG
    // vec4s in each half, which the budget always gives (128-wide heads stage 12 × 32).
    let wg = ATT_WG as usize;
    let dp4 = d.div_ceil(4);
    let budget = (gpu.caps.workgroup_storage as usize).min(16 * 1024) - 256;
    let fit = budget / (dp4 * 32) / ATT_CHUNK * ATT_CHUNK;
    let kc = fit.clamp(wg.div_ceil(dp4).next_multiple_of(ATT_CHUNK), 64);
    let kcdp4 = kc * dp4;
    let seqs = qkv.rows / seq;
    dispatch(
        gpu,
        &K_ATTENTION,
        format!(
            "attention {}×{heads}h×{d} split {split} qpi {qpi}",
            qkv.rows
        ),
        &[
            ("WG", ATT_WG as i64),
            ("DP4", dp4 as i64),
            ("KC", kc as i64),
            ("KCDP4", kcdp4 as i64),
            ("KVDP4", 2 * kcdp4 as i64),
            ("CH", ATT_CHUNK as i64),
            ("SPLIT", split as i64),
            ("QPI", qpi as i64),
            ("MERGE", (split > 1) as i64),
        ],
        &[],
        &params,
        &[Some(&qkv.buffer), Some(tokens)],
        &out.buffer,
        (seqs * heads * seq.div_ceil(wg / split * qpi)) as u32,
    )
}

/// Pools `batch` sequences of `seq` rows of `x` into `out` (`batch × cols`): the mean over
/// tokens with mask set (all rows when `tokens` is None) or the first row, then optionally
/// L2-normalised. With `seq = 1` and no tokens it is plain L2 normalisation of rows.
pub fn pool(
    gpu: &Gpu,
    x: &Tensor,
    tokens: Option<&wgpu::Buffer>,
    seq: usize,
    pooling: Pooling,
    normalize: bool,
    out: &Tensor,
) -> Result<Dispatch> {
    need_f32(x, "pool input")?;
    need_f32(out, "pool output")?;
    if seq == 0 || !x.rows.is_multiple_of(seq) || out.rows != x.rows / seq || out.cols != x.cols {
        return Err(Error::Shape(format!(
            "pooling {} × {} in sequences of {seq} into {} × {}",
            x.rows, x.cols, out.rows, out.cols
        )));
    }
    if let Some(t) = tokens {
        token_rows(t, x.rows, "pooling")?;
    }
    dispatch(
        gpu,
        &K_POOL,
        format!("pool {}×{}", out.rows, out.cols),
        &[],
        &[
            ("HAS_MASK", tokens.is_some() as u8 as f64),
            ("CLS", (pooling == Pooling::Cls) as u8 as f64),
            ("NORMALIZE", normalize as u8 as f64),
        ],
        &words(&[
            out.rows as u32,
            seq as u32,
            x.cols as u32,
            x.stride() as u32,
            out.stride() as u32,
            0,
            0,
            0,
        ]),
        &[Some(&x.buffer), tokens],
        &out.buffer,
        out.rows as u32,
    )
}
