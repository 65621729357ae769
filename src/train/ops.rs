//! The kernels of a training step (`shaders/train/`): the strided f32 matrix product that
//! gives the forward pass and both gradients of a linear layer, activation gradients, bias
//! gradients, the distillation losses with their gradients, the gradient norm and AdamW.
//! Each launcher checks shapes and returns a [`Dispatch`], so a step is planned once and
//! replayed (`super::Step`). Tensors are f32 [`Tensor`]s: rows padded to a multiple of four,
//! padding zero, and every kernel here keeps it zero.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel, ParamBuffer};
// The backward kernels take their forward kernels' params.
use crate::model::ops::{
    AttentionParams, ElementwiseParams, MAX_SEQ, Norm, NormParams, PoolParams, Pooling,
};
use crate::tensor::{ActDType, Tensor};

const GEMM: &str = include_str!("../../shaders/train/gemm_f32.wgsl");
const ACT_GRAD: &str = include_str!("../../shaders/train/act_grad.wgsl");
const ACTIVATION: &str = include_str!("../../shaders/shared/activation.wgsl");
const COL_SUM: &str = include_str!("../../shaders/train/col_sum.wgsl");
const LOSS: &str = include_str!("../../shaders/train/loss.wgsl");
const SUM_SQUARES: &str = include_str!("../../shaders/train/sum_squares.wgsl");
const ADAMW: &str = include_str!("../../shaders/train/adamw.wgsl");
const REDUCE: &str = include_str!("../../shaders/model/model_reduce.wgsl");
const NORM_GRAD: &str = include_str!("../../shaders/train/norm_grad.wgsl");
const POOL_GRAD: &str = include_str!("../../shaders/train/pool_grad.wgsl");
const ATTENTION_GRAD: &str = include_str!("../../shaders/train/attention_grad.wgsl");
/// Invocations per workgroup of the attention backward kernels.
const ATTENTION_WG: i64 = 64;

/// Invocations per workgroup of the elementwise and row kernels.
const WG: i64 = 128;
/// Rows and columns of C one GEMM workgroup computes.
const GEMM_TILE: usize = 64;

/// Params of `gemm_f32.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    c_rs: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    n_out: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

/// Params of `col_sum.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ColSumParams {
    rows: u32,
    cols: u32,
    stride: u32,
    cols_out: u32,
}

/// Params of `loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LossParams {
    rows: u32,
    cap: u32,
    cols: u32,
    stride: u32,
    temperature: f32,
    alpha: f32,
    scale: f32,
    _p0: u32,
}

/// Params of `sum_squares.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SumSquaresParams {
    len: u32,
    slot: u32,
    _p0: u32,
    _p1: u32,
}

/// Params of `adamw.wgsl`: one step's scalars (see [`super::AdamW::params`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamWParams {
    pub(crate) len: u32,
    pub(crate) count: u32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
    pub(crate) lr: f32,
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) eps: f32,
    pub(crate) weight_decay: f32,
    pub(crate) bias1: f32,
    pub(crate) bias2: f32,
    pub(crate) max_norm: f32,
}

const K_NORM_GRAD: Kernel<NormParams> = Kernel::new(
    "train_norm_grad",
    &[
        Read("v"),
        Read("gamma"),
        Read("dy"),
        ReadWrite("dv"),
        ReadWrite("dyx"),
    ],
);
const K_POOL_GRAD: Kernel<PoolParams> = Kernel::new(
    "train_pool_grad",
    &[Read("x"), Read("tokens"), Read("dy"), ReadWrite("dx")],
);

