//! The model kernels other than the linear layers: embedding lookup, LayerNorm / RMSNorm
//! (with a fused residual add), activations and residual add, softmax, multi-head
//! self-attention with a padding mask (`attention.rs`, re-exported here), and pooling with L2
//! normalisation; for the decoder, RoPE (`rope.rs`), SwiGLU (`swiglu.rs`) and the paged KV
//! cache (`paged.rs`: append with RoPE, causal grouped-query attention over block tables).
//!
//! Each function validates shapes and returns a [`Dispatch`] with its uniform and bind group
//! already made, so a forward pass plans once and replays its dispatches on every call.
//! Activations are f32 [`Tensor`]s (rows padded to a multiple of four, padding zero); token
//! rows are `vec4<u32>` (id, position, type, mask).

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::{ActDType, Tensor};
use serde::{Deserialize, Serialize};

mod argmax;
mod attention;
mod paged;
mod rope;
mod select;
mod swiglu;

pub use argmax::argmax_rows;
pub(crate) use attention::AttentionParams;
pub use attention::{AttentionLayout, attention, attention_split, attention_with};
pub use paged::{KvLayout, kv_append, paged_attention, paged_scratch_bytes, paged_split};
pub use rope::{Rope, RopeLayout, rope};
pub use select::select_rows;
pub use swiglu::swiglu;

/// Largest head size the attention kernel takes (q and the output live in registers).
pub const MAX_HEAD_DIM: usize = 128;
/// Longest sequence the model runtime pads to (BERT's position embeddings end at 512).
pub const MAX_SEQ: usize = 512;

const REDUCE: &str = include_str!("../../../shaders/model/model_reduce.wgsl");
const EMBED: &str = include_str!("../../../shaders/model/embed.wgsl");
const NORM: &str = include_str!("../../../shaders/model/norm.wgsl");
const ELEMENTWISE: &str = concat!(
    include_str!("../../../shaders/shared/activation.wgsl"),
    include_str!("../../../shaders/model/elementwise.wgsl")
);
const SOFTMAX: &str = include_str!("../../../shaders/model/softmax.wgsl");
const POOL: &str = include_str!("../../../shaders/model/pool.wgsl");

/// How token vectors become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the tokens of the attention mask.
    Mean,
    /// The first token's vector.
    Cls,
}

/// Invocations per workgroup of the row kernels.
const WG: u32 = 128;

/// Invocations per row of the norm kernel for rows of `cols`: about 8 columns each, 32 to
/// 128 per row.
fn norm_tpr(cols: usize) -> usize {
    (cols.div_ceil(8).next_power_of_two()).clamp(32, WG as usize)
}

/// Params of `embed.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct EmbedParams {
    rows: u32,
    cols: u32,
    stride: u32,
    vocab: u32,
    positions: u32,
    types: u32,
    first: u32,
    last: u32,
}

/// Params of `norm.wgsl` (and of its backward pass, `train::ops::norm_grad`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct NormParams {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) stride: u32,
    pub(crate) _p0: u32,
    pub(crate) eps: f32,
    pub(crate) _p1: u32,
    pub(crate) _p2: u32,
    pub(crate) _p3: u32,
}

/// Params of `elementwise.wgsl` (and of `train::ops::act_grad`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ElementwiseParams {
    pub(crate) len: u32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
    pub(crate) _p2: u32,
}

/// Params of `softmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SoftmaxParams {
    rows: u32,
    cols: u32,
    stride: u32,
    _p0: u32,
}

/// Params of `pool.wgsl` (and of its backward pass, `train::ops::pool_grad`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PoolParams {
    pub(crate) batch: u32,
    pub(crate) seq: u32,
    pub(crate) cols: u32,
    pub(crate) in_stride: u32,
    pub(crate) out_stride: u32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
    pub(crate) _p2: u32,
}

const K_EMBED: Kernel<EmbedParams> = Kernel::new(
    "model_embed",
    &[
        Read("tokens"),
        Read("word"),
        Read("pos"),
        Read("typ"),
        ReadWrite("y"),
    ],
);
const K_NORM: Kernel<NormParams> = Kernel::new(
    "model_norm",
    &[
        Read("x"),
        Read("r"),
        Read("gamma"),
        Read("beta"),
        ReadWrite("y"),
    ],
);
/// The norm that also writes the sum `x + residual` it normalised (`SUM_OUT`).
const K_NORM_SUM: Kernel<NormParams> = Kernel::new(
    "model_norm_sum",
    &[
        Read("x"),
        Read("r"),
        Read("gamma"),
        Read("beta"),
        ReadWrite("y"),
        ReadWrite("sum_out"),
    ],
);
const K_ELEMENTWISE: Kernel<ElementwiseParams> =
    Kernel::new("model_elementwise", &[Read("a"), Read("b"), ReadWrite("y")]);
