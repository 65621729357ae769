//! WGSL assembly for the `y = x · Wᵀ` family: one kernel body per strategy, one decode file
//! per weight format, one activation file per dtype, glued into a module per variant.

use crate::error::Result;
use crate::formats::WeightFormat;
use crate::gpu::wgsl::expand;
use crate::tensor::ActDType;

pub(super) const LINEAR_IO: &str = include_str!("../../shaders/linear/linear_io.wgsl");
const ACTIVATION: &str = include_str!("../../shaders/shared/activation.wgsl");
const W_F32: &str = include_str!("../../shaders/linear/w_f32.wgsl");
const W_F16: &str = include_str!("../../shaders/linear/w_f16.wgsl");
const W_INT8: &str = include_str!("../../shaders/linear/w_int8.wgsl");
const W_INT4: &str = include_str!("../../shaders/linear/w_int4.wgsl");
const W_INT8G32: &str = include_str!("../../shaders/linear/w_int8g32.wgsl");
const W_INT4M: &str = include_str!("../../shaders/linear/w_int4m.wgsl");
const W_BINARY: &str = include_str!("../../shaders/linear/w_binary.wgsl");
const W_TERNARY: &str = include_str!("../../shaders/linear/w_ternary.wgsl");
const W_TERNARY16: &str = include_str!("../../shaders/linear/w_ternary16.wgsl");
const GEMV_ROWS: &str = include_str!("../../shaders/linear/gemv_rows.wgsl");
const GEMV_SUBGROUP: &str = include_str!("../../shaders/linear/gemv_subgroup.wgsl");
const GEMV_WORKGROUP: &str = include_str!("../../shaders/linear/gemv_workgroup.wgsl");
const GEMM_TILED: &str = include_str!("../../shaders/linear/gemm_tiled.wgsl");
const GEMM_COOP: &str = include_str!("../../shaders/linear/gemm_coop.wgsl");
const GEMM_DP4A: &str = include_str!("../../shaders/linear/gemm_dp4a.wgsl");
pub(super) const QUANT_ROWS: &str = include_str!("../../shaders/linear/quant_rows.wgsl");
const ACT_Q8: &str = include_str!("../../shaders/linear/act_q8.wgsl");
const W_INT8_Q8: &str = include_str!("../../shaders/linear/w_int8_q8.wgsl");
const W_INT4_Q8: &str = include_str!("../../shaders/linear/w_int4_q8.wgsl");
const GEMV_Q8: &str = include_str!("../../shaders/linear/gemv_q8.wgsl");