const K_ATTENTION_GRAD_Q: Kernel<AttentionParams> = Kernel::new(
    "train_attention_grad_queries",
    &[
        Read("qkv"),
        Read("tokens"),
        Read("dout"),
        ReadWrite("probs"),
        ReadWrite("dscores"),
        ReadWrite("dqkv"),
    ],
);
const K_ATTENTION_GRAD_K: Kernel<AttentionParams> = Kernel::new(
    "train_attention_grad_keys",
    &[
        Read("qkv"),
        Read("tokens"),
        Read("dout"),
        Read("probs"),
        Read("dscores"),
        ReadWrite("dqkv"),
    ],
);
const K_GEMM: Kernel<GemmParams> = Kernel::new(
    "train_gemm_f32",
    &[Read("a"), Read("b"), Read("bias"), ReadWrite("c")],
);
const K_ACT_GRAD: Kernel<ElementwiseParams> =
    Kernel::new("train_act_grad", &[Read("z"), Read("dy"), ReadWrite("dx")]);
const K_COL_SUM: Kernel<ColSumParams> = Kernel::new("train_col_sum", &[Read("x"), ReadWrite("y")]);
const K_LOSS: Kernel<LossParams> = Kernel::new(
    "train_loss",
    &[
        Read("s"),
        Read("t"),
        Read("labels"),
        ReadWrite("grad"),
        ReadWrite("loss"),
    ],
);
const K_SUM_SQUARES: Kernel<SumSquaresParams> =
    Kernel::new("train_sum_squares", &[Read("x"), ReadWrite("norms")]);
const K_ADAMW: Kernel<AdamWParams> = Kernel::new(
    "train_adamw",
    &[
        Read("g"),
        Read("norms"),
        Read("mask"),
        ReadWrite("w"),
        ReadWrite("m"),
        ReadWrite("v"),
    ],
);

/// The params layouts of the training kernels, for the layout test.
#[cfg(test)]
pub(crate) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    vec![
        params_layout!(K_GEMM.name, GEMM, "Params", GemmParams;
            m, n, k, c_rs, a_rs, a_cs, b_rs, b_cs, n_out, _p0, _p1, _p2),
        params_layout!(K_ACT_GRAD.name, ACT_GRAD, "Params", ElementwiseParams; len, _p0, _p1, _p2),
        params_layout!(K_COL_SUM.name, COL_SUM, "Params", ColSumParams;
            rows, cols, stride, cols_out),
        params_layout!(K_LOSS.name, LOSS, "Params", LossParams;
            rows, cap, cols, stride, temperature, alpha, scale, _p0),
        params_layout!(K_SUM_SQUARES.name, SUM_SQUARES, "Params", SumSquaresParams;
            len, slot, _p0, _p1),
        params_layout!(K_NORM_GRAD.name, NORM_GRAD, "Params", NormParams;
            rows, cols, stride, _p0, eps, _p1, _p2, _p3),
        params_layout!(K_POOL_GRAD.name, POOL_GRAD, "Params", PoolParams;
            batch, seq, cols, in_stride, out_stride, _p0, _p1, _p2),
        params_layout!(K_ATTENTION_GRAD_Q.name, ATTENTION_GRAD, "Params", AttentionParams;
            rows, seq, heads, head_dim, hidden, qkv_stride, out_stride, scale),
        params_layout!(K_ADAMW.name, ADAMW, "Params", AdamWParams;
            len, count, _p0, _p1, lr, beta1, beta2, eps, weight_decay, bias1, bias2, max_norm),
    ]
}

/// Whether an operand enters a product as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// As stored: `rows × cols`.
    N,
    /// Transposed: `cols × rows`.
    T,
}

impl Op {
    /// (rows, cols, row step, column step) of `op(t)` in elements of `t`'s buffer.
    fn view(self, t: &Tensor) -> (usize, usize, usize, usize) {
        match self {
            Op::N => (t.rows, t.cols, t.stride(), 1),
            Op::T => (t.cols, t.rows, 1, t.stride()),
        }
    }
}

fn need_f32(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype != ActDType::F32 {
        return Err(Error::dtype(format!(
            "{what} must be f32, is {:?}",
            t.dtype
        )));
    }
    Ok(())
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(format!("{what} ({v}) does not fit in 32 bits")))
}

