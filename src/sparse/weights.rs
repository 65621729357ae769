//! The sparse formats the GPU kernels take, as one host-side type.

use super::{Bsr, Csr, TwoFour, ValueType};
use crate::error::Result;

/// A sparse weight matrix in one of the GPU-supported formats.
#[derive(Clone, Debug, PartialEq)]
pub enum SparseWeights {
    /// Compressed sparse rows (f32 or f16 values).
    Csr(Csr),
    /// Block-sparse rows (f32, f16, int8, int4 values).
    Bsr(Bsr),
    /// 2:4 compressed (f32, f16, int8, int4 values).
    TwoFour(TwoFour),
}

impl From<Csr> for SparseWeights {
    fn from(w: Csr) -> Self {
        SparseWeights::Csr(w)
    }
}

impl From<Bsr> for SparseWeights {
    fn from(w: Bsr) -> Self {
        SparseWeights::Bsr(w)
    }
}

impl From<TwoFour> for SparseWeights {
    fn from(w: TwoFour) -> Self {
        SparseWeights::TwoFour(w)
    }
}

impl SparseWeights {
    /// Output features.
    pub fn n(&self) -> usize {
        match self {
            SparseWeights::Csr(w) => w.n,
            SparseWeights::Bsr(w) => w.n,
            SparseWeights::TwoFour(w) => w.n,
        }
    }

    /// Input features.
    pub fn k(&self) -> usize {
        match self {
            SparseWeights::Csr(w) => w.k,
            SparseWeights::Bsr(w) => w.k,
            SparseWeights::TwoFour(w) => w.k,
        }
    }

    /// Type of the stored values.
    pub fn value_type(&self) -> ValueType {
        match self {
            SparseWeights::Csr(w) => w.value_type,
            SparseWeights::Bsr(w) => w.value_type,
            SparseWeights::TwoFour(w) => w.value_type,
        }
    }

    /// Short name, e.g. `csr-f16`, `bsr1x32-int4`, `2:4-int8`.
    pub fn name(&self) -> String {
        let vt = self.value_type().name();
        match self {
            SparseWeights::Csr(_) => format!("csr-{vt}"),
            SparseWeights::Bsr(b) => format!("bsr{}x{}-{vt}", b.block_rows, b.block_cols),
            SparseWeights::TwoFour(_) => format!("2:4-{vt}"),
        }
    }

    /// The dense matrix the kernel multiplies by (values as stored, dequantized).
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            SparseWeights::Csr(w) => w.to_dense(),
            SparseWeights::Bsr(w) => w.to_dense(),
            SparseWeights::TwoFour(w) => w.to_dense(),
        }
    }

    /// `y = x · Wᵀ` on the CPU with f64 accumulation (the reference of the kernels).
    pub fn matmul_ref(&self, x: &[f32], m: usize) -> Result<Vec<f64>> {
        match self {
            SparseWeights::Csr(w) => w.matmul_ref(x, m),
            SparseWeights::Bsr(w) => w.matmul_ref(x, m),
            SparseWeights::TwoFour(w) => w.matmul_ref(x, m),
        }
    }
}