/// The kernel strategies of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Strategy {
    /// One subgroup per weight row (needs `SUBGROUP`); for 1..=8 activation rows.
    GemvSubgroup,
    /// A team of invocations per row with a workgroup-memory reduction; for 1..=8 rows.
    GemvWorkgroup,
    /// Tiled through workgroup memory; any number of rows.
    GemmTiled,
    /// Tensor cores: 16×16×16 f16 cooperative matrices, f32 accumulation (needs
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX` and `SHADER_F16`; every weight format but f32).
    GemmCoop,
    /// int8 × int8 → i32 with `dot4I8Packed`, activations quantized per row first (int8
    /// weights; needs the WGSL language feature, polyfilled where the driver lacks it).
    /// Quantizing activations changes the result: only used when asked for.
    GemmDp4a,
    /// Like `GemvSubgroup`, for int8, int4, binary and ternary weights, with activations
    /// quantized to int8 per block (32 values; 64 or 80 for ternary, see `low_bit_q8`) and
    /// `dot4I8Packed` products (needs `SUBGROUP` and that language feature).
    GemvSubgroupQ8,
    /// Like `GemvWorkgroup`, with int8 activations and `dot4I8Packed` as `GemvSubgroupQ8`.
    GemvWorkgroupQ8,
}

impl Strategy {
    /// Short name for keys and reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::GemvSubgroup => "gemv_sg",
            Strategy::GemvWorkgroup => "gemv_wg",
            Strategy::GemmTiled => "gemm",
            Strategy::GemmCoop => "gemm_coop",
            Strategy::GemmDp4a => "gemm_dp4a",
            Strategy::GemvSubgroupQ8 => "gemv_sg_q8",
            Strategy::GemvWorkgroupQ8 => "gemv_wg_q8",
        }
    }

    /// Whether the strategy is a GEMV on activations quantized to int8 per block (int8,
    /// int4, binary and ternary weights).
    pub fn quantizes_activations(self) -> bool {
        matches!(self, Strategy::GemvSubgroupQ8 | Strategy::GemvWorkgroupQ8)
    }

    /// Whether the strategy reduces with subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Strategy::GemvSubgroup | Strategy::GemvSubgroupQ8)
    }

    /// Most activation rows one dispatch handles (`u32::MAX`: no limit).
    pub fn max_rows(self) -> usize {
        match self {
            Strategy::GemmTiled | Strategy::GemmCoop | Strategy::GemmDp4a => usize::MAX,
            _ => 8,
        }
    }
}

/// Unique name of a generated module: its template variables are part of the name.
pub fn variant_name(
    strategy: Strategy,
    format: WeightFormat,
    act: ActDType,
    vars: &[(&str, i64)],
) -> String {
    let w = decoder_name(format);
    let v: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
    format!("linear_{}_{w}_{act:?}{v}", strategy.name())
}

/// The name of `format`'s decoder (`shaders/linear/w_NAME.wgsl`): one per layout, as group
/// sizes and zero points are override constants.
pub(super) fn decoder_name(format: WeightFormat) -> &'static str {
    match format {
        WeightFormat::F32 => "f32",
        WeightFormat::F16 => "f16",
        WeightFormat::Int8 => "int8",
        WeightFormat::Int8G32 => "int8g32",
        WeightFormat::Int4 { .. } => "int4",
        WeightFormat::Int4Min { .. } => "int4m",
        WeightFormat::Binary { .. } => "binary",
        WeightFormat::Ternary { .. } => "ternary",
        WeightFormat::Ternary16 { .. } => "ternary16",
    }
}

/// The override constants of `format`'s decoder: its group size, zero points, means.
pub(super) fn decoder_constants(format: WeightFormat) -> Vec<(&'static str, f64)> {
    let mut c = Vec::new();
    if let (Some(g), true) = (format.group(), format != WeightFormat::Int8G32) {
        c.push(("GROUP", g as f64));
    }
    match format {
        WeightFormat::Int4 { asymmetric, .. } => c.push(("ASYM", asymmetric as u8 as f64)),
        WeightFormat::Binary { mean, .. } => c.push(("MEAN", mean as u8 as f64)),
        _ => {}
    }
    c
}

/// The decoder of `format` (see [`decoder_name`]): `BLOCK_VEC4`, `block_scale_zero(row,
/// blk)`, `decode(wv, j, sz)`, `block_scale(sz)` and `row_scale(row)`, reading `w`,
/// `scales`, `zeros` and `p.groups` of the module it joins. A block's weights are
/// `decode(wv, j, sz) · block_scale(sz) · row_scale(row)`.
pub(super) fn decoder(format: WeightFormat) -> &'static str {
    match format {
        WeightFormat::F32 => W_F32,
        WeightFormat::F16 => W_F16,
        WeightFormat::Int8 => W_INT8,
        WeightFormat::Int8G32 => W_INT8G32,
        WeightFormat::Int4 { .. } => W_INT4,
        WeightFormat::Int4Min { .. } => W_INT4M,
        WeightFormat::Binary { .. } => W_BINARY,
        WeightFormat::Ternary { .. } => W_TERNARY,
        WeightFormat::Ternary16 { .. } => W_TERNARY16,
    }
}

