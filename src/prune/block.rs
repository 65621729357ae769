//! Block pruning: whole `br × bc` tiles of the matrix by L2 norm, so that the survivors fill
//! the blocks of a BSR matrix ([`crate::sparse::Bsr`]) instead of scattering over all of them.

use super::{Pruned, count};
use crate::error::{Error, Result};
use crate::sparse::check_matrix;

/// Zeros the `round(sparsity · blocks)` blocks of `br × bc` weights (edge blocks partial) of
/// `w` (`n × k`, row-major) with the smallest L2 norms, lower block index first among equals.
pub fn blocks_l2(
    w: &[f32],
    n: usize,
    k: usize,
    br: usize,
    bc: usize,
    sparsity: f64,
) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    if br == 0 || bc == 0 {
        return Err(Error::invalid(format!("empty block shape ({br} × {bc})")));
    }
    let (gr, gc) = (n.div_ceil(br), k.div_ceil(bc));
    let drop = count(sparsity, gr * gc)?;
    let mut norms = vec![0f64; gr * gc];
    for (r, row) in w.chunks(k).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            norms[(r / br) * gc + c / bc] += v as f64 * v as f64;
        }
    }
    let mut idx: Vec<usize> = (0..norms.len()).collect();
    if drop < idx.len() {
        idx.select_nth_unstable_by(drop, |&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
    }
    let mut gone = vec![false; norms.len()];
    for &b in &idx[..drop] {
        gone[b] = true;
    }
    let mut out = w.to_vec();
    for (r, row) in out.chunks_mut(k).enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            if gone[(r / br) * gc + c / bc] {
                *v = 0.0;
            }
        }
    }
    Ok(Pruned::same_shape(w, out, n, k))
}
