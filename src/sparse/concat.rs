//! Stacking sparse matrices by rows, so that a decoder's Q/K/V (and gate/up) projections
//! pruned and stored one by one still run as one fused layer. The stored codes are moved,
//! never decoded and re-encoded, so the result decodes to the parts' rows bit for bit.

use super::{Csr, SparseWeights, TwoFour, values};
use crate::error::{Error, Result};

impl SparseWeights {
    /// The matrix whose rows are the rows of `parts`, in order: all CSR or all 2:4, with one
    /// value type and one `k`. BSR and mixed formats are refused.
    pub fn concat_rows(parts: &[&SparseWeights]) -> Result<SparseWeights> {
        if parts.is_empty() {
            return Err(Error::invalid("concat_rows: no matrices to concatenate"));
        }
        let mismatch = |i: usize| {
            Error::invalid(format!(
                "concat_rows: part {i} ({} {} × {}) does not stack onto part 0 ({} {} × {})",
                parts[i].name(),
                parts[i].n(),
                parts[i].k(),
                parts[0].name(),
                parts[0].n(),
                parts[0].k()
            ))
        };
        match parts[0] {
            SparseWeights::Csr(_) => {
                let mut csr = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    match p {
                        SparseWeights::Csr(c) if same(c.k, c.value_type, parts[0]) => csr.push(c),
                        _ => return Err(mismatch(i)),
                    }
                }
                csr_rows(&csr).map(Into::into)
            }
            SparseWeights::TwoFour(_) => {
                let mut tf = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    match p {
                        SparseWeights::TwoFour(t) if same(t.k, t.value_type, parts[0]) => {
                            tf.push(t)
                        }
                        _ => return Err(mismatch(i)),
                    }
                }
                Ok(two_four_rows(&tf).into())
            }
            SparseWeights::Bsr(_) => Err(Error::invalid(
                "concat_rows: BSR weights cannot be stacked by rows (store the parts fused)",
            )),
        }
    }
}

fn same(k: usize, vt: super::ValueType, first: &SparseWeights) -> bool {
    match first {
        SparseWeights::Csr(c) => (c.k, c.value_type) == (k, vt),
        SparseWeights::TwoFour(t) => (t.k, t.value_type) == (k, vt),
        SparseWeights::Bsr(_) => false,
    }
}

/// Copies `count` packed `bits`-bit elements of `from` onto the end of `to` (holding `at`).
fn append(to: &mut Vec<u32>, at: usize, from: &[u32], count: usize, bits: usize) {
    let per = 32 / bits;
    to.resize((at + count).div_ceil(per), 0);
    for i in 0..count {
        values::put(to, bits, at + i, values::get(from, bits, i));
    }
}

fn csr_rows(parts: &[&Csr]) -> Result<Csr> {
    let (k, vt) = (parts[0].k, parts[0].value_type);
    let index_bits = parts[0].index_bits();
    let n = parts.iter().map(|p| p.n).sum();
    let nnz: usize = parts.iter().map(|p| p.nnz()).sum();
    super::to_u32(nnz, "CSR non-zeros")?;
    let mut row_ptr = Vec::with_capacity(n + 1);
    row_ptr.push(0u32);
    let (mut col_idx, mut vals, mut e) = (Vec::new(), Vec::new(), 0usize);
    for p in parts {
        row_ptr.extend(p.row_ptr[1..].iter().map(|&r| r + e as u32));
        append(&mut col_idx, e, &p.col_idx, p.nnz(), index_bits);
        append(&mut vals, e, &p.values, p.nnz(), vt.bits());
        e += p.nnz();
    }
    Ok(Csr {
        n,
        k,
        value_type: vt,
        row_ptr,
        col_idx,
        values: vals,
    })
}

fn two_four_rows(parts: &[&TwoFour]) -> TwoFour {
    let first = parts[0];
    let sg = first.scale_groups();
    let mut out = TwoFour {
        n: parts.iter().map(|p| p.n).sum(),
        k: first.k,
        value_type: first.value_type,
        values: Vec::new(),
        meta: Vec::new(),
        scales: Vec::new(),
    };
    // Values and positions are padded per row; int8 scales are one word per row; int4
    // scales are f16 pairs that may straddle two rows, so they move one half at a time.
    let mut halves = 0;
    for p in parts {
        out.values.extend_from_slice(&p.values);
        out.meta.extend_from_slice(&p.meta);
        match p.value_type {
            super::ValueType::Int4 => {
                append(&mut out.scales, halves, &p.scales, p.n * sg, 16);
                halves += p.n * sg;
            }
            _ => out.scales.extend_from_slice(&p.scales),
        }
    }
    out
}