/// The variables every template of this family gets (`WG`, plus the choice flags).
fn vars(extra: &[(&'static str, i64)]) -> Vec<(&'static str, i64)> {
    let mut v = vec![("WG", WG)];
    v.extend_from_slice(extra);
    v
}

/// `c = op_a(a) · op_b(b) (+ bias) (+ c if accumulate)`: `op_a(a)` is `m × k`, `op_b(b)`
/// `k × n`, `c` `m × n`, `bias` (1 × n) added to every row. A linear layer's forward
/// pass is `matmul(x, N, w, T)` (`w` stored `n × k`), its input gradient `matmul(dy, N, w,
/// N)` and its weight gradient `matmul(dy, T, x, N)`. `c` may not be `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    gpu: &Gpu,
    a: &Tensor,
    op_a: Op,
    b: &Tensor,
    op_b: Op,
    bias: Option<&Tensor>,
    c: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    for (t, what) in [(a, "matmul a"), (b, "matmul b"), (c, "matmul c")] {
        need_f32(t, what)?;
    }
    let (m, k, a_rs, a_cs) = op_a.view(a);
    let (kb, n, b_rs, b_cs) = op_b.view(b);
    if k != kb || (c.rows, c.cols) != (m, n) || m == 0 || n == 0 {
        return Err(Error::shape(format!(
            "matmul: {m} × {k} times {kb} × {n} into {} × {}",
            c.rows, c.cols
        )));
    }
    if let Some(bias) = bias {
        need_f32(bias, "matmul bias")?;
        if (bias.rows, bias.cols) != (1, n) {
            return Err(Error::shape(format!(
                "matmul bias: {} × {} for {n} columns",
                bias.rows, bias.cols
            )));
        }
    }
    let grid = (
        u32_of(n.div_ceil(GEMM_TILE), "matmul column tiles")?,
        u32_of(m.div_ceil(GEMM_TILE), "matmul row tiles")?,
    );
    let params = GemmParams {
        m: u32_of(m, "matmul rows")?,
        n: n as u32,
        k: u32_of(k, "matmul depth")?,
        c_rs: c.stride() as u32,
        a_rs: a_rs as u32,
        a_cs: a_cs as u32,
        b_rs: b_rs as u32,
        b_cs: b_cs as u32,
        n_out: c.stride() as u32,
        _p0: 0,
        _p1: 0,
        _p2: 0,
    };
    let constants = [
        ("BIAS", bias.is_some() as u8 as f64),
        ("ACCUM", accumulate as u8 as f64),
    ];
    K_GEMM
        .launch(gpu)
        .label(format!("train matmul {m}×{k}·{k}×{n}"))
        .template(&[GEMM], &[])
        .constants(&constants)
        .params(&params)
        .buffers(&[
            Some(&a.buffer),
            Some(&b.buffer),
            bias.map(|t| &t.buffer),
            Some(&c.buffer),
        ])
        .grid(grid)
        .build()
}

/// Workgroups of `WG` invocations for `len` elements.
fn groups(len: usize) -> u64 {
    len.div_ceil(WG as usize) as u64
}

/// `dx = dy · f'(z)` for the activation `act` (`z` its input in the forward pass).
pub fn act_grad(
    gpu: &Gpu,
    act: Activation,
    z: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    for (t, what) in [
        (z, "activation input"),
        (dy, "output gradient"),
        (dx, "input gradient"),
    ] {
        need_f32(t, what)?;
        if (t.rows, t.cols) != (z.rows, z.cols) {
            return Err(Error::shape(format!(
                "activation gradient: {what} is {} × {}, the input {} × {}",
                t.rows, t.cols, z.rows, z.cols
            )));
        }
    }
    let len = z.rows * z.stride();
    K_ACT_GRAD
        .launch(gpu)
        .label(format!("train {act:?} gradient {}×{}", z.rows, z.cols))
        .template(&[ACTIVATION, ACT_GRAD], &vars(&[]))
        .constants(&[("ACT", act.code() as f64)])
        .params(&ElementwiseParams {
            len: u32_of(len, "activation gradient length")?,
            _p0: 0,
            _p1: 0,
            _p2: 0,
        })
        .buffers(&[Some(&z.buffer), Some(&dy.buffer), Some(&dx.buffer)])
        .workgroups(groups(len))
        .build()
}

/// `y[j] (+)= Σ_i x[i, j]`: `y` (1 × `x.cols`) is a bias's gradient from its output's.
pub fn col_sum(gpu: &Gpu, x: &Tensor, y: &Tensor, accumulate: bool) -> Result<Dispatch> {
    need_f32(x, "column sum input")?;
    need_f32(y, "column sum output")?;
    if (y.rows, y.cols) != (1, x.cols) {
        return Err(Error::shape(format!(
            "column sums of {} × {} into {} × {}",
            x.rows, x.cols, y.rows, y.cols
        )));
    }
    K_COL_SUM
        .launch(gpu)
        .label(format!("train column sum {}×{}", x.rows, x.cols))
        .template(&[COL_SUM], &vars(&[]))
        .constants(&[("ACCUM", accumulate as u8 as f64)])
        .params(&ColSumParams {
            rows: u32_of(x.rows, "column sum rows")?,
            cols: x.cols as u32,
            stride: x.stride() as u32,
            cols_out: y.stride() as u32,
        })
        .buffers(&[Some(&x.buffer), Some(&y.buffer)])
        .workgroups(groups(y.stride()))
        .build()
}

/// What a student is trained to match.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Classifier logits: `alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) ·
    /// cross-entropy(softmax(s), label)` (Hinton et al.); labels are read only when
    /// `alpha < 1`.
    Distill {
        /// The softening temperature T (> 0).
        temperature: f32,
        /// The weight of the soft (teacher) term, in [0, 1].
        alpha: f32,
    },
    /// The mean squared difference of the outputs.
    Mse,
    /// `1 − cos(s, t)` per row (sentence embeddings).
    Cosine,
}

