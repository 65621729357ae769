//! Checks that a sparse matrix assembled from outside (a model file) is one its kernels and
//! references can use: array lengths that match its shape, pointers that start at zero and
//! never go back, indices inside the matrix, 2:4 positions that are two distinct slots of
//! their group, finite values and scales. Matrices built by `from_dense` pass by
//! construction; anything else that fails gets an error naming the array and what is wrong,
//! never a panic, an out-of-bounds read on the GPU or a silently wrong result.

use super::{Bsr, Csr, SparseWeights, TwoFour, ValueType, values};
use crate::error::{Error, Result};

impl SparseWeights {
    /// Checks the matrix's arrays against its shape and value type (see the module docs of
    /// [`super`] for the layouts).
    pub fn validate(&self) -> Result<()> {
        if self.n() == 0 || self.k() == 0 {
            return Err(bad(
                "matrix",
                format!("empty shape {} × {}", self.n(), self.k()),
            ));
        }
        match self {
            SparseWeights::Csr(c) => c.validate(),
            SparseWeights::Bsr(b) => b.validate(),
            SparseWeights::TwoFour(t) => t.validate(),
        }
    }
}

/// Largest BSR block side accepted from outside (keeps every size computation in range).
const MAX_BLOCK: usize = 1 << 16;

fn bad(what: &str, msg: String) -> Error {
    Error::invalid(format!("sparse {what}: {msg}"))
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(bad(what, format!("{got} words, expected {want}")));
    }
    Ok(())
}

/// A pointer array of `rows + 1` entries from 0, never decreasing; returns its last entry.
fn check_ptr(what: &str, ptr: &[u32], rows: usize) -> Result<usize> {
    check_len(what, ptr.len(), rows + 1)?;
    if ptr[0] != 0 {
        return Err(bad(what, format!("starts at {}, not 0", ptr[0])));
    }
    if let Some(i) = ptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(bad(
            what,
            format!(
                "entry {} ({}) is below entry {i} ({})",
                i + 1,
                ptr[i + 1],
                ptr[i]
            ),
        ));
    }
    Ok(ptr[rows] as usize)
}

/// Every one of the first `elems` values of a float array is finite.
fn check_values(what: &str, vt: ValueType, words: &[u32], elems: usize) -> Result<()> {
    if matches!(vt, ValueType::F32 | ValueType::F16)
        && let Some(i) = (0..elems)
            .find(|&i| !values::decode(vt, values::get(words, vt.bits(), i), 1.0).is_finite())
    {
        return Err(bad(what, format!("value {i} is not finite")));
    }
    Ok(())
}

/// Scales: `count` f32 (int8) or f16 (int4) numbers, all finite.
fn check_scales(what: &str, vt: ValueType, words: &[u32], count: usize) -> Result<()> {
    match vt {
        ValueType::Int8 => {
            check_len(what, words.len(), count)?;
            if let Some(i) = words.iter().position(|&w| !f32::from_bits(w).is_finite()) {
                return Err(bad(what, format!("scale {i} is not finite")));
            }
        }
        ValueType::Int4 => {
            check_len(what, words.len(), count.div_ceil(2))?;
            if let Some(i) = (0..count).find(|&i| !values::half(words, i).is_finite()) {
                return Err(bad(what, format!("scale {i} is not finite")));
            }
        }
        _ => check_len(what, words.len(), 0)?,
    }
    Ok(())
}

impl Csr {
    fn validate(&self) -> Result<()> {
        if !matches!(self.value_type, ValueType::F32 | ValueType::F16) {
            return Err(bad(
                "CSR",
                format!("values of {}, not f32 or f16", self.value_type.name()),
            ));
        }
        let nnz = check_ptr("CSR row pointers", &self.row_ptr, self.n)?;
        let ib = self.index_bits();
        check_len(
            "CSR column indices",
            self.col_idx.len(),
            nnz.div_ceil(32 / ib),
        )?;
        let vb = self.value_type.bits();
        check_len("CSR values", self.values.len(), nnz.div_ceil(32 / vb))?;
        if let Some(e) = (0..nnz).find(|&e| self.col(e) >= self.k) {
            return Err(bad(
                "CSR column indices",
                format!("element {e} is in column {} of {}", self.col(e), self.k),
            ));
        }
        // The kernels search a row's columns and the references sum them in order: an
        // unsorted or repeated column would give results that depend on the batch.
        for r in 0..self.n {
            let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
            if let Some(e) = (a + 1..b).find(|&e| self.col(e) <= self.col(e - 1)) {
                return Err(bad(
                    "CSR column indices",
                    format!(
                        "row {r} is not strictly ascending: element {e} is in column {} after \
                         column {}",
                        self.col(e),
                        self.col(e - 1)
                    ),
                ));
            }
        }
        check_values("CSR values", self.value_type, &self.values, nnz)
    }
}

