//! Weight pruning on the host: which weights of an `n × k` row-major f32 matrix to zero (or
//! which rows and columns to drop), deterministically, with a report of what it cost.
//!
//! | method | function | result |
//! | --- | --- | --- |
//! | unstructured magnitude (L1), per layer | [`magnitude`] | same shape, `round(s · len)` smallest magnitudes zeroed |
//! | unstructured magnitude, global | [`magnitude_global`] | one threshold over all layers |
//! | random | [`random`] | same shape, `round(s · len)` weights zeroed, seeded |
//! | N:M semi-structured | [`n_of_m`] | same shape, ≤ N non-zeros per M consecutive weights along `k` |
//! | blocks `br × bc` | [`blocks_l2`] | same shape, `round(s · blocks)` blocks of smallest L2 norm zeroed |
//! | structured rows (outputs) | [`rows_l2`] | fewer rows, kept by largest L2 norm |
//! | structured columns (inputs) | [`columns_l2`] | fewer columns, kept by largest L2 norm |
//! | N:M or a fraction per row, calibrated (SparseGPT) | [`calibrated::prune_calibrated`] | same shape, chosen by output error, kept weights adjusted |
//!
//! [`prune`] runs any of them from a [`PruneMethod`]. Ties are broken by index (the lower
//! index is pruned first among equal magnitudes, kept first among equal norms), so a result
//! depends only on the inputs and the seed.
//!
//! Structured pruning changes the layer's shape, so the layers around it must follow: after
//! dropping output rows of layer `i`, take the same rows of its bias ([`select_rows`] with
//! `k = 1`) and the same input columns of layer `i + 1` ([`select_columns`]):
//!
//! ```
//! use sparq::prune::{rows_l2, select_columns, select_rows};
//! # fn main() -> sparq::Result<()> {
//! let (n, k, n2) = (4, 3, 2);
//! let w1: Vec<f32> = (0..n * k).map(|i| i as f32 - 5.0).collect();
//! let b1 = vec![0.1, 0.2, 0.3, 0.4];
//! let w2: Vec<f32> = (0..n2 * n).map(|i| i as f32).collect();
//! let p = rows_l2(&w1, n, k, 0.5)?; // keeps 2 of the 4 rows
//! let b1 = select_rows(&b1, n, 1, &p.rows)?;
//! let w2 = select_columns(&w2, n2, n, &p.rows)?;
//! assert_eq!((p.n, b1.len(), w2.len()), (2, 2, n2 * 2));
//! # Ok(()) }
//! ```

mod block;
pub mod calibrated;
mod nm;
mod structured;
mod unstructured;

pub use block::blocks_l2;
pub use nm::n_of_m;
pub use structured::{columns_l2, rows_l2, select_columns, select_rows};
pub use unstructured::{GlobalPruned, magnitude, magnitude_global, random};

use crate::error::{Error, Result};

/// What pruning did to a matrix, measured against the original.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PruneReport {
    /// Weights in the original matrix (or matrices).
    pub len: usize,
    /// Zero weights after pruning; removed rows and columns count as zeros.
    pub zeros: usize,
    /// `zeros / len`: the achieved sparsity.
    pub sparsity: f64,
    /// ‖W − Ŵ‖ / ‖W‖ (Frobenius), with Ŵ at the original shape; 0 when W is all zero.
    pub relative_error: f64,
}

impl PruneReport {
    /// Measures `pruned` against `original` (same length, same layout).
    pub fn measure(original: &[f32], pruned: &[f32]) -> Self {
        Self::measure_many(&[(original, pruned)])
    }

    /// Measures several layers as one: zeros and squared errors add up over all of them.
    pub fn measure_many(pairs: &[(&[f32], &[f32])]) -> Self {
        let (mut len, mut zeros, mut num, mut den) = (0, 0, 0f64, 0f64);
        for (a, b) in pairs {
            debug_assert_eq!(a.len(), b.len());
            len += a.len();
            zeros += b.iter().filter(|&&v| v == 0.0).count();
            for (&x, &y) in a.iter().zip(b.iter()) {
                let e = x as f64 - y as f64;
                num += e * e;
                den += x as f64 * x as f64;
            }
        }
        PruneReport {
            len,
            zeros,
            sparsity: if len > 0 {
                zeros as f64 / len as f64
            } else {
                0.0
            },
            relative_error: if den > 0.0 { (num / den).sqrt() } else { 0.0 },
        }
    }
}

