//! Sparse weights on the GPU: `y = x · Wᵀ (+ bias)` with `W` in CSR, BSR or 2:4, through the
//! same `new` / `forward` / `plan` interface as the dense [`crate::matmul::Linear`].
//!
//! All three formats share one kernel core (`shaders/sparse/sparse_rows.wgsl`): the weights are cut
//! into *items* (a CSR row, a BSR block row, a 2:4 row) made of *units* that the lanes of a
//! team read side by side; consecutive items are grouped into *bins* of about equal work, one
//! workgroup each, and an item longer than a team can walk quickly gets a whole workgroup to
//! itself (see [`bins`]). Up to eight activation rows are kept in registers at
//! once (SpMV for `m ≤ 8`); larger `m` runs tiles of eight rows in the same dispatch (SpMM),
//! whose weight reads after the first tile come from the cache. CSR with two or more rows per
//! tile first transposes x per tile (`xt.rs`), so that the activations a non-zero needs are
//! adjacent.
//!
//! Fast and portable paths: [`SparsePath::Subgroup`] reduces with `subgroupAdd` (needs
//! `SUBGROUP`); [`SparsePath::Workgroup`] reduces through workgroup memory and runs anywhere.
//! Values are unpacked from `u32` words, so f16 values never need `SHADER_F16` (f16
//! *activations* do, as for the dense kernels).

mod densify;
mod shader;
mod tuning;
mod xt;

pub use super::SparseWeights;
pub use shader::Family;
pub use tuning::{BinShape, SparseTuning, bins};

use super::ValueType;
use crate::error::DeviceError;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel, record_pass};
use crate::tensor::Tensor;

/// How a sparse plan reduces its partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SparsePath {
    /// Subgroups where the adapter has them, else workgroup memory; for many rows
    /// ([`SparseLinear::densifies`]) the dense path.
    #[default]
    Auto,
    /// Like `Auto` but never the dense path: one kernel whatever the number of rows, so a
    /// row's result does not depend on the rows around it (as the scheduler needs).
    Kernel,
    /// `subgroupAdd` (an error without `SUBGROUP`).
    Subgroup,
    /// Workgroup-memory trees: the portable fallback.
    Workgroup,
    /// The weights written out dense, then the dense GEMM (what `Auto` does for many rows,
    /// see [`SparseLinear::densifies`]).
    Dense,
}

/// Invocations per workgroup.
const WG: u32 = 256;
/// Largest number of partial sums a lane keeps (R × MT).
const MAX_ACC: usize = 32;

