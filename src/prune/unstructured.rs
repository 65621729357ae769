//! Unstructured pruning: magnitude (per layer and global) and random.

use super::{PruneReport, Pruned, count};
use crate::error::Result;
use crate::sparse::check_matrix;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Indices of the `z` smallest of `mag`, ties by lower index (a total order, so the choice is
/// deterministic); linear time through selection instead of a full sort.
fn smallest(mag: &[f32], z: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..mag.len()).collect();
    if z < idx.len() {
        idx.select_nth_unstable_by(z, |&a, &b| mag[a].total_cmp(&mag[b]).then(a.cmp(&b)));
    }
    idx.truncate(z);
    idx
}

/// Zeros the `round(sparsity · n · k)` weights of smallest magnitude of `w` (`n × k`,
/// row-major), lower indices first among equal magnitudes.
///
/// Weights already zero count among the smallest, so the result has at least that many zeros
/// (more when `w` had more zeros to begin with); [`PruneReport::zeros`] says how many.
pub fn magnitude(w: &[f32], n: usize, k: usize, sparsity: f64) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    let z = count(sparsity, w.len())?;
    let mag: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let mut out = w.to_vec();
    for i in smallest(&mag, z) {
        out[i] = 0.0;
    }
    Ok(Pruned::same_shape(w, out, n, k))
}

/// Layers pruned together by [`magnitude_global`].
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalPruned {
    /// Each layer, in the order given.
    pub layers: Vec<Pruned>,
    /// All layers measured as one.
    pub report: PruneReport,
}

/// Magnitude pruning with one threshold over several layers `(w, n, k)`: zeros the
/// `round(sparsity · total)` smallest magnitudes among all weights of all layers, so layers
/// with small weights lose more of them. Ties go by layer, then index.
pub fn magnitude_global(layers: &[(&[f32], usize, usize)], sparsity: f64) -> Result<GlobalPruned> {
    for &(w, n, k) in layers {
        check_matrix(w, n, k)?;
    }
    let mag: Vec<f32> = layers
        .iter()
        .flat_map(|(w, _, _)| w.iter().map(|v| v.abs()))
        .collect();
    let z = count(sparsity, mag.len())?;
    let mut flat: Vec<f32> = layers
        .iter()
        .flat_map(|(w, _, _)| w.iter().copied())
        .collect();
    for i in smallest(&mag, z) {
        flat[i] = 0.0;
    }
    let mut start = 0;
    let pruned: Vec<Pruned> = layers
        .iter()
        .map(|&(w, n, k)| {
            let out = flat[start..start + w.len()].to_vec();
            start += w.len();
            Pruned::same_shape(w, out, n, k)
        })
        .collect();
    let pairs: Vec<(&[f32], &[f32])> = layers
        .iter()
        .zip(&pruned)
        .map(|(l, p)| (l.0, p.w.as_slice()))
        .collect();
    Ok(GlobalPruned {
        report: PruneReport::measure_many(&pairs),
        layers: pruned,
    })
}

/// Zeros `round(sparsity · n · k)` weights of `w` chosen uniformly at random from `seed`
/// (`StdRng`): the baseline magnitude pruning is judged against.
pub fn random(w: &[f32], n: usize, k: usize, sparsity: f64, seed: u64) -> Result<Pruned> {
    check_matrix(w, n, k)?;
    let z = count(sparsity, w.len())?;
    let mut idx: Vec<usize> = (0..w.len()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let (chosen, _) = idx.partial_shuffle(&mut rng, z);
    let mut out = w.to_vec();
    for &i in chosen.iter() {
        out[i] = 0.0;
    }
    Ok(Pruned::same_shape(w, out, n, k))
}
