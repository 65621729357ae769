//! How [`Model::submit`] cuts a batch into passes: at most `max_batch` rows ([`LoadOptions`])
//! each, and no more than the device's binding limits hold ([`Network::requests`] splits by
//! those). When a batch of sequences is cut at all, its sequences are first sorted by length,
//! so that each pass pads to its own longest sequence and few padding tokens are computed;
//! the results come back in the caller's order ([`Pending`] carries the permutation).
//!
//! [`LoadOptions`]: super::LoadOptions
//! [`Network::requests`]: super::network::Network::requests

use super::network::Request;
use super::{Batch, Model, Output};
use crate::error::{Error, Result};

/// The passes of a batch, and where each result row goes: `order[k]` is the caller's index
/// of the `k`-th row the passes yield (`None`: in order).
pub(super) struct Arranged {
    pub requests: Vec<Request>,
    pub order: Option<Vec<usize>>,
}

impl Model<'_> {
    /// The passes of `batch` (see the module docs).
    pub(super) fn arrange(&self, batch: &Batch) -> Result<Arranged> {
        let gpu = &*self.gpu;
        let tokenized;
        let batch = match batch {
            // Tokenised here rather than by the network, to sort by token count.
            Batch::Text(texts) if !texts.is_empty() && self.net.tokenizer().is_some() => {
                let (ids, types) = self.tokenize(texts)?;
                tokenized = Batch::Tokens {
                    ids,
                    types: Some(types),
                };
                &tokenized
            }
            other => other,
        };
        let rows = batch_rows(batch);
        let max = self.max_batch.map_or(usize::MAX, |m| m.get());
        if rows <= max {
            let requests = self.net.requests(gpu, batch)?;
            if requests.len() <= 1 {
                return Ok(Arranged {
                    requests,
                    order: None,
                });
            }
        }
        let Some((chunks, order)) = cut(batch, max) else {
            // A malformed batch (types or data that do not fit the rows): the network's
            // checks say what is wrong.
            return Ok(Arranged {
                requests: self.net.requests(gpu, batch)?,
                order: None,
            });
        };
        let mut requests = Vec::new();
        for chunk in &chunks {
            requests.extend(self.net.requests(gpu, chunk)?);
        }
        let identity = order.iter().enumerate().all(|(k, &i)| k == i);
        Ok(Arranged {
            requests,
            order: (!identity).then_some(order),
        })
    }
}

/// Rows of `batch` (inputs, sequences or feature rows).
fn batch_rows(batch: &Batch) -> usize {
    match batch {
        Batch::Text(t) => t.len(),
        Batch::Tokens { ids, .. } => ids.len(),
        Batch::Features { rows, .. } => *rows,
    }
}

/// `batch` as consecutive batches of at most `max` rows, sequences sorted by length first
/// (stable, so equal lengths keep their order), with the caller's index of each row in that
/// order; `None` for a batch that cannot be cut as it is (left to the network's checks).
fn cut(batch: &Batch, max: usize) -> Option<(Vec<Batch>, Vec<usize>)> {
    let max = max.max(1);
    match batch {
        Batch::Tokens { ids, types } => {
            if types.as_ref().is_some_and(|t| t.len() != ids.len()) {
                return None;
            }
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_by_key(|&i| ids[i].len());
            let chunks = order
                .chunks(max)
                .map(|part| Batch::Tokens {
                    ids: part.iter().map(|&i| ids[i].clone()).collect(),
                    types: types
                        .as_ref()
                        .map(|t| part.iter().map(|&i| t[i].clone()).collect()),
                })
                .collect();
            Some((chunks, order))
        }
        Batch::Features { rows, cols, data } => {
            if rows.checked_mul(*cols) != Some(data.len()) || *cols == 0 {
                return None;
            }
            let chunks = data
                .chunks(max.saturating_mul(*cols))
                .map(|d| Batch::Features {
                    rows: d.len() / cols,
                    cols: *cols,
                    data: d.to_vec(),
                })
                .collect();
            Some((chunks, (0..*rows).collect()))
        }
        // Text without a tokenizer: the network refuses it.
        Batch::Text(_) => None,
    }
}

/// `out`'s rows put back in the caller's order: row `k` goes to `order[k]`.
pub(super) fn unpermute(out: Output, order: &[usize]) -> Result<Output> {
    let cols = out.cols;
    let place = |v: &[f32]| {
        if out.rows != order.len() || v.len() != order.len() * cols {
            return Err(Error::invariant("a pass's results do not match its rows"));
        }
        let mut back = vec![0.0; v.len()];
        for (k, &i) in order.iter().enumerate() {
            back[i * cols..(i + 1) * cols].copy_from_slice(&v[k * cols..(k + 1) * cols]);
        }
        Ok(back)
    };
    Ok(Output {
        values: place(&out.values)?,
        probabilities: out.probabilities.as_deref().map(place).transpose()?,
        ..out
    })
}