/// A linear layer with sparse weights on the GPU.
pub struct SparseLinear {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Format name ([`SparseWeights::name`]).
    pub format: String,
    /// Bytes a forward pass reads to use every weight once (metadata, indices, values,
    /// scales, as uploaded).
    pub weight_bytes: u64,
    family: Family,
    vt: ValueType,
    /// Output rows per item.
    r: usize,
    transpose_x_from: usize,
    dense_from: usize,
    unroll: usize,
    stage_x: bool,
    items: usize,
    bins: usize,
    bins_off: usize,
    params: [u32; 3],
    vars: Vec<(&'static str, i64)>,
    meta: wgpu::Buffer,
    idx: wgpu::Buffer,
    vals: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
    bias: Option<wgpu::Buffer>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k4: u32,
    m: u32,
    m_tiles: u32,
    bins: u32,
    x_stride4: u32,
    y_stride: u32,
    bins_off: u32,
    items: u32,
    fa: u32,
    fb: u32,
    fc: u32,
}

/// `v` zero-padded to a multiple of `words` words (at least one multiple).
fn padded(v: &[u32], words: usize) -> Vec<u32> {
    let mut out = v.to_vec();
    out.resize(v.len().next_multiple_of(words).max(words), 0);
    out
}

/// Activation rows from which the dense path beats the sparse kernel, by the H200 sweeps at
/// 8192² (BENCHMARKS.md): 2:4 and short f16/f32 BSR blocks (whose values and 32 partial sums
/// per lane crowd the registers) lose from 8 rows on (2:4 f16 at 8 rows: 300 µs, dense path
/// 149); CSR and the other BSR blocks keep up while density × rows stays small (CSR at 90 %
/// won through 32 rows, at 50 % lost at 32; 4 × 32 int4 at 90 % 256 µs against 363 at 32).
fn default_dense_from(w: &SparseWeights) -> usize {
    let (n, k) = (w.n(), w.k());
    let (stored, per_density) = match w {
        SparseWeights::TwoFour(_) => return 8,
        SparseWeights::Bsr(b) if b.block_rows < 8 && b.value_type.bits() >= 16 => return 8,
        SparseWeights::Bsr(b) => (b.block_col.len() * b.block_rows * b.block_cols, 4.0),
        SparseWeights::Csr(c) => (c.nnz(), 8.0),
    };
    if stored == 0 {
        return usize::MAX;
    }
    let density = stored as f64 / (n * k) as f64;
    ((per_density / density).ceil() as usize).max(8)
}

impl SparseLinear {
    /// Uploads `weights` (and an optional `bias` of length `n`). Unlike the dense layer, the
    /// arrays are not split across bindings: an array larger than one storage binding is an
    /// [`crate::InputError::TooLarge`]. BSR needs blocks of at most 16 rows whose rows are
    /// whole 16-byte vectors (block columns a multiple of 128 / bits, at most 128), else
    /// [`crate::InputError::Invalid`].
    pub fn new(gpu: &Gpu, weights: &SparseWeights, bias: Option<&[f32]>) -> Result<Self> {
        Self::with_tuning(
            gpu,
            weights,
            bias,
            SparseTuning::from_config(&gpu.config.sparse),
        )
    }

    /// Like [`SparseLinear::new`], with explicit tuning.
    pub fn with_tuning(
        gpu: &Gpu,
        weights: &SparseWeights,
        bias: Option<&[f32]>,
        tuning: SparseTuning,
    ) -> Result<Self> {
        let (n, k) = (weights.n(), weights.k());
        if let Some(b) = bias
            && b.len() != n
        {
            return Err(Error::shape(format!(
                "bias has {} values, the layer has {n} outputs",
                b.len()
            )));
        }
        let stride = n.next_multiple_of(4);
        let vt = weights.value_type();
        // (family, rows per item, stored items, row pointers, per-item units, index words,
        //  value words, scales, format params, template variables)
        let (family, r, items, row_ptr, units, idx, vals, scales, params, vars) = match weights {
            SparseWeights::Csr(c) => {
                let nnz = c.nnz();
                let iw = nnz.div_ceil(8) * c.index_bits() / 4;
                let vw = nnz.div_ceil(8) * vt.bits() / 4;
                let units: Vec<usize> = (0..c.n)
                    .map(|i| {
                        let (a, b) = (c.row_ptr[i] as usize, c.row_ptr[i + 1] as usize);
                        if a == b { 0 } else { b.div_ceil(8) - a / 8 }
                    })
                    .collect();
                let i16 = c.index_bits() == 16;
                (
                    Family::Csr,
                    1,
                    c.n,
                    c.row_ptr.clone(),
                    units,
                    padded(&c.col_idx, iw.max(4)),
                    padded(&c.values, vw.max(4)),
                    Vec::new(),
                    [0, 0, 0],
                    shader::csr_vars(i16),
                )
            }
            SparseWeights::Bsr(b) => {
                super::check_kernel_block(b.block_rows, b.block_cols, vt)?;
                let units: Vec<usize> = b
                    .row_ptr
                    .windows(2)
                    .map(|w| (w[1] - w[0]) as usize)
                    .collect();
                (
                    Family::Bsr,
                    b.block_rows,
                    b.row_ptr.len() - 1,
                    b.row_ptr.clone(),
                    units,
                    padded(&b.block_col, 4),
                    padded(&b.values, 4),
                    b.scales.clone(),
                    [0, 0, 0],
                    shader::bsr_vars(b.block_rows, b.block_cols, vt),
                )
            }
            SparseWeights::TwoFour(t) => {
                let upr = t.row_value_words() / 4;
                let default = if vt == ValueType::F16 { 8 } else { 4 };
                let r = tuning.two_four_rows.unwrap_or(default).clamp(1, 8);
                (
                    Family::TwoFour,
                    r,
                    t.n.div_ceil(r),
                    Vec::new(),
                    vec![upr; t.n.div_ceil(r)],
                    padded(&t.meta, 4),
                    padded(&t.values, 4),
                    t.scales.clone(),
                    [
                        upr as u32,
                        t.row_meta_words() as u32,
                        t.scale_groups() as u32,
                    ],
                    Vec::new(),
                )
            }
        };
        let all_items = stride.div_ceil(r);
        let bin_words = bins(
            units
                .iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(all_items),
            tuning.bins,
        );
        let mut meta = row_ptr;
        let bins_off = meta.len();
        meta.extend_from_slice(&bin_words);
        let weight_bytes = 4 * (meta.len() + idx.len() + vals.len() + scales.len()) as u64;
        let bias = bias.map(|b| gpu.upload("sparse bias", b)).transpose()?;
        Ok(SparseLinear {
            n,
            k,
            format: weights.name(),
            weight_bytes,
            family,
            vt,
            r,
            transpose_x_from: tuning.transpose_x_from,
            unroll: tuning.unroll.clamp(1, 8),
            stage_x: tuning.stage_x,
            dense_from: tuning
                .dense_from
                .unwrap_or_else(|| default_dense_from(weights)),
            items,
            bins: bin_words.len() / 2,
            bins_off,
            params,
            vars,
            meta: gpu.upload("sparse meta", &meta)?,
            idx: gpu.upload("sparse indices", &idx)?,
            vals: gpu.upload("sparse values", &vals)?,
            scales: if scales.is_empty() {
                None
            } else {
                Some(gpu.upload("sparse scales", &scales)?)
            },
            bias,
        })
    }

