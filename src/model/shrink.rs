//! Structured pruning of a whole model: drop a fraction of the hidden neurons of every FFN
//! (BERT: rows of `intermediate.dense`, with their bias, and the matching columns of
//! `output.dense`) or of every hidden layer of an MLP (rows of layer `i`, columns of layer
//! `i + 1`), chosen by the L2 norm of their input weights ([`crate::prune::rows_l2`]). The
//! model really shrinks: the result is a smaller float model with its architecture updated,
//! which the dense kernels run as they are and `sparq pack` can then quantize.

use super::compress::Floats;
use super::config::Architecture;
use super::loader::WeightFile;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::prune::{PruneReport, rows_l2, select_columns, select_rows};

/// Every float tensor of `file` with the hidden neurons of `arch` cut by `sparsity` (the
/// fraction dropped in each layer), the architecture of the smaller model, and what the cut
/// cost over the weights it touched (removed weights counted as zeros). Tensors that are
/// not floats (e.g. position ids) are left out: the runtime does not read them.
pub fn drop_neurons(
    file: &WeightFile,
    arch: &Architecture,
    sparsity: f64,
) -> Result<(Architecture, Floats, PruneReport)> {
    let mut tensors: Floats = Vec::new();
    for name in file.names() {
        if file.is_packed(&name) {
            return Err(Error::invalid(format!(
                "structured pruning needs float weights; {name} is packed"
            )));
        }
        let shape = file.shape(&name)?;
        if let Ok(v) = file.floats(&name, &shape) {
            tensors.push((name, shape, v));
        }
    }
    let cuts = arch.family().neuron_cuts(file, sparsity)?;
    let (hidden, kept) = (cuts.hidden, cuts.kept);
    let find = |tensors: &Floats, name: &str| {
        tensors.iter().position(|t| t.0 == name).ok_or_else(|| {
            Error::Input(InputError::MissingTensor {
                tensor: name.to_string(),
                expected: "a float tensor to prune".into(),
            })
        })
    };
    // (original, the same with the removed weights zeroed) of every matrix cut.
    let mut pairs: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    for ((w_in, b_in, w_out), (&h, &keep)) in cuts.tensors.iter().zip(hidden.iter().zip(&kept)) {
        let (wi, bi, wo) = (
            find(&tensors, w_in)?,
            find(&tensors, b_in)?,
            find(&tensors, w_out)?,
        );
        let k_in = tensors[wi].1.get(1).copied().unwrap_or(0);
        let n_out = tensors[wo].1.first().copied().unwrap_or(0);
        let p = rows_l2(&tensors[wi].2, h, k_in, sparsity)?;
        if p.n != keep {
            return Err(Error::invalid(format!(
                "{w_in}: {} neurons kept, expected {keep}",
                p.n
            )));
        }
        let bias = select_rows(&tensors[bi].2, h, 1, &p.rows)?;
        let out = select_columns(&tensors[wo].2, n_out, h, &p.rows)?;
        let mut out_zeroed = vec![0f32; n_out * h];
        for r in 0..n_out {
            for (j, &c) in p.rows.iter().enumerate() {
                out_zeroed[r * h + c] = out[r * keep + j];
            }
        }
        pairs.push((tensors[wi].2.clone(), p.expand(h, k_in)));
        pairs.push((tensors[wo].2.clone(), out_zeroed));
        tensors[wi] = (w_in.clone(), vec![keep, k_in], p.w);
        tensors[bi] = (b_in.clone(), vec![keep], bias);
        tensors[wo] = (w_out.clone(), vec![n_out, keep], out);
    }
    let views: Vec<(&[f32], &[f32])> = pairs
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    Ok((cuts.arch, tensors, PruneReport::measure_many(&views)))
}

/// Neurons kept of `n` when a fraction `sparsity` is dropped (at least one).
pub(crate) fn kept_of(n: usize, sparsity: f64) -> Result<usize> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "neuron pruning takes a fraction in [0, 1), got {sparsity}"
        )));
    }
    Ok((n - ((sparsity * n as f64).round() as usize).min(n)).max(1))
}