const K_SOFTMAX: Kernel<SoftmaxParams> = Kernel::new("model_softmax", &[Read("x"), ReadWrite("y")]);
const K_POOL: Kernel<PoolParams> =
    Kernel::new("model_pool", &[Read("x"), Read("tokens"), ReadWrite("y")]);

/// The params layouts of the family's kernels (attention's included), for the layout test.
#[cfg(test)]
pub(crate) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    vec![
        params_layout!(K_EMBED.name, EMBED, "Params", EmbedParams;
            rows, cols, stride, vocab, positions, types, first, last),
        params_layout!(K_NORM.name, NORM, "Params", NormParams;
            rows, cols, stride, _p0, eps, _p1, _p2, _p3),
        params_layout!(K_ELEMENTWISE.name, ELEMENTWISE, "Params", ElementwiseParams;
            len, _p0, _p1, _p2),
        params_layout!(K_SOFTMAX.name, SOFTMAX, "Params", SoftmaxParams;
            rows, cols, stride, _p0),
        params_layout!(K_POOL.name, POOL, "Params", PoolParams;
            batch, seq, cols, in_stride, out_stride, _p0, _p1, _p2),
        attention::params_layout(),
        swiglu::params_layout(),
        select::params_layout(),
        argmax::params_layout(),
        rope::params_layout(),
    ]
    .into_iter()
    .chain(paged::params_layouts())
    .collect()
}

