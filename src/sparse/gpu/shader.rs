//! WGSL assembly for the sparse kernels: the activation file, the value decoder, the shared
//! core (`shaders/sparse_rows.wgsl`) and the format file, glued into one module per variant.

use super::super::ValueType;
use crate::error::Result;
use crate::gpu::wgsl::expand;
use crate::tensor::ActDType;

pub(super) const ROWS: &str = include_str!("../../../shaders/sparse_rows.wgsl");
const CSR: &str = include_str!("../../../shaders/sparse_csr.wgsl");
const BSR: &str = include_str!("../../../shaders/sparse_bsr.wgsl");
const TWO_FOUR: &str = include_str!("../../../shaders/sparse_24.wgsl");
const V_F32: &str = include_str!("../../../shaders/sparse_v_f32.wgsl");
const V_F16: &str = include_str!("../../../shaders/sparse_v_f16.wgsl");
const V_INT8: &str = include_str!("../../../shaders/sparse_v_int8.wgsl");
const V_INT4: &str = include_str!("../../../shaders/sparse_v_int4.wgsl");

/// Which format file a variant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `shaders/sparse_csr.wgsl`.
    Csr,
    /// `shaders/sparse_bsr.wgsl`.
    Bsr,
    /// `shaders/sparse_24.wgsl`.
    TwoFour,
}

/// Unique name of a variant (its template variables are part of it).
pub fn variant_name(family: Family, vt: ValueType, act: ActDType, vars: &[(&str, i64)]) -> String {
    let v: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
    format!("sparse_{family:?}_{}_{act:?}{v}", vt.name())
}

/// The WGSL source of one variant; `vars` holds the format's and the core's template
/// variables, to which the value-type flags are added here.
pub fn source(
    family: Family,
    vt: ValueType,
    act: ActDType,
    vars: &[(&str, i64)],
) -> Result<String> {
    let act_src = act.wgsl();
    let v_src = value_file(vt);
    let f_src = match family {
        Family::Csr => CSR,
        Family::Bsr => BSR,
        Family::TwoFour => TWO_FOUR,
    };
    let mut all = vars.to_vec();
    let get = |name: &str| vars.iter().find(|(n, _)| *n == name).map_or(1, |(_, v)| *v);
    all.push(("RM", get("R") * get("MT")));
    all.extend(value_vars(vt));
    expand(&format!("{act_src}\n{ROWS}\n{v_src}\n{f_src}"), &all)
}

/// The value decoder file for `vt` (`shaders/sparse_v_*.wgsl`: `EPV4` and `dec4`).
pub fn value_file(vt: ValueType) -> &'static str {
    match vt {
        ValueType::F32 => V_F32,
        ValueType::F16 => V_F16,
        ValueType::Int8 => V_INT8,
        ValueType::Int4 => V_INT4,
    }
}

/// The value-type flags every sparse kernel's templates test.
pub fn value_vars(vt: ValueType) -> [(&'static str, i64); 9] {
    let flag = |b: bool| b as i64;
    [
        ("EPV4", (32 / vt.bits()) as i64),
        ("VF16", flag(vt == ValueType::F16)),
        ("VF32", flag(vt == ValueType::F32)),
        ("INT4", flag(vt == ValueType::Int4)),
        ("NOT_INT4", flag(vt != ValueType::Int4)),
        ("INT8", flag(vt == ValueType::Int8)),
        ("NOT_INT8", flag(vt != ValueType::Int8)),
        ("META2", flag(vt == ValueType::Int4)),
        ("NOT_META2", flag(vt != ValueType::Int4)),
    ]
}
