//! N:M semi-structured pruning along `k`.

use super::Pruned;
use crate::error::{Error, Result};
use crate::sparse::check_matrix;

/// Keeps the `keep` largest magnitudes in every group of `group` consecutive weights of a row
/// of `w` (`n × k`, row-major) and zeros the rest: 2:4 is `n_of_m(w, n, k, 2, 4)`.
///
/// Groups never cross rows. When `k` is not a multiple of `group`, the last group of a row is
/// partial and keeps at most `keep` weights (all of them when it has `keep` or fewer), as if it
/// were padded with zeros, which is what the 2:4 format does. Among equal magnitudes the lower
/// column is kept. A group with fewer than `keep` non-zeros is left unchanged.
pub fn n_of_m(w: &[f32], n: usize, k: usize, keep: usize, group: usize) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    if keep == 0 || keep >= group {
        return Err(Error::invalid(format!(
            "N:M pruning needs 1 ≤ N < M, got {keep}:{group}"
        )));
    }
    let mut out = w.to_vec();
    let mut order = Vec::with_capacity(group);
    for row in out.chunks_mut(k) {
        for g in row.chunks_mut(group) {
            if g.len() <= keep {
                continue;
            }
            order.clear();
            order.extend(0..g.len());
            order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()).then(a.cmp(&b)));
            for &i in &order[keep..] {
                g[i] = 0.0;
            }
        }
    }
    Ok(Pruned::same_shape(w, out, n, k))
}
