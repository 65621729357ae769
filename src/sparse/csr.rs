//! Compressed sparse rows with f32 or f16 values and 16- or 32-bit column indices.

use super::{ValueType, check_matrix, check_range, dense_from, matmul_from, to_u32, values};
use crate::error::{Error, Result};

/// A weight matrix in CSR (see the [module documentation](super) for the layout).
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Type of the stored values: f32 or f16.
    pub value_type: ValueType,
    /// `n + 1` offsets into the elements; `row_ptr[n]` is the number of elements.
    pub row_ptr: Vec<u32>,
    /// Column index per element, packed to [`Csr::index_bits`] bits.
    pub col_idx: Vec<u32>,
    /// Value per element, packed f32 or f16.
    pub values: Vec<u32>,
}

impl Csr {
    /// Largest `k` whose column indices fit 16 bits.
    pub const MAX_K_U16: usize = 1 << 16;

    /// Stores the non-zeros of `w` (`n × k`, row-major) as `value_type` (f32 or f16).
    ///
    /// Zeros (including −0) are dropped; a non-zero below the f16 range becomes a stored zero
    /// with f16 values, so [`Csr::to_dense`] is the f16-rounded matrix.
    pub fn from_dense(w: &[f32], n: usize, k: usize, value_type: ValueType) -> Result<Self> {
        check_matrix(w, n, k)?;
        if !matches!(value_type, ValueType::F32 | ValueType::F16) {
            return Err(Error::invalid(format!(
                "CSR stores f32 or f16 values, not {}",
                value_type.name()
            )));
        }
        check_range(w, k, value_type)?;
        let nnz = w.iter().filter(|&&v| v != 0.0).count();
        to_u32(nnz, "CSR non-zeros")?;
        let index_bits = if k <= Self::MAX_K_U16 { 16 } else { 32 };
        let mut row_ptr = Vec::with_capacity(n + 1);
        let mut col_idx = vec![0u32; nnz.div_ceil(32 / index_bits)];
        let mut vals = values::zeroed(value_type, nnz);
        let mut e = 0;
        row_ptr.push(0);
        for r in 0..n {
            for (c, &v) in w[r * k..(r + 1) * k].iter().enumerate() {
                if v != 0.0 {
                    values::put(&mut col_idx, index_bits, e, c as u32);
                    values::put(
                        &mut vals,
                        value_type.bits(),
                        e,
                        values::encode(value_type, v, 1.0),
                    );
                    e += 1;
                }
            }
            row_ptr.push(e as u32);
        }
        Ok(Csr {
            n,
            k,
            value_type,
            row_ptr,
            col_idx,
            values: vals,
        })
    }

    /// Bits per column index: 16 when `k ≤ 65536`, else 32.
    pub fn index_bits(&self) -> usize {
        if self.k <= Self::MAX_K_U16 { 16 } else { 32 }
    }

    /// Stored elements.
    pub fn nnz(&self) -> usize {
        self.row_ptr[self.n] as usize
    }

    /// Bytes a kernel reads to use every weight once (row pointers, indices, values).
    pub fn bytes(&self) -> u64 {
        4 * (self.row_ptr.len() + self.col_idx.len() + self.values.len()) as u64
    }

    /// Column index of element `e`.
    pub fn col(&self, e: usize) -> usize {
        values::get(&self.col_idx, self.index_bits(), e) as usize
    }

    /// Value of element `e`, as f32.
    pub fn value(&self, e: usize) -> f32 {
        values::decode(
            self.value_type,
            values::get(&self.values, self.value_type.bits(), e),
            1.0,
        )
    }

    fn for_each(&self, f: &mut dyn FnMut(usize, usize, f32)) {
        for r in 0..self.n {
            for e in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                f(r, self.col(e), self.value(e));
            }
        }
    }

    /// Unpacks to a dense f32 matrix (`n × k`): the weights a kernel multiplies by.
    pub fn to_dense(&self) -> Vec<f32> {
        dense_from(self.n, self.k, |f| self.for_each(f))
    }

    /// `y = x · Wᵀ` for `x` (`m × k`), returning `m × n`, accumulated in f64.
    pub fn matmul_ref(&self, x: &[f32], m: usize) -> Result<Vec<f64>> {
        matmul_from(self.n, self.k, x, m, |f| self.for_each(f))
    }
}