impl Bsr {
    fn validate(&self) -> Result<()> {
        let (br, bc) = (self.block_rows, self.block_cols);
        if br == 0 || bc == 0 || br > MAX_BLOCK || bc > MAX_BLOCK {
            return Err(bad(
                "BSR",
                format!("block shape {br} × {bc} (each side 1 ..= {MAX_BLOCK})"),
            ));
        }
        let blocks = check_ptr("BSR row pointers", &self.row_ptr, self.n.div_ceil(br))?;
        check_len("BSR block columns", self.block_col.len(), blocks)?;
        let grid_cols = self.k.div_ceil(bc);
        for rb in 0..self.row_ptr.len() - 1 {
            let cols = &self.block_col[self.row_ptr[rb] as usize..self.row_ptr[rb + 1] as usize];
            if let Some(&c) = cols.iter().find(|&&c| c as usize >= grid_cols) {
                return Err(bad(
                    "BSR block columns",
                    format!("block row {rb} has block column {c} of {grid_cols}"),
                ));
            }
            if cols.windows(2).any(|w| w[1] <= w[0]) {
                return Err(bad(
                    "BSR block columns",
                    format!("block row {rb} is not strictly ascending"),
                ));
            }
        }
        let per_block = self.block_words();
        check_len("BSR values", self.values.len(), blocks * per_block)?;
        let vt = self.value_type;
        let elems = blocks * per_block * (32 / vt.bits());
        check_values("BSR values", vt, &self.values, elems)?;
        // Edge blocks are padded past row n and column k; kernels may clamp those reads of x,
        // so a padding element that is not zero would be multiplied by a real input.
        let per_block_elems = per_block * (32 / vt.bits());
        for (b, r0, c0) in self.block_origins() {
            if r0 + br <= self.n && c0 + bc <= self.k {
                continue;
            }
            for rr in 0..br {
                for cc in 0..bc {
                    let inside = r0 + rr < self.n && c0 + cc < self.k;
                    let code =
                        values::get(&self.values, vt.bits(), b * per_block_elems + rr * bc + cc);
                    if !inside && values::decode(vt, code, 1.0) != 0.0 {
                        return Err(bad(
                            "BSR values",
                            format!(
                                "block {b} holds a non-zero padding element at row {}, column {}",
                                r0 + rr,
                                c0 + cc
                            ),
                        ));
                    }
                }
            }
        }
        let scales = match vt {
            ValueType::Int8 => self.n,
            _ => blocks * br,
        };
        check_scales("BSR scales", vt, &self.scales, scales)
    }
}

impl TwoFour {
    fn validate(&self) -> Result<()> {
        let (n, vt) = (self.n, self.value_type);
        check_len("2:4 values", self.values.len(), n * self.row_value_words())?;
        check_len("2:4 positions", self.meta.len(), n * self.row_meta_words())?;
        for r in 0..n {
            for g in 0..self.groups() {
                let [a, b] = self.positions(r, g);
                if a >= b {
                    return Err(bad(
                        "2:4 positions",
                        format!("row {r}, group {g}: positions {a} and {b} are not ascending"),
                    ));
                }
                // A slot past the last column is padding: the kernels clamp its column to
                // `k - 1`, so anything but a zero there would be multiplied by a real input.
                for (j, p) in [a, b].into_iter().enumerate() {
                    if 4 * g + p >= self.k && self.slot_value(r, 2 * g + j) != 0.0 {
                        return Err(bad(
                            "2:4 values",
                            format!(
                                "row {r}, group {g}: slot {j} is past column {} and not zero",
                                self.k - 1
                            ),
                        ));
                    }
                }
            }
        }
        let elems = self.values.len() * (32 / vt.bits());
        check_values("2:4 values", vt, &self.values, elems)?;
        let scales = match vt {
            ValueType::Int8 => n,
            _ => n * self.scale_groups(),
        };
        check_scales("2:4 scales", vt, &self.scales, scales)
    }
}
