//! One-shot pruning with error compensation (SparseGPT: Frantar and Alistarh, "SparseGPT:
//! Massive Language Models Can Be Accurately Pruned in One-Shot", 2023). Magnitude pruning
//! drops the smallest weights and leaves the others as they were; with the layer's calibration
//! inputs ([`Hessian`]) each dropped weight's contribution to the outputs is moved onto the
//! weights of its row not yet decided, as GPTQ does with rounding errors
//! ([`crate::formats::gptq`]), and which weights to drop is decided as their columns come up,
//! by the output error dropping them would cause (`w² / U_jj²`, `U` the factor of `H⁻¹`)
//! rather than by `|w|`. With uncorrelated inputs this is magnitude pruning.

use super::Pruned;
use crate::error::{Error, Result};
use crate::formats::gptq::{Hessian, compensate_rows};
use crate::sparse::check_matrix;

/// Which weights calibrated pruning removes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// All but `keep` of every `group` consecutive weights of a row, as [`super::n_of_m`]
    /// (2:4 is `keep` 2, `group` 4).
    NofM {
        /// Weights kept per group.
        keep: usize,
        /// Group length along `k`.
        group: usize,
    },
    /// The fraction `sparsity` of each row, chosen within blocks of [`FRACTION_BLOCK`] columns
    /// (so every row keeps the same number of weights).
    Fraction {
        /// Fraction of each row zeroed, in [0, 1].
        sparsity: f64,
    },
}

/// Columns among which [`Pattern::Fraction`] chooses at a time: late enough that the
/// compensation of earlier columns has happened, early enough to leave room for the next.
pub const FRACTION_BLOCK: usize = 128;

/// Prunes `w` (`n × k`, row-major) to `pattern`, compensating with the calibration inputs
/// summed in `h`.
pub fn prune_calibrated(
    w: &[f32],
    n: usize,
    k: usize,
    pattern: Pattern,
    h: &Hessian,
) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    match pattern {
        Pattern::NofM { keep, group } if keep == 0 || keep >= group => {
            return Err(Error::invalid(format!(
                "N:M pruning needs 1 ≤ N < M, got {keep}:{group}"
            )));
        }
        Pattern::Fraction { sparsity } if !(0.0..=1.0).contains(&sparsity) => {
            return Err(Error::invalid(format!(
                "sparsity must lie in [0, 1], got {sparsity}"
            )));
        }
        _ => {}
    }
    let u = h.inverse_factor(k)?;
    // Per row: whether each column of the current block is dropped.
    let mut masks = vec![false; n * k];
    let out = compensate_rows(w, n, k, &u, &mut masks, |mask, j, w| {
        let block = match pattern {
            Pattern::NofM { keep, group } => (j % group == 0).then(|| {
                let end = (j + group).min(k);
                (end, (end - j).saturating_sub(keep))
            }),
            Pattern::Fraction { sparsity } => (j % FRACTION_BLOCK == 0).then(|| {
                let end = (j + FRACTION_BLOCK).min(k);
                let upto = |c: usize| (sparsity * c as f64).round() as usize;
                (end, upto(end) - upto(j))
            }),
        };
        if let Some((end, drop)) = block {
            // The `drop` weights whose removal costs the outputs least; among equals the
            // later column goes first.
            let cost = |c: usize| w[c] * w[c] / (u[c * k + c] * u[c * k + c]);
            let mut order: Vec<usize> = (j..end).collect();
            order.sort_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(b.cmp(&a)));
            for &c in &order[..drop] {
                mask[c] = true;
            }
        }
        if mask[j] { 0.0 } else { w[j] as f32 }
    });
    Ok(Pruned::same_shape(w, out, n, k))
}
