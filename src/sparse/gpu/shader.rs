//! WGSL assembly for the sparse kernels: the activation file, the value decoder, the shared
//! core (`shaders/sparse/sparse_rows.wgsl`) and the format file, glued into one module per variant.

use super::super::ValueType;
use crate::error::Result;
use crate::gpu::wgsl::expand;
use crate::tensor::ActDType;

pub(super) const ROWS: &str = include_str!("../../../shaders/sparse/sparse_rows.wgsl");
const CSR: &str = include_str!("../../../shaders/sparse/sparse_csr.wgsl");
const BSR: &str = include_str!("../../../shaders/sparse/sparse_bsr.wgsl");
const TWO_FOUR: &str = include_str!("../../../shaders/sparse/sparse_24.wgsl");
const V_F32: &str = include_str!("../../../shaders/sparse/sparse_v_f32.wgsl");
const V_F16: &str = include_str!("../../../shaders/sparse/sparse_v_f16.wgsl");
const V_INT8: &str = include_str!("../../../shaders/sparse/sparse_v_int8.wgsl");
const V_INT4: &str = include_str!("../../../shaders/sparse/sparse_v_int4.wgsl");

/// Which format file a variant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `shaders/sparse/sparse_csr.wgsl`.
    Csr,
    /// `shaders/sparse/sparse_bsr.wgsl`.
    Bsr,
    /// `shaders/sparse/sparse_24.wgsl`.
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
pub fn value_vars(vt: ValueType) -> [(&'static str, i64); 6] {
    let flag = |b: bool| b as i64;
    [
        ("EPV4", (32 / vt.bits()) as i64),
        ("VF16", flag(vt == ValueType::F16)),
        ("VF32", flag(vt == ValueType::F32)),
        ("INT4", flag(vt == ValueType::Int4)),
        ("INT8", flag(vt == ValueType::Int8)),
        ("META2", flag(vt == ValueType::Int4)),
    ]
}

/// A sparse format as the variant listings see it: family, output rows per item, the
/// format's template variables.
pub type FormatVars = (Family, usize, Vec<(&'static str, i64)>);

/// The CSR format's template variables: u16 (`idx16`) or u32 column indices.
pub fn csr_vars(idx16: bool) -> Vec<(&'static str, i64)> {
    vec![("IDX16", idx16 as i64)]
}

/// The BSR format's template variables for blocks of `rows × cols` `vt` values (a block row
/// is whole vec4s).
pub fn bsr_vars(rows: usize, cols: usize, vt: ValueType) -> Vec<(&'static str, i64)> {
    let rv = cols * vt.bits() / 128;
    vec![
        ("BC", cols as i64),
        ("RV", rv as i64),
        ("BV", (rv * rows) as i64),
    ]
}

/// The shared core's template variables (before `XSM`, which depends on the workgroup):
/// `xsel` picks vector components with `select`, `mt` activation rows per tile, x transposed
/// per tile, `r` output rows per item, `u` units in flight, subgroup reduction.
pub fn core_vars(
    xsel: bool,
    mt: usize,
    transpose: bool,
    r: usize,
    u: i64,
    sg: bool,
) -> [(&'static str, i64); 7] {
    [
        ("XSEL", xsel as i64),
        ("MT", mt as i64),
        ("MTV", mt.div_ceil(4) as i64),
        ("XT", transpose as i64),
        ("R", r as i64),
        ("U", u),
        ("SG", sg as i64),
    ]
}

/// The modules the sparse kernels can ask for, as (pipeline name, WGSL or the template
/// error), for tests that validate them offline. Every flag is crossed with every other:
/// format, value type (CSR takes f32 and f16 only), activation type, CSR's index width, x
/// transposed and x staged, both reductions, `XSEL`. Loop counts, which only repeat lines,
/// are taken at their edges (validating all of them took minutes): tiles of 1, 2 and the
/// most rows that fit the partial sums, BSR blocks of 1, 4 and 16 rows of the narrowest and
/// widest columns, 2:4 items of 1, 4 and 8 rows, `U` of 1, 2 (the default) and 8. Then the
/// transpose and densify kernels.
pub fn variants() -> Vec<(String, Result<String>)> {
    let mut out = Vec::new();
    let vts = [
        ValueType::F32,
        ValueType::F16,
        ValueType::Int8,
        ValueType::Int4,
    ];
    for act in [ActDType::F32, ActDType::F16] {
        for vt in vts {
            let formats = listed_formats(vt);
            for (family, r, fvars) in &formats {
                let most = 8.min(super::MAX_ACC / r).max(1);
                let mut tiles = vec![1, 2, most];
                tiles.dedup();
                for mt in tiles {
                    // Only CSR transposes x (from 2 rows by default, from 1 when so tuned).
                    let xts: &[bool] = match family {
                        Family::Csr => &[false, true],
                        _ => &[false],
                    };
                    let knobs: &[(bool, i64)] = if mt == 1 {
                        &[(true, 2), (false, 2), (true, 1), (true, 8)]
                    } else {
                        &[(true, 2), (false, 2)]
                    };
                    for &xt in xts {
                        for sg in [false, true] {
                            for &(xsel, u) in knobs {
                                let staged: &[i64] = if *family == Family::Csr && mt == 1 {
                                    &[0, 1024]
                                } else {
                                    &[0]
                                };
                                for &xsm in staged {
                                    let mut vars = fvars.clone();
                                    vars.extend(core_vars(xsel, mt, xt, *r, u, sg));
                                    vars.push(("XSM", xsm));
                                    let name = variant_name(*family, vt, act, &vars);
                                    out.push((name, source(*family, vt, act, &vars)));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The format variants the listing covers for values of `vt`: (family, rows per item, format
/// variables), shared by the sparse kernels' listing and the densify kernel's.
pub(super) fn listed_formats(vt: ValueType) -> Vec<FormatVars> {
    let mut formats: Vec<FormatVars> = Vec::new();
    if matches!(vt, ValueType::F32 | ValueType::F16) {
        formats.push((Family::Csr, 1, csr_vars(true)));
        formats.push((Family::Csr, 1, csr_vars(false)));
    }
    for rows in [1, 4, 16] {
        for cols in [128 / vt.bits(), 128] {
            formats.push((Family::Bsr, rows, bsr_vars(rows, cols, vt)));
        }
    }
    formats.extend([1, 4, 8].map(|r| (Family::TwoFour, r, Vec::new())));
    formats
}