impl Loss {
    /// Checks the parameters.
    pub fn validate(self) -> Result<()> {
        if let Loss::Distill { temperature, alpha } = self
            && !(temperature > 0.0 && temperature.is_finite() && (0.0..=1.0).contains(&alpha))
        {
            return Err(Error::config(format!(
                "distillation loss: temperature {temperature} must be positive and alpha \
                 {alpha} in [0, 1]"
            )));
        }
        Ok(())
    }

    fn flags(self) -> [(&'static str, i64); 3] {
        let which = match self {
            Loss::Distill { .. } => 0,
            Loss::Mse => 1,
            Loss::Cosine => 2,
        };
        [
            ("LOSS_KD", (which == 0) as i64),
            ("LOSS_MSE", (which == 1) as i64),
            ("LOSS_COSINE", (which == 2) as i64),
        ]
    }
}

/// The batch-mean loss of the first `rows` rows of student outputs `s` against teacher
/// outputs `t`, and its gradient: `grad` (shaped as `s`) gets `∂ loss / ∂ s` (zero rows from
/// `rows` on), `row_loss` (≥ `rows` rows, one column) each row's share of the mean (their sum
/// is the loss). `labels` (one u32 a row) is needed by [`Loss::Distill`] with `alpha < 1`.
#[allow(clippy::too_many_arguments)]
pub fn loss(
    gpu: &Gpu,
    kind: Loss,
    s: &Tensor,
    t: &Tensor,
    labels: Option<&wgpu::Buffer>,
    rows: usize,
    grad: &Tensor,
    row_loss: &Tensor,
) -> Result<Dispatch> {
    kind.validate()?;
    for (x, what) in [
        (s, "student output"),
        (t, "teacher output"),
        (grad, "loss gradient"),
    ] {
        need_f32(x, what)?;
        if (x.rows, x.cols) != (s.rows, s.cols) {
            return Err(Error::shape(format!(
                "loss: {what} is {} × {}, the student's {} × {}",
                x.rows, x.cols, s.rows, s.cols
            )));
        }
    }
    need_f32(row_loss, "row losses")?;
    if rows == 0 || rows > s.rows || row_loss.rows < rows || row_loss.cols != 1 {
        return Err(Error::shape(format!(
            "loss of {rows} rows of {} (row losses {} × {})",
            s.rows, row_loss.rows, row_loss.cols
        )));
    }
    let (temperature, alpha) = match kind {
        Loss::Distill { temperature, alpha } => (temperature, alpha),
        _ => (1.0, 1.0),
    };
    let hard = matches!(kind, Loss::Distill { .. }) && alpha < 1.0;
    match labels {
        Some(l) if l.size() < rows as u64 * 4 => {
            return Err(Error::shape(format!(
                "loss: {} labels for {rows} rows",
                l.size() / 4
            )));
        }
        None if hard => {
            return Err(Error::invalid(
                "the hard-label loss (alpha < 1) needs labels",
            ));
        }
        _ => {}
    }
    let dispatch = K_LOSS
        .launch(gpu)
        .label(format!("train loss {kind:?} {rows}×{}", s.cols))
        .template(&[REDUCE, LOSS], &vars(&kind.flags()))
        .params(&LossParams {
            rows: rows as u32,
            cap: u32_of(s.rows, "loss rows")?,
            cols: u32_of(s.cols, "loss columns")?,
            stride: s.stride() as u32,
            temperature,
            alpha,
            scale: 1.0 / rows as f32,
            _p0: 0,
        })
        .buffers(&[
            Some(&s.buffer),
            Some(&t.buffer),
            labels.filter(|_| hard),
            Some(&grad.buffer),
            Some(&row_loss.buffer),
        ])
        .workgroups(s.rows as u64)
        .build()?;
    Ok(dispatch)
}

/// `norms[slot] = Σ x²` over `x`'s whole buffer (its padding is zero): one tensor's share of
/// the squared gradient norm.
pub fn sum_squares(gpu: &Gpu, x: &Tensor, norms: &wgpu::Buffer, slot: usize) -> Result<Dispatch> {
    need_f32(x, "gradient")?;
    if norms.size() < (slot as u64 + 1) * 4 {
        return Err(Error::shape(format!(
            "gradient norms: slot {slot} of a buffer of {}",
            norms.size() / 4
        )));
    }
    K_SUM_SQUARES
        .launch(gpu)
        .label(format!("train sum of squares {}×{}", x.rows, x.cols))
        .template(&[REDUCE, SUM_SQUARES], &vars(&[]))
        .params(&SumSquaresParams {
            len: u32_of(x.rows * x.stride(), "gradient length")?,
            slot: slot as u32,
            _p0: 0,
            _p1: 0,
        })
        .buffers(&[Some(&x.buffer), Some(norms)])
        .workgroups(1)
        .build()
}

/// The tensors of one parameter under AdamW: the weights, their gradient, the two moments
/// (all of one shape) and an optional fixed mask (a pruned weight stays zero).
pub struct AdamWTensors<'a> {
    /// The master weights, updated in place.
    pub w: &'a Tensor,
    /// Their gradient.
    pub g: &'a Tensor,
    /// First moment.
    pub m: &'a Tensor,
    /// Second moment.
    pub v: &'a Tensor,
    /// 1 where a weight is kept, 0 where pruned.
    pub mask: Option<&'a Tensor>,
}

