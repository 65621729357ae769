//! The dense path for many activation rows: the sparse weights are written out dense on the
//! device (`shaders/sparse/sparse_densify.wgsl`), then the dense GEMM multiplies (tensor cores where
//! the adapter has them). The sparse kernels keep x rows in registers eight at a time and walk
//! the sparse structure again for every tile of eight, so their cost grows with m, while the
//! dense copy costs one write of `n × k` f16 values per pass whatever m is (H200, MiniLM with
//! 2:4 int4 weights at 8192 rows: 130 ms through the sparse kernel for one FFN layer).
//! Storage stays sparse: the copy lives in a scratch buffer a model shares between its layers.

use super::shader::{self, Family};
use super::{SparseLinear, ValueType};
use crate::error::Result;
use crate::formats::WeightFormat;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::matmul::{KernelChoice, Linear};
use crate::tensor::Tensor;

const DENSIFY: &str = include_str!("../../../shaders/sparse/sparse_densify.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DensifyParams {
    n: u32,
    k: u32,
    row_blocks: u32,
    total: u32,
    fa: u32,
    fb: u32,
    fc: u32,
    pad: u32,
}

const DENSIFY_KERNEL: Kernel<DensifyParams> = Kernel::new(
    "sparse_densify",
    &[
        Read("ptrs"),
        Read("idx"),
        Read("vals"),
        Read("scales"),
        ReadWrite("dense"),
    ],
);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(DENSIFY_KERNEL.name, DENSIFY, "Params", DensifyParams;
        n, k, row_blocks, total, fa, fb, fc, pad)
}

impl SparseLinear {
    /// Format of the dense copy: f32 for f32 values (exact), else f16 (exact for f16 values;
    /// int8 and int4 values times their scales are rounded to f16).
    pub fn dense_format(&self) -> WeightFormat {
        dense_format(self.vt)
    }

    /// Bytes of the dense copy the dense path writes.
    pub fn dense_bytes(&self) -> u64 {
        (self.n * self.k.div_ceil(self.dense_format().block_k()) * 16) as u64
    }

    /// Whether [`SparsePath::Auto`](super::SparsePath::Auto) takes the dense path for `m`
    /// activation rows.
    pub fn densifies(&self, m: usize) -> bool {
        m >= self.dense_from
    }

    /// The dispatch that writes the dense copy into `out` (at least [`Self::dense_bytes`]).
    pub fn densify(&self, gpu: &Gpu, out: &wgpu::Buffer) -> Result<Dispatch> {
        let format = self.dense_format();
        let row_blocks = self.k.div_ceil(format.block_k());
        let total = self.n as u64 * row_blocks as u64;
        let total = u32::try_from(total).map_err(|_| {
            crate::Error::Input(crate::InputError::TooLarge {
                what: format!("dense copy of {} × {} weights", self.n, self.k),
                bytes: total * 16,
                limit_name: "u32 block index",
                limit: u32::MAX as u64,
            })
        })?;
        let params = DensifyParams {
            n: self.n as u32,
            k: self.k as u32,
            row_blocks: row_blocks as u32,
            total,
            fa: self.params[0],
            fb: self.params[1],
            fc: self.params[2],
            pad: 0,
        };
        let vt = self.vt;
        let vars = densify_vars(self.family, vt, self.r, &self.vars);
        let name = densify_name(&vars);
        DENSIFY_KERNEL
            .launch(gpu)
            .label(format!("densify {} {}×{}", self.format, self.n, self.k))
            .shader(name, move || densify_source(vt, &vars))
            .trusted()
            .params(&params)
            .buffers(&[
                Some(&self.meta),
                Some(&self.idx),
                Some(&self.vals),
                self.scales.as_ref(),
                Some(out),
            ])
            .workgroups(total.div_ceil(64) as u64)
            .build()
    }

    /// The dense path: the copy into `scratch` (a new buffer when None), then the dense GEMM.
    pub fn plan_dense(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        scratch: Option<&wgpu::Buffer>,
    ) -> Result<Vec<Dispatch>> {
        crate::matmul::validate_io(self.n, self.k, x, y)?;
        let bytes = self.dense_bytes();
        gpu.check_binding("dense copy of sparse weights", bytes)?;
        let owned;
        let buffer = match scratch {
            Some(b) if b.size() >= bytes => b,
            _ => {
                owned = gpu.storage("dense copy of sparse weights", bytes)?;
                &owned
            }
        };
        let mut dispatches = vec![self.densify(gpu, buffer)?];
        let dense = Linear::over_buffer(
            gpu,
            buffer.clone(),
            self.dense_format(),
            (self.n, self.k),
            self.bias.clone(),
        )?;
        dispatches.extend(dense.plan(gpu, x, y, KernelChoice::Auto)?);
        Ok(dispatches)
    }
}

/// Format of the dense copy of `vt` values: f32 for f32 (exact), else f16.
fn dense_format(vt: ValueType) -> WeightFormat {
    match vt {
        ValueType::F32 => WeightFormat::F32,
        _ => WeightFormat::F16,
    }
}

/// Template variables of the densify kernel for `family` with `vt` values, `r` rows per item
/// and the format's variables `fvars` (see [`shader::csr_vars`], [`shader::bsr_vars`]).
fn densify_vars(
    family: Family,
    vt: ValueType,
    r: usize,
    fvars: &[(&'static str, i64)],
) -> Vec<(&'static str, i64)> {
    let format = dense_format(vt);
    let flag = |b: bool| b as i64;
    let get = |name: &str| fvars.iter().find(|(n, _)| *n == name).map_or(0, |v| v.1);
    let mut vars = vec![
        ("CSR", flag(family == Family::Csr)),
        ("BSR", flag(family == Family::Bsr)),
        ("TWO_FOUR", flag(family == Family::TwoFour)),
        ("IDX16", get("IDX16")),
        ("CPB", format.block_k() as i64),
        ("OUT_F16", flag(format == WeightFormat::F16)),
    ];
    vars.extend(shader::value_vars(vt));
    if family == Family::Bsr {
        vars.extend([
            ("R", r as i64),
            ("BC", get("BC")),
            ("RV", get("RV")),
            ("BV", get("BV")),
        ]);
    }
    vars
}

/// Pipeline name of a densify variant.
fn densify_name(vars: &[(&str, i64)]) -> String {
    let v: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
    format!("sparse_densify{v}")
}

/// The WGSL of the densify kernel for `vt` values.
fn densify_source(vt: ValueType, vars: &[(&str, i64)]) -> Result<String> {
    let v_src = shader::value_file(vt);
    crate::gpu::wgsl::expand(&format!("{v_src}\n{DENSIFY}"), vars)
}

/// The densify variants for `vt` values over `formats` (family, rows per item, format
/// variables), as (pipeline name, WGSL or the template error); several formats may share one.
pub(super) fn variants(
    vt: ValueType,
    formats: &[shader::FormatVars],
) -> Vec<(String, Result<String>)> {
    let mut out: Vec<(String, Result<String>)> = Vec::new();
    for (family, r, fvars) in formats {
        let vars = densify_vars(*family, vt, *r, fvars);
        let name = densify_name(&vars);
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, densify_source(vt, &vars)));
        }
    }
    out
}