    /// Computes `x · Wᵀ (+ bias)` into a new tensor, waiting for the result.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let y = Tensor::empty(gpu, x.rows, self.n, x.dtype)?;
        let plan = self.plan(gpu, x, &y, SparsePath::Auto)?;
        let mut enc = gpu.encoder("sparse linear");
        record_pass(&mut enc, &plan, None);
        gpu.submit_and_wait(enc)?;
        Ok(y)
    }

    /// Whether the subgroup path can run on `gpu` (subgroups, and at most 64 per workgroup).
    pub fn subgroups_usable(gpu: &Gpu) -> bool {
        gpu.caps.subgroups && WG / gpu.caps.subgroup_min.max(1) <= 64
    }

    /// Activation rows one workgroup keeps in registers for `m` rows.
    fn tile_rows(&self, m: usize) -> usize {
        m.min(8).min((MAX_ACC / self.r).max(1))
    }

    /// Validates shapes and builds the dispatches that write `y = x · Wᵀ (+ bias)`.
    pub fn plan(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        path: SparsePath,
    ) -> Result<Vec<Dispatch>> {
        self.plan_in(gpu, x, y, path, None)
    }

    /// [`Self::plan`], the dense path writing its copy of the weights into `scratch` when it
    /// is given and large enough ([`Self::dense_bytes`]): layers run one after another can
    /// share one.
    pub fn plan_in(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        path: SparsePath,
        scratch: Option<&wgpu::Buffer>,
    ) -> Result<Vec<Dispatch>> {
        crate::matmul::validate_io(self.n, self.k, x, y)?;
        let dense = match path {
            SparsePath::Dense => true,
            SparsePath::Auto => self.densifies(x.rows),
            _ => false,
        };
        if dense {
            return self.plan_dense(gpu, x, y, scratch);
        }
        let sg = match path {
            SparsePath::Auto | SparsePath::Kernel | SparsePath::Dense => {
                Self::subgroups_usable(gpu)
            }
            SparsePath::Workgroup => false,
            SparsePath::Subgroup => {
                if !Self::subgroups_usable(gpu) {
                    return Err(Error::Device(DeviceError::MissingFeature {
                        adapter: gpu.caps.name.clone(),
                        feature: "SUBGROUP (with at most 64 subgroups per workgroup)".into(),
                    }));
                }
                true
            }
        };
        let m = x.rows;
        let mt = self.tile_rows(m);
        let m_tiles = m.div_ceil(mt);
        let total = self.bins as u64 * m_tiles as u64;
        if total > u32::MAX as u64 {
            return Err(Error::Input(InputError::TooLarge {
                what: format!("sparse grid of {total} workgroups"),
                bytes: total,
                limit_name: "u32 workgroup index",
                limit: u32::MAX as u64,
            }));
        }
        let params = Params {
            n: self.n as u32,
            k4: self.k.div_ceil(4) as u32,
            m: m as u32,
            m_tiles: m_tiles as u32,
            bins: self.bins as u32,
            x_stride4: (x.stride() / 4) as u32,
            y_stride: y.stride() as u32,
            bins_off: self.bins_off as u32,
            items: self.items as u32,
            fa: self.params[0],
            fb: self.params[1],
            fc: self.params[2],
        };
        let transpose = self.family == Family::Csr && mt >= self.transpose_x_from;
        let mut dispatches = Vec::new();
        let tiles;
        let x_bound = if transpose {
            let (buffer, d) = xt::transpose_tiles(gpu, x, mt)?;
            dispatches.push(d);
            tiles = buffer;
            &tiles
        } else {
            &x.buffer
        };
        let act = x.dtype;
        let (vars, constants) = self.variant(gpu, mt, sg, transpose);
        let name = shader::variant_name(self.family, self.vt, act, &vars);
        let (family, vt) = (self.family, self.vt);
        dispatches.push(
            SPARSE
                .launch(gpu)
                .label(format!("{} {m}×{}×{}", self.format, self.n, self.k))
                .shader(name, move || shader::source(family, vt, act, &vars))
                .constants(&constants)
                .trusted()
                .params(&params)
                .buffers(&[
                    Some(x_bound),
                    Some(&self.meta),
                    Some(&self.idx),
                    Some(&self.vals),
                    self.scales.as_ref(),
                    self.bias.as_ref(),
                    Some(&y.buffer),
                ])
                .workgroups(total)
                .build()?,
        );
        Ok(dispatches)
    }