/// One AdamW step of `t` with the params at `offset` of `params` (rewritten before each
/// step: [`super::AdamW::params`]); `norms` holds the squared gradient norm's shares that
/// clipping sums (`count` of them in the params).
pub fn adamw(
    gpu: &Gpu,
    t: &AdamWTensors<'_>,
    norms: &wgpu::Buffer,
    params: &ParamBuffer,
    offset: u32,
) -> Result<Dispatch> {
    let w = t.w;
    let all = [Some(t.g), Some(t.m), Some(t.v), t.mask];
    for x in all.into_iter().flatten() {
        need_f32(x, "AdamW tensor")?;
        if (x.rows, x.cols) != (w.rows, w.cols) {
            return Err(Error::shape(format!(
                "AdamW: a {} × {} tensor beside {} × {} weights",
                x.rows, x.cols, w.rows, w.cols
            )));
        }
    }
    let len = w.rows * w.stride();
    K_ADAMW
        .launch(gpu)
        .label(format!("train AdamW {}×{}", w.rows, w.cols))
        .template(&[ADAMW], &vars(&[("MASKED", t.mask.is_some() as i64)]))
        .params_at(params, offset)?
        .buffers(&[
            Some(&t.g.buffer),
            Some(norms),
            t.mask.map(|m| &m.buffer),
            Some(&w.buffer),
            Some(&t.m.buffer),
            Some(&t.v.buffer),
        ])
        .workgroups(groups(len))
        .build()
}