/// The WGSL source of one variant (group size and zero points are override constants;
/// unrolled loop counts are template variables, see [`crate::gpu::wgsl`]).
pub fn source(
    strategy: Strategy,
    format: WeightFormat,
    act: ActDType,
    vars: &[(&str, i64)],
) -> Result<String> {
    // `enable` directives must come first, so the activation file leads. Kernels that read
    // int8 activations (quantized by a first dispatch) bind x as words: act_q8.wgsl.
    let int8_x = strategy.quantizes_activations() || strategy == Strategy::GemmDp4a;
    let act_src = match (act, int8_x) {
        (_, true) => ACT_Q8,
        (act, false) => act.wgsl(),
    };
    let mut w_src = decoder(format).to_string();
    // Binary and ternary weights have a GEMV core of their own on int8 activations.
    let low_bit = super::low_bit_q8::Shape::of(format).filter(|_| strategy.quantizes_activations());
    if strategy.quantizes_activations() {
        w_src.push_str(match format {
            WeightFormat::Int8 => W_INT8_Q8,
            WeightFormat::Int4 { .. } => W_INT4_Q8,
            f => super::low_bit_q8::decoder(f).ok_or_else(|| {
                crate::Error::invalid(format!(
                    "{} weights have no int8-activation kernel",
                    f.name()
                ))
            })?,
        });
    }
    let q8_core = if low_bit.is_some() {
        super::low_bit_q8::GEMV_LOW_BIT_Q8
    } else {
        GEMV_Q8
    };
    let body = match strategy {
        Strategy::GemvSubgroup => format!("{GEMV_ROWS}\n{GEMV_SUBGROUP}"),
        Strategy::GemvWorkgroup => format!("{GEMV_ROWS}\n{GEMV_WORKGROUP}"),
        Strategy::GemmTiled => GEMM_TILED.to_string(),
        Strategy::GemmCoop => GEMM_COOP.to_string(),
        Strategy::GemmDp4a => GEMM_DP4A.to_string(),
        Strategy::GemvSubgroupQ8 => format!("{q8_core}\n{GEMV_SUBGROUP}"),
        Strategy::GemvWorkgroupQ8 => format!("{q8_core}\n{GEMV_WORKGROUP}"),
    };
    // `enable` directives must precede everything else.
    let (enables, act_src) = if strategy == Strategy::GemmCoop {
        let rest = act_src.replace("enable f16;", "");
        ("enable f16;\nenable wgpu_cooperative_matrix;\n", rest)
    } else {
        ("", act_src.to_string())
    };
    let mut all = vars.to_vec();
    all.push(("BLOCK_VEC4", (format.block_k() / 4) as i64));
    all.push(("ACT_F16", (act == ActDType::F16) as i64));
    all.extend(low_bit.map(|s| s.vars()).into_iter().flatten());
    expand(
        &format!("{enables}{act_src}\n{ACTIVATION}\n{LINEAR_IO}\n{w_src}\n{body}"),
        &all,
    )
}

/// The per-row int8 quantization kernel for activations of type `act`.
pub fn quant_rows_source(act: ActDType) -> String {
    let act_src = act.wgsl();
    format!("{act_src}\n{QUANT_ROWS}")
}

/// Template variables of the GEMV strategies for `m` activation rows with tuning `t` and
/// `chunk4` x vec4s staged per row (see `tuning::x_chunk4`).
pub(super) fn gemv_vars(
    strategy: Strategy,
    m: usize,
    t: &super::tuning::GemvTuning,
    chunk4: i64,
) -> Vec<(&'static str, i64)> {
    let r = t.rows_per_team as i64;
    let mut vars = vec![("M", m as i64), ("R", r), ("U", t.unroll as i64)];
    // Without subgroups every lane keeps its rows' partial sums in workgroup memory.
    if !strategy.needs_subgroups() {
        vars.push(("PER_LANE", m as i64 * r));
    }
    vars.extend([("CHUNK4", chunk4), ("XSTAGE", t.x_staged as i64)]);
    vars
}

/// Every strategy, for [`variants`].
pub(super) const STRATEGIES: [Strategy; 7] = [
    Strategy::GemvSubgroup,
    Strategy::GemvWorkgroup,
    Strategy::GemmTiled,
    Strategy::GemmCoop,
    Strategy::GemmDp4a,
    Strategy::GemvSubgroupQ8,
    Strategy::GemvWorkgroupQ8,
];