    /// Floats of x staged in workgroup memory (0: none), on request only
    /// ([`SparseTuning::stage_x`]): CSR with one activation row per tile whose x fits beside the
    /// reduction array. On the H200 at 8192² it lost with 8 rows per bin (90 %: 27.6 µs
    /// against 16.7; 99 %: 20.9 against 7.6, every workgroup reading all of x) and won with
    /// 32 rows per bin at 90 % (13.3 µs); other densities are not measured yet.
    fn staged_x(&self, gpu: &Gpu, mt: usize, sg: bool, wg: u32, transpose: bool) -> usize {
        let len = self.k.next_multiple_of(4);
        let red = if sg { 64 } else { wg as usize } * self.r * mt * 4;
        let on = self.stage_x;
        let fits = len * 4 + red + 64 <= gpu.caps.workgroup_storage as usize;
        if self.family == Family::Csr && mt == 1 && !transpose && fits && on {
            len
        } else {
            0
        }
    }

    /// Workgroup size of the portable path: its reduction array must fit 16 KiB.
    fn nosg_workgroup(&self, gpu: &Gpu, mt: usize) -> u32 {
        let acc = (self.r * mt) as u32;
        let budget = gpu.caps.workgroup_storage.min(16 * 1024) / (4 * acc);
        let mut wg = WG.min(gpu.caps.max_invocations);
        while wg > 32 && wg > budget {
            wg /= 2;
        }
        wg
    }

