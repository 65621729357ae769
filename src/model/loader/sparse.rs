//! Sparse weights in a model file. A sparse matrix `NAME` is listed in the `sparq.packed`
//! table with its format name ([`SparseWeights::name`]: `csr-f16`, `bsr1x32-int4`,
//! `2:4-int8`, ...) and stored as one-dimensional U32 tensors holding the arrays of
//! [`crate::sparse`] word for word: `NAME` (values) and, by format, `NAME.row_ptr`,
//! `NAME.col_idx` (CSR), `NAME.row_ptr`, `NAME.block_col`, `NAME.scales` (BSR), `NAME.meta`,
//! `NAME.scales` (2:4). Scales are present only where the value type has them. A matrix read
//! back is validated ([`SparseWeights::validate`]) before anything uses it.

use super::{PackedInfo, WeightFile};
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::sparse::{Bsr, Csr, SparseWeights, TwoFour, ValueType};

/// The kind of sparse format a name stands for.
enum Kind {
    Csr,
    Bsr(usize, usize),
    TwoFour,
}

/// Splits a sparse format name into its kind and value type.
fn parse_name(s: &str) -> Option<(Kind, ValueType)> {
    let (kind, vt) = s.rsplit_once('-')?;
    let vt = ValueType::parse(vt).ok()?;
    let kind = match kind {
        "csr" => Kind::Csr,
        "2:4" => Kind::TwoFour,
        _ => {
            let (r, c) = kind.strip_prefix("bsr")?.split_once('x')?;
            Kind::Bsr(r.parse().ok()?, c.parse().ok()?)
        }
    };
    Some((kind, vt))
}

/// Whether values of type `vt` come with scales (BSR and 2:4).
fn has_scales(vt: ValueType) -> bool {
    matches!(vt, ValueType::Int8 | ValueType::Int4)
}

/// The suffixes of the tensors that store a matrix of the sparse format `format` (`""` for
/// the values), or `None` for a name that is not a sparse format.
pub fn parts(format: &str) -> Option<Vec<&'static str>> {
    let (kind, vt) = parse_name(format)?;
    let mut v = match kind {
        Kind::Csr => vec!["", ".row_ptr", ".col_idx"],
        Kind::Bsr(..) => vec!["", ".row_ptr", ".block_col"],
        Kind::TwoFour => vec!["", ".meta"],
    };
    if has_scales(vt) && !matches!(kind, Kind::Csr) {
        v.push(".scales");
    }
    Some(v)
}

/// Whether `format` names a sparse format.
pub fn is_sparse_name(format: &str) -> bool {
    parse_name(format).is_some()
}

/// Reads and validates the sparse matrix `name` (`n × k`) described by `p`.
pub fn read(
    file: &WeightFile,
    name: &str,
    p: &PackedInfo,
    n: usize,
    k: usize,
) -> Result<SparseWeights> {
    let (kind, value_type) = parse_name(&p.format).ok_or_else(|| {
        Error::Input(InputError::BadTensor {
            tensor: name.to_string(),
            expected: "a known packed format".into(),
            found: format!("format '{}'", p.format),
        })
    })?;
    if (p.n, p.k) != (n, k) {
        return Err(Error::Input(InputError::BadTensor {
            tensor: name.to_string(),
            expected: format!("a sparse {n} × {k} matrix"),
            found: format!("described as {} × {}", p.n, p.k),
        }));
    }
    let part = |suffix: &str| file.words_any(&format!("{name}{suffix}"));
    let scales = || -> Result<Vec<u32>> {
        if has_scales(value_type) {
            part(".scales")
        } else {
            Ok(Vec::new())
        }
    };
    let w: SparseWeights = match kind {
        Kind::Csr => Csr {
            n,
            k,
            value_type,
            row_ptr: part(".row_ptr")?,
            col_idx: part(".col_idx")?,
            values: part("")?,
        }
        .into(),
        Kind::Bsr(block_rows, block_cols) => Bsr {
            n,
            k,
            block_rows,
            block_cols,
            value_type,
            row_ptr: part(".row_ptr")?,
            block_col: part(".block_col")?,
            values: part("")?,
            scales: scales()?,
        }
        .into(),
        Kind::TwoFour => TwoFour {
            n,
            k,
            value_type,
            values: part("")?,
            meta: part(".meta")?,
            scales: scales()?,
        }
        .into(),
    };
    w.validate().map_err(|e| {
        Error::Input(InputError::BadTensor {
            tensor: name.to_string(),
            expected: format!("a valid {} matrix", p.format),
            found: e.to_string(),
        })
    })?;
    Ok(w)
}

/// The tensors (name, words) that store `w` as `name`.
pub fn arrays(name: &str, w: &SparseWeights) -> Vec<(String, Vec<u32>)> {
    let t = |suffix: &str, v: &Vec<u32>| (format!("{name}{suffix}"), v.clone());
    let mut out = Vec::new();
    match w {
        SparseWeights::Csr(c) => {
            out.extend([
                t("", &c.values),
                t(".row_ptr", &c.row_ptr),
                t(".col_idx", &c.col_idx),
            ]);
        }
        SparseWeights::Bsr(b) => {
            out.extend([
                t("", &b.values),
                t(".row_ptr", &b.row_ptr),
                t(".block_col", &b.block_col),
            ]);
            if has_scales(b.value_type) {
                out.push(t(".scales", &b.scales));
            }
        }
        SparseWeights::TwoFour(f) => {
            out.extend([t("", &f.values), t(".meta", &f.meta)]);
            if has_scales(f.value_type) {
                out.push(t(".scales", &f.scales));
            }
        }
    }
    out
}
