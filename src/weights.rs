//! A linear layer's weights on the host, dense (quantized, [`crate::formats`]) or sparse
//! ([`crate::sparse`]): what a model file holds for one layer, before any device sees it.

use crate::formats::PackedWeights;
use crate::sparse::SparseWeights;

/// A linear layer's weights on the host, dense (packed) or sparse: what a model file holds
/// for one layer.
#[derive(Clone, Debug)]
pub enum LayerWeights {
    /// Dense weights in any [`crate::formats::WeightFormat`].
    Dense(PackedWeights),
    /// Sparse weights in any GPU-supported sparse format.
    Sparse(SparseWeights),
}

impl LayerWeights {
    /// Output features.
    pub fn n(&self) -> usize {
        match self {
            LayerWeights::Dense(w) => w.n,
            LayerWeights::Sparse(w) => w.n(),
        }
    }

    /// Input features.
    pub fn k(&self) -> usize {
        match self {
            LayerWeights::Dense(w) => w.k,
            LayerWeights::Sparse(w) => w.k(),
        }
    }

    /// Format name: `int4g32`, `csr-f16`, `2:4-int8`, ...
    pub fn format_name(&self) -> String {
        match self {
            LayerWeights::Dense(w) => w.format.name(),
            LayerWeights::Sparse(w) => w.name(),
        }
    }

    /// The dense `n × k` matrix the kernels multiply by.
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            LayerWeights::Dense(w) => w.dequantize(),
            LayerWeights::Sparse(w) => w.to_dense(),
        }
    }

    /// The matrix whose rows are the rows of `parts`, in order, without re-encoding a value:
    /// all dense ([`PackedWeights::concat_rows`]) or all sparse
    /// ([`SparseWeights::concat_rows`]), one format and one `k`.
    pub fn concat_rows(mut parts: Vec<LayerWeights>) -> crate::error::Result<LayerWeights> {
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let dense: Vec<&PackedWeights> = parts
            .iter()
            .filter_map(|p| match p {
                LayerWeights::Dense(d) => Some(d),
                LayerWeights::Sparse(_) => None,
            })
            .collect();
        if dense.len() == parts.len() {
            return Ok(PackedWeights::concat_rows(&dense)?.into());
        }
        let sparse: Vec<&SparseWeights> = parts
            .iter()
            .filter_map(|p| match p {
                LayerWeights::Sparse(s) => Some(s),
                LayerWeights::Dense(_) => None,
            })
            .collect();
        if sparse.len() == parts.len() {
            return Ok(SparseWeights::concat_rows(&sparse)?.into());
        }
        Err(crate::error::Error::invalid(
            "concat_rows: dense and sparse weights cannot be stacked into one layer",
        ))
    }
}

impl From<PackedWeights> for LayerWeights {
    fn from(w: PackedWeights) -> Self {
        LayerWeights::Dense(w)
    }
}

impl From<SparseWeights> for LayerWeights {
    fn from(w: SparseWeights) -> Self {
        LayerWeights::Sparse(w)
    }
}