/// LayerNorm's backward pass: `dv` (the gradient of the row `v` the forward pass normalised
/// with `norm`, i.e. the input plus the residual) from the output's gradient `dy`, and `dyx`
/// = `dy · x̂` per element, whose column sums are γ's gradient (β's are `dy`'s column sums:
/// [`col_sum`]). RMSNorm is not built yet.
pub fn norm_grad(
    gpu: &Gpu,
    norm: &Norm,
    v: &Tensor,
    dy: &Tensor,
    dv: &Tensor,
    dyx: &Tensor,
) -> Result<Dispatch> {
    if norm.rms {
        return Err(Error::invalid("the RMSNorm backward pass is not built yet"));
    }
    for (t, what) in [
        (v, "norm input"),
        (dy, "norm output gradient"),
        (dv, "norm input gradient"),
        (dyx, "dy·x̂"),
    ] {
        need_f32(t, what)?;
        if (t.rows, t.cols) != (v.rows, norm.cols) {
            return Err(Error::shape(format!(
                "norm gradient: {what} is {} × {}, the norm {} wide over {} rows",
                t.rows, t.cols, norm.cols, v.rows
            )));
        }
    }
    K_NORM_GRAD
        .launch(gpu)
        .label(format!("train norm gradient {}×{}", v.rows, v.cols))
        .template(&[REDUCE, NORM_GRAD], &vars(&[]))
        .params(&NormParams {
            rows: u32_of(v.rows, "norm rows")?,
            cols: v.cols as u32,
            stride: v.stride() as u32,
            _p0: 0,
            eps: norm.eps,
            _p1: 0,
            _p2: 0,
            _p3: 0,
        })
        .buffers(&[
            Some(&v.buffer),
            Some(&norm.gamma),
            Some(&dy.buffer),
            Some(&dv.buffer),
            Some(&dyx.buffer),
        ])
        .workgroups(v.rows as u64)
        .build()
}

