//! Structured pruning: whole output rows or input columns, by L2 norm.

use super::{PruneReport, Pruned, count};
use crate::error::{Error, Result};
use crate::sparse::check_matrix;

/// The `len − drop` indices of largest `norms` (lower index first among equal norms), ascending.
fn keep_largest(norms: &[f64], drop: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..norms.len()).collect();
    idx.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
    idx.truncate(norms.len() - drop);
    idx.sort_unstable();
    idx
}

/// Drops the `round(sparsity · n)` output rows of `w` (`n × k`, row-major) with the smallest
/// L2 norms. The result has `n − dropped` rows; [`Pruned::rows`] lists the original index of
/// each. Dropping every row (sparsity 1) gives an empty matrix.
pub fn rows_l2(w: &[f32], n: usize, k: usize, sparsity: f64) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    let drop = count(sparsity, n)?;
    let norms: Vec<f64> = w
        .chunks(k)
        .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum())
        .collect();
    let rows = keep_largest(&norms, drop);
    let out = select_rows(w, n, k, &rows)?;
    Ok(finish(w, out, rows, (0..k).collect(), n, k))
}

/// Drops the `round(sparsity · k)` input columns of `w` (`n × k`, row-major) with the smallest
/// L2 norms. The result has `k − dropped` columns; [`Pruned::cols`] lists the original index of
/// each, which is what the previous layer's rows (and bias) must be reduced to.
pub fn columns_l2(w: &[f32], n: usize, k: usize, sparsity: f64) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    let drop = count(sparsity, k)?;
    let mut norms = vec![0f64; k];
    for row in w.chunks(k) {
        for (s, &v) in norms.iter_mut().zip(row) {
            *s += v as f64 * v as f64;
        }
    }
    let cols = keep_largest(&norms, drop);
    let out = select_columns(w, n, k, &cols)?;
    Ok(finish(w, out, (0..n).collect(), cols, n, k))
}

fn finish(
    w: &[f32],
    out: Vec<f32>,
    rows: Vec<usize>,
    cols: Vec<usize>,
    n: usize,
    k: usize,
) -> Pruned {
    let mut p = Pruned {
        w: out,
        n: rows.len(),
        k: cols.len(),
        rows,
        cols,
        report: PruneReport::default(),
    };
    p.report = PruneReport::measure(w, &p.expand(n, k));
    p
}

fn check_indices(idx: &[usize], len: usize, what: &str) -> Result<()> {
    match idx.iter().find(|&&i| i >= len) {
        Some(i) => Err(Error::invalid(format!(
            "{what} index {i} out of range (the matrix has {len})"
        ))),
        None => Ok(()),
    }
}

/// Rows `rows` of `w` (`n × k`, row-major), in the order given: e.g. the bias (`k = 1`) of a
/// layer whose rows were pruned.
pub fn select_rows(w: &[f32], n: usize, k: usize, rows: &[usize]) -> Result<Vec<f32>> {
    if n.checked_mul(k) != Some(w.len()) {
        return Err(Error::shape(format!(
            "matrix has {} values, expected {n} × {k}",
            w.len()
        )));
    }
    check_indices(rows, n, "row")?;
    Ok(rows
        .iter()
        .flat_map(|&r| w[r * k..(r + 1) * k].iter().copied())
        .collect())
}

/// Columns `cols` of `w` (`n × k`, row-major), in the order given: e.g. the next layer's
/// weights after this layer's rows were pruned.
pub fn select_columns(w: &[f32], n: usize, k: usize, cols: &[usize]) -> Result<Vec<f32>> {
    if n.checked_mul(k) != Some(w.len()) {
        return Err(Error::shape(format!(
            "matrix has {} values, expected {n} × {k}",
            w.len()
        )));
    }
    check_indices(cols, k, "column")?;
    Ok((0..n)
        .flat_map(|r| cols.iter().map(move |&c| w[r * k + c]))
        .collect())
}