    /// The template variables and override constants of the variant for tiles of `mt` rows.
    #[allow(clippy::type_complexity)]
    fn variant(
        &self,
        gpu: &Gpu,
        mt: usize,
        sg: bool,
        transpose: bool,
    ) -> (Vec<(&'static str, i64)>, Vec<(&'static str, f64)>) {
        let u = self.unroll as i64;
        let xsel = gpu.config.sparse.x_select.unwrap_or(true);
        let mut vars = self.vars.clone();
        vars.extend(shader::core_vars(xsel, mt, transpose, self.r, u, sg));
        let wg = if sg {
            WG.min(gpu.caps.max_invocations)
        } else {
            self.nosg_workgroup(gpu, mt)
        };
        let xsm = self.staged_x(gpu, mt, sg, wg, transpose);
        vars.push(("XSM", xsm as i64));
        let mut constants = vec![
            ("HAS_BIAS", self.bias.is_some() as u8 as f64),
            ("WG", wg as f64),
        ];
        if !sg {
            constants.push(("TEAM", 32f64.min(wg as f64)));
        }
        (vars, constants)
    }
}

/// Every sparse kernel: activations (or their transposed tiles), item pointers and bins,
/// indices, values, int4 scales, bias, output.
const SPARSE: Kernel<Params> = Kernel::new(
    "sparse",
    &[
        Read("x"),
        Read("ptrs"),
        Read("idx"),
        Read("vals"),
        Read("scales"),
        Read("bias"),
        ReadWrite("y"),
    ],
);

/// The params layouts of the sparse family, for the layout test.
#[cfg(test)]
pub(crate) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    vec![
        params_layout!(SPARSE.name, shader::ROWS, "Params", Params;
            n, k4, m, m_tiles, bins, x_stride4, y_stride, bins_off, items, fa, fb, fc),
        xt::params_layout(),
        densify::params_layout(),
    ]
}

/// Every WGSL module the sparse kernels can ask for, as (pipeline name, WGSL or the template
/// error), for validating them offline (see `tests/shader_variants.rs`).
pub fn shader_variants() -> Vec<(String, Result<String>)> {
    let mut out = shader::variants();
    for vt in [
        ValueType::F32,
        ValueType::F16,
        ValueType::Int8,
        ValueType::Int4,
    ] {
        // The dense copy does not depend on the activation type.
        out.extend(densify::variants(vt, &shader::listed_formats(vt)));
    }
    for act in [crate::tensor::ActDType::F32, crate::tensor::ActDType::F16] {
        out.push((xt::variant_name(act), Ok(xt::source(act))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::{Bsr, Csr, TwoFour};

    /// `n × k` with one non-zero in every `every`-th place.
    fn spaced(n: usize, k: usize, every: usize) -> Vec<f32> {
        (0..n * k)
            .map(|i| if i % every == 0 { 1.0 } else { 0.0 })
            .collect()
    }

    #[test]
    fn dense_path_threshold_follows_format_and_density() {
        let (n, k) = (64, 256);
        let tf = TwoFour::from_dense(&spaced(n, k, 4), n, k, ValueType::Int4).unwrap();
        assert_eq!(default_dense_from(&tf.into()), 8);
        // Short f16 blocks: from 8 rows whatever the density.
        let w = spaced(n, k, 2);
        let short = Bsr::from_dense(&w, n, k, 4, 32, ValueType::F16).unwrap();
        assert_eq!(default_dense_from(&short.into()), 8);
        // Short int4 blocks, all stored (density 1): 4 / 1 → at least 8.
        let int4 = Bsr::from_dense(&w, n, k, 4, 32, ValueType::Int4).unwrap();
        assert_eq!(default_dense_from(&int4.into()), 8);
        // CSR at density 1/10: 8 / 0.1 = 80 rows.
        let csr = Csr::from_dense(&spaced(n, k, 10), n, k, ValueType::F16).unwrap();
        let density = csr.nnz() as f64 / (n * k) as f64;
        let want = (8.0 / density).ceil() as usize;
        assert!((75..=85).contains(&want));
        assert_eq!(default_dense_from(&csr.into()), want);
        // Nothing stored: never.
        let empty = Csr::from_dense(&vec![0.0; n * k], n, k, ValueType::F16).unwrap();
        assert_eq!(default_dense_from(&empty.into()), usize::MAX);
    }
}