/// The backward pass of `model::ops::pool`: `dx` (token rows, shaped as the pooled input `x`)
/// from the gradient `dy` of the pooled, optionally normalised, vectors; `tokens` (the
/// token rows, `.w` the mask) as the forward pass had them.
#[allow(clippy::too_many_arguments)]
pub fn pool_grad(
    gpu: &Gpu,
    x: &Tensor,
    tokens: Option<&wgpu::Buffer>,
    seq: usize,
    pooling: Pooling,
    normalize: bool,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    for (t, what) in [
        (x, "pool input"),
        (dy, "pooled gradient"),
        (dx, "pool input gradient"),
    ] {
        need_f32(t, what)?;
    }
    if seq == 0
        || !x.rows.is_multiple_of(seq)
        || (dy.rows, dy.cols) != (x.rows / seq, x.cols)
        || (dx.rows, dx.cols) != (x.rows, x.cols)
    {
        return Err(Error::shape(format!(
            "pooling gradient: {} × {} pooled in sequences of {seq}, gradient {} × {}, into {} × {}",
            x.rows, x.cols, dy.rows, dy.cols, dx.rows, dx.cols
        )));
    }
    if let Some(t) = tokens
        && t.size() < (x.rows * 16) as u64
    {
        return Err(Error::shape(format!(
            "pooling gradient: token buffer holds {} rows, needs {}",
            t.size() / 16,
            x.rows
        )));
    }
    let constants = [
        ("HAS_MASK", tokens.is_some() as u8 as f64),
        ("CLS", (pooling == Pooling::Cls) as u8 as f64),
        ("NORMALIZE", normalize as u8 as f64),
    ];
    K_POOL_GRAD
        .launch(gpu)
        .label(format!("train pool gradient {}×{}", dy.rows, dy.cols))
        .template(&[REDUCE, POOL_GRAD], &vars(&[]))
        .constants(&constants)
        .params(&PoolParams {
            batch: u32_of(dy.rows, "pooled rows")?,
            seq: seq as u32,
            cols: x.cols as u32,
            in_stride: x.stride() as u32,
            out_stride: dy.stride() as u32,
            _p0: 0,
            _p1: 0,
            _p2: 0,
        })
        .buffers(&[Some(&x.buffer), tokens, Some(&dy.buffer), Some(&dx.buffer)])
        .workgroups(dy.rows as u64)
        .build()
}

/// The attention probabilities and score gradients that the two attention backward kernels
/// pass between them: `batch · heads · seq²` f32 each.
pub struct AttentionScratch {
    probs: wgpu::Buffer,
    dscores: wgpu::Buffer,
    len: usize,
}

impl AttentionScratch {
    /// Scratch for `batch` sequences of `seq` tokens and `heads` heads (checked against the
    /// device's binding limit: a smaller micro-batch fits where this does not).
    pub fn new(gpu: &Gpu, batch: usize, seq: usize, heads: usize) -> Result<Self> {
        let len = batch
            .checked_mul(heads)
            .and_then(|v| v.checked_mul(seq))
            .and_then(|v| v.checked_mul(seq))
            .ok_or_else(|| Error::shape("attention scratch size overflows"))?;
        let what = format!("attention backward scratch ({batch} × {heads} × {seq}² f32)");
        gpu.check_binding(&what, len as u64 * 4)?;
        Ok(AttentionScratch {
            probs: gpu.storage("attention probabilities", len as u64 * 4)?,
            dscores: gpu.storage("attention score gradients", len as u64 * 4)?,
            len,
        })
    }
}