/// A pruned matrix, with the original rows and columns it kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// The pruned weights, `n × k`, row-major.
    pub w: Vec<f32>,
    /// Rows of `w` (fewer than the original after [`rows_l2`]).
    pub n: usize,
    /// Columns of `w` (fewer than the original after [`columns_l2`]).
    pub k: usize,
    /// Original index of every row of `w`, ascending (all rows unless rows were removed).
    pub rows: Vec<usize>,
    /// Original index of every column of `w`, ascending (all columns unless columns were removed).
    pub cols: Vec<usize>,
    /// Sparsity and error against the original.
    pub report: PruneReport,
}

impl Pruned {
    /// The pruned weights at the original shape `original_n × original_k`, removed rows and
    /// columns filled with zeros.
    pub fn expand(&self, original_n: usize, original_k: usize) -> Vec<f32> {
        let mut out = vec![0f32; original_n * original_k];
        for (i, &r) in self.rows.iter().enumerate() {
            for (j, &c) in self.cols.iter().enumerate() {
                out[r * original_k + c] = self.w[i * self.k + j];
            }
        }
        out
    }

    /// Wraps a same-shape result, measuring it against `original`.
    fn same_shape(original: &[f32], w: Vec<f32>, n: usize, k: usize) -> Self {
        let report = PruneReport::measure(original, &w);
        Pruned {
            w,
            n,
            k,
            rows: (0..n).collect(),
            cols: (0..k).collect(),
            report,
        }
    }
}

/// How to prune a matrix with [`prune`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum PruneMethod {
    /// Zero the `round(sparsity · len)` smallest magnitudes ([`magnitude`]).
    Magnitude {
        /// Fraction of weights to zero, 0 to 1.
        sparsity: f64,
    },
    /// Zero `round(sparsity · len)` weights chosen at random ([`random`]).
    Random {
        /// Fraction of weights to zero, 0 to 1.
        sparsity: f64,
        /// Seed of the choice.
        seed: u64,
    },
    /// Keep the `n` largest magnitudes of every `m` consecutive weights along `k` ([`n_of_m`]).
    NOfM {
        /// Weights kept per group (1 ≤ n < m).
        n: usize,
        /// Group size.
        m: usize,
    },
    /// Drop the `round(sparsity · n)` output rows of smallest L2 norm ([`rows_l2`]).
    Rows {
        /// Fraction of rows to drop, 0 to 1.
        sparsity: f64,
    },
    /// Drop the `round(sparsity · k)` input columns of smallest L2 norm ([`columns_l2`]).
    Columns {
        /// Fraction of columns to drop, 0 to 1.
        sparsity: f64,
    },
}

/// Prunes `w` (`n × k`, row-major) with `method`.
pub fn prune(w: &[f32], n: usize, k: usize, method: PruneMethod) -> Result<Pruned> {
    match method {
        PruneMethod::Magnitude { sparsity } => magnitude(w, n, k, sparsity),
        PruneMethod::Random { sparsity, seed } => random(w, n, k, sparsity, seed),
        PruneMethod::NOfM { n: keep, m } => n_of_m(w, n, k, keep, m),
        PruneMethod::Rows { sparsity } => rows_l2(w, n, k, sparsity),
        PruneMethod::Columns { sparsity } => columns_l2(w, n, k, sparsity),
    }
}

/// How many of `len` items a sparsity removes, refusing sparsities outside `[0, 1]`.
fn count(sparsity: f64, len: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "sparsity must be between 0 and 1, got {sparsity}"
        )));
    }
    Ok(((sparsity * len as f64).round() as usize).min(len))
}