#[allow(clippy::too_many_arguments)]
/// Compiles (once) and binds kernel `k` of template `src`: `buffers` in slot order (None
/// binds the dummy buffer), `WG` defaulting to the row kernels' workgroup size.
pub(super) fn dispatch<P: bytemuck::Pod>(
    gpu: &Gpu,
    k: &Kernel<P>,
    src: &'static str,
    label: String,
    vars: &[(&'static str, i64)],
    constants: &[(&str, f64)],
    params: &P,
    buffers: &[Option<&wgpu::Buffer>],
    workgroups: u32,
) -> Result<Dispatch> {
    let vars = kernel_vars(vars);
    k.launch(gpu)
        .label(label)
        .shader(kernel_name(k.name, &vars), move || {
            kernel_source(src, &vars)
        })
        .constants(constants)
        .trusted()
        .params(params)
        .buffers(buffers)
        .workgroups(workgroups as u64)
        .build()
}

pub(super) fn need_f32(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype != ActDType::F32 {
        return Err(Error::dtype(format!(
            "{what} must be f32, is {:?}",
            t.dtype
        )));
    }
    Ok(())
}

fn same_shape(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(Error::shape(format!(
            "{what}: {} × {} vs {} × {}",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    Ok(())
}

pub(super) fn token_rows(tokens: &wgpu::Buffer, rows: usize, what: &str) -> Result<()> {
    if tokens.size() < (rows * 16) as u64 {
        return Err(Error::shape(format!(
            "{what}: token buffer holds {} rows, needs {rows}",
            tokens.size() / 16
        )));
    }
    Ok(())
}

/// An embedding table on the device (`rows × cols`, dense), split by rows over as many
/// buffers as one storage binding of the device needs (a large vocabulary's word table can
/// exceed one binding).
pub struct Table {
    /// The buffers of consecutive rows, each with its first row.
    chunks: Vec<(wgpu::Buffer, usize)>,
    /// Entries.
    pub rows: usize,
    /// Width.
    pub cols: usize,
}

impl Table {
    /// Uploads `data` (`rows × cols`), split by rows at the device's binding limit.
    pub fn new(gpu: &Gpu, label: &str, data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) || rows == 0 || cols == 0 {
            return Err(Error::shape(format!(
                "{label}: {} values for a {rows} × {cols} table",
                data.len()
            )));
        }
        let limit = gpu.caps.max_storage_binding.min(gpu.caps.max_buffer);
        let per_chunk = usize::try_from(limit / (cols as u64 * 4)).unwrap_or(usize::MAX);
        if per_chunk == 0 {
            // One row does not fit: the error names the row and the limit.
            gpu.check_binding(&format!("one row of {label} ({cols} f32)"), cols as u64 * 4)?;
        }
        let per_chunk = per_chunk.clamp(1, rows);
        let chunks = (0..rows)
            .step_by(per_chunk)
            .map(|first| {
                let end = (first + per_chunk).min(rows);
                let buffer = gpu.upload(label, &data[first * cols..end * cols])?;
                Ok((buffer, first))
            })
            .collect::<Result<_>>()?;
        Ok(Table { chunks, rows, cols })
    }

    /// Buffers the table is split over (1 when it fits one binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The one buffer of a table that must fit one binding (positions, token types).
    fn single(&self, gpu: &Gpu, what: &str) -> Result<&wgpu::Buffer> {
        match &self.chunks[..] {
            [(b, _)] => Ok(b),
            _ => Err(Error::Input(crate::error::InputError::TooLarge {
                what: format!("the {what} table ({} × {} f32)", self.rows, self.cols),
                bytes: (self.rows * self.cols * 4) as u64,
                limit_name: "max_storage_buffer_binding_size",
                limit: gpu.caps.max_storage_binding,
            })),
        }
    }
}

/// `out[r] = word[id] (+ pos[position]) (+ types[type])` for the token rows in `tokens`: one
/// dispatch per buffer of the word table, each writing the rows whose ids it holds (the
/// position and type tables must each fit one binding).
pub fn embed(
    gpu: &Gpu,
    tokens: &wgpu::Buffer,
    word: &Table,
    pos: Option<&Table>,
    types: Option<&Table>,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    need_f32(out, "embedding output")?;
    token_rows(tokens, out.rows, "embedding")?;
    for t in [pos, types].into_iter().flatten() {
        if t.cols != word.cols {
            return Err(Error::shape(format!(
                "embedding tables are {} and {} wide",
                word.cols, t.cols
            )));
        }
    }
    if out.cols != word.cols {
        return Err(Error::shape(format!(
            "embedding output has {} columns, the table {}",
            out.cols, word.cols
        )));
    }
    let (pos_buf, types_buf) = (
        pos.map(|t| t.single(gpu, "position")).transpose()?,
        types.map(|t| t.single(gpu, "token type")).transpose()?,
    );
    let last = word.chunks.len() - 1;
    word.chunks
        .iter()
        .enumerate()
        .map(|(c, (buffer, first))| {
            let end = word.chunks.get(c + 1).map_or(word.rows, |n| n.1);
            let params = EmbedParams {
                rows: out.rows as u32,
                cols: out.cols as u32,
                stride: out.stride() as u32,
                vocab: (end - first) as u32,
                positions: pos.map_or(1, |t| t.rows) as u32,
                types: types.map_or(1, |t| t.rows) as u32,
                first: *first as u32,
                last: (c == last) as u32,
            };
            dispatch(
                gpu,
                &K_EMBED,
                EMBED,
                format!("embed {}×{}", out.rows, out.cols),
                &[],
                &[
                    ("HAS_POS", pos.is_some() as u8 as f64),
                    ("HAS_TYPE", types.is_some() as u8 as f64),
                ],
                &params,
                &[
                    Some(tokens),
                    Some(buffer),
                    pos_buf,
                    types_buf,
                    Some(&out.buffer),
                ],
                out.rows as u32,
            )
        })
        .collect()
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
            return Err(Error::shape(format!(
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
            return Err(Error::shape("RMSNorm gamma is empty"));
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
        self.plan_with(gpu, x, residual, None, out)
    }

    /// `sum = x + residual` and `out = norm(sum)` in one pass (a pre-norm decoder's residual
    /// stream and the next block's input).
    pub fn plan_sum(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        residual: &Tensor,
        sum: &Tensor,
        out: &Tensor,
    ) -> Result<Dispatch> {
        need_f32(sum, "norm sum output")?;
        same_shape(x, sum, "norm sum output")?;
        self.plan_with(gpu, x, Some(residual), Some(sum), out)
    }

    fn plan_with(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        residual: Option<&Tensor>,
        sum: Option<&Tensor>,
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
            return Err(Error::shape(format!(
                "norm over {} columns applied to {}",
                self.cols, x.cols
            )));
        }
        let params = NormParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            stride: x.stride() as u32,
            _p0: 0,
            eps: self.eps,
            _p1: 0,
            _p2: 0,
            _p3: 0,
        };
        // About 8 columns per invocation, 32 to 128 invocations per row.
        let tpr = norm_tpr(x.cols);
        let rows_per_wg = WG as usize / tpr;
        let kernel = if sum.is_some() { &K_NORM_SUM } else { &K_NORM };
        let mut buffers = vec![
            Some(&x.buffer),
            residual.map(|r| &r.buffer),
            Some(&self.gamma),
            self.beta.as_ref(),
            Some(&out.buffer),
        ];
        if let Some(s) = sum {
            buffers.push(Some(&s.buffer));
        }
        dispatch(
            gpu,
            kernel,
            NORM,
            format!(
                "{}{} {}×{}",
                match (residual.is_some(), sum.is_some()) {
                    (_, true) => "add→sum+",
                    (true, false) => "add+",
                    _ => "",
                },
                if self.rms { "rmsnorm" } else { "layernorm" },
                x.rows,
                x.cols
            ),
            &[("TPR", tpr as i64), ("SUM_OUT", sum.is_some() as i64)],
            &[
                ("RMS", self.rms as u8 as f64),
                ("HAS_RES", residual.is_some() as u8 as f64),
                ("HAS_BETA", self.beta.is_some() as u8 as f64),
            ],
            &params,
            &buffers,
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
        ELEMENTWISE,
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
        &ElementwiseParams {
            len,
            _p0: 0,
            _p1: 0,
            _p2: 0,
        },
        &[Some(&a.buffer), b.map(|b| &b.buffer), Some(&out.buffer)],
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
        SOFTMAX,
        format!("softmax {}×{}", x.rows, x.cols),
        &[],
        &[],
        &SoftmaxParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            stride: x.stride() as u32,
            _p0: 0,
        },
        &[Some(&x.buffer), Some(&out.buffer)],
        x.rows as u32,
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
        return Err(Error::shape(format!(
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
        POOL,
        format!("pool {}×{}", out.rows, out.cols),
        &[],
        &[
            ("HAS_MASK", tokens.is_some() as u8 as f64),
            ("CLS", (pooling == Pooling::Cls) as u8 as f64),
            ("NORMALIZE", normalize as u8 as f64),
        ],
        &PoolParams {
            batch: out.rows as u32,
            seq: seq as u32,
            cols: x.cols as u32,
            in_stride: x.stride() as u32,
            out_stride: out.stride() as u32,
            _p0: 0,
            _p1: 0,
            _p2: 0,
        },
        &[Some(&x.buffer), tokens, Some(&out.buffer)],
        out.rows as u32,
    )
}

/// `vars` with the row kernels' workgroup size added unless they set one.
fn kernel_vars(vars: &[(&'static str, i64)]) -> Vec<(&'static str, i64)> {
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(n, _)| *n == "WG") {
        vars.push(("WG", WG as i64));
    }
    vars
}

/// Pipeline name of kernel `name` with `vars` (from [`kernel_vars`]).
fn kernel_name(name: &str, vars: &[(&str, i64)]) -> String {
    let v: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
    format!("{name}{v}")
}

/// The WGSL of template `src` with `vars` (from [`kernel_vars`]): the shared reductions, then
/// the kernel.
fn kernel_source(src: &str, vars: &[(&str, i64)]) -> Result<String> {
    crate::gpu::wgsl::expand(&format!("{REDUCE}\n{src}"), vars)
}

/// Every module the model kernels can ask for, as (pipeline name, WGSL or the template
/// error), for tests that validate them offline: the row kernels (LayerNorm with every
/// threads-per-row its column counts give) and attention for every head size up to
/// [`MAX_HEAD_DIM`], split and queries per invocation, on 16 and 32 KiB of workgroup memory;
/// the paged attention kernel for every accumulator count, with and without context splits.
pub fn shader_variants() -> Vec<(String, Result<String>)> {
    // (kernel name, template, variables)
    type Listed = (&'static str, &'static str, Vec<(&'static str, i64)>);
    let mut sets: Vec<Listed> = vec![
        (K_EMBED.name, EMBED, Vec::new()),
        (K_ELEMENTWISE.name, ELEMENTWISE, Vec::new()),
        (K_SOFTMAX.name, SOFTMAX, Vec::new()),
        (K_POOL.name, POOL, Vec::new()),
        (swiglu::K_SWIGLU.name, swiglu::SWIGLU, Vec::new()),
        (select::K_SELECT.name, select::SELECT_ROWS, Vec::new()),
        (
            argmax::K_ARGMAX.name,
            argmax::ARGMAX,
            vec![("WG", argmax::ARGMAX_WG)],
        ),
        (rope::kernel_source().0, rope::kernel_source().1, Vec::new()),
    ];
    let mut tprs: Vec<i64> = (1..=4096).map(|c| norm_tpr(c) as i64).collect();
    tprs.dedup();
    for sum in [0, 1] {
        let name = if sum == 1 {
            K_NORM_SUM.name
        } else {
            K_NORM.name
        };
        sets.extend(
            tprs.iter()
                .map(|&t| (name, NORM, vec![("TPR", t), ("SUM_OUT", sum)])),
        );
    }
    sets.extend(paged::variants());
    let (name, src) = attention::kernel_source();
    sets.extend(
        attention::variant_vars()
            .into_iter()
            .map(|v| (name, src, v)),
    );
    let mut out: Vec<(String, Result<String>)> = Vec::new();
    for (kernel, src, vars) in sets {
        let vars = kernel_vars(&vars);
        let name = kernel_name(kernel, &vars);
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, kernel_source(src, &vars)));
        }
    }
    out
}