/// The backward pass of `model::ops::attention`: `dqkv` (shaped as the fused `qkv`, its Q,
/// K and V column blocks) from the output's gradient `dout`, for `seq`-token sequences of
/// `heads` heads masked by `tokens` (`.w`), through `scratch`. Two dispatches: queries,
/// then keys.
#[allow(clippy::too_many_arguments)]
pub fn attention_grad(
    gpu: &Gpu,
    qkv: &Tensor,
    tokens: &wgpu::Buffer,
    seq: usize,
    heads: usize,
    dout: &Tensor,
    scratch: &AttentionScratch,
    dqkv: &Tensor,
) -> Result<Vec<Dispatch>> {
    for (t, what) in [
        (qkv, "QKV"),
        (dout, "attention output gradient"),
        (dqkv, "QKV gradient"),
    ] {
        need_f32(t, what)?;
    }
    let hidden = dout.cols;
    let shaped = heads > 0
        && hidden.is_multiple_of(heads)
        && seq > 0
        && seq <= MAX_SEQ
        && qkv.rows.is_multiple_of(seq)
        && qkv.cols == 3 * hidden
        && (dqkv.rows, dqkv.cols) == (qkv.rows, qkv.cols)
        && dout.rows == qkv.rows;
    if !shaped {
        return Err(Error::shape(format!(
            "attention gradient: QKV {} × {}, output gradient {} × {}, QKV gradient {} × {}, \
             {heads} heads, sequences of {seq} (at most {MAX_SEQ})",
            qkv.rows, qkv.cols, dout.rows, dout.cols, dqkv.rows, dqkv.cols
        )));
    }
    if tokens.size() < (qkv.rows * 16) as u64 {
        return Err(Error::shape(format!(
            "attention gradient: token buffer holds {} rows, needs {}",
            tokens.size() / 16,
            qkv.rows
        )));
    }
    let need = qkv.rows / seq * heads * seq * seq;
    if scratch.len < need {
        return Err(Error::shape(format!(
            "attention gradient: scratch of {} for {need} scores",
            scratch.len
        )));
    }
    let d = hidden / heads;
    let params = AttentionParams {
        rows: u32_of(qkv.rows, "attention rows")?,
        seq: seq as u32,
        heads: heads as u32,
        head_dim: d as u32,
        hidden: hidden as u32,
        qkv_stride: qkv.stride() as u32,
        out_stride: dout.stride() as u32,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let groups = (qkv.rows * heads) as u64;
    let mut out = Vec::new();
    for (k, queries) in [(&K_ATTENTION_GRAD_Q, 1), (&K_ATTENTION_GRAD_K, 0)] {
        let v = [
            ("WG", ATTENTION_WG),
            ("MAXS", MAX_SEQ as i64),
            ("QUERIES", queries),
        ];
        out.push(
            k.launch(gpu)
                .label(format!("train {} {}×{heads}×{d}", k.name, qkv.rows))
                .template(&[REDUCE, ATTENTION_GRAD], &v)
                .params(&params)
                .buffers(&[
                    Some(&qkv.buffer),
                    Some(tokens),
                    Some(&dout.buffer),
                    Some(&scratch.probs),
                    Some(&scratch.dscores),
                    Some(&dqkv.buffer),
                ])
                .workgroups(groups)
                .build()?,
        );
    }
    Ok(out)
}

/// Every variant of the training kernels, as (pipeline name, WGSL or the template error),
/// for the offline validation test.
pub fn shader_variants() -> Vec<(String, Result<String>)> {
    let expand = |name: String, parts: &[&str], v: Vec<(&'static str, i64)>| {
        (name, crate::gpu::wgsl::expand(&parts.join("\n"), &v))
    };
    let mut out = vec![
        expand(K_GEMM.name.into(), &[GEMM], vec![]),
        expand(K_ACT_GRAD.name.into(), &[ACTIVATION, ACT_GRAD], vars(&[])),
        expand(K_COL_SUM.name.into(), &[COL_SUM], vars(&[])),
        expand(K_SUM_SQUARES.name.into(), &[REDUCE, SUM_SQUARES], vars(&[])),
        expand(K_NORM_GRAD.name.into(), &[REDUCE, NORM_GRAD], vars(&[])),
        expand(K_POOL_GRAD.name.into(), &[REDUCE, POOL_GRAD], vars(&[])),
    ];
    for (name, queries) in [(K_ATTENTION_GRAD_Q.name, 1), (K_ATTENTION_GRAD_K.name, 0)] {
        let v = vec![
            ("WG", ATTENTION_WG),
            ("MAXS", MAX_SEQ as i64),
            ("QUERIES", queries),
        ];
        out.push(expand(name.into(), &[REDUCE, ATTENTION_GRAD], v));
    }
    for kind in [
        Loss::Distill {
            temperature: 1.0,
            alpha: 1.0,
        },
        Loss::Mse,
        Loss::Cosine,
    ] {
        out.push(expand(
            format!("{}_{kind:?}", K_LOSS.name),
            &[REDUCE, LOSS],
            vars(&kind.flags()),
        ));
    }
    for masked in [0, 1] {
        out.push(expand(
            format!("{}_MASKED{masked}", K_ADAMW.name),
            &[ADAMW],
            vars(&[("MASKED", masked)]),
        ));
    }
    out
}
