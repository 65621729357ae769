//! Stacking weight matrices by rows, so that projections of one input (a decoder's Q, K and
//! V; the gate and up projections of a SwiGLU) run as one wider layer.

use super::{PackedWeights, WeightFormat, pack};
use crate::error::{Error, Result};

impl PackedWeights {
    /// The matrix whose rows are the rows of `parts`, in order. Every part must have the
    /// same format and `k`; the result decodes to the parts' decoded rows, bit for bit.
    pub fn concat_rows(parts: &[&PackedWeights]) -> Result<PackedWeights> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("concat_rows: no matrices to concatenate"))?;
        let (format, k) = (first.format, first.k);
        for (i, p) in parts.iter().enumerate() {
            if p.format != format {
                return Err(Error::invalid(format!(
                    "concat_rows: part {i} is {}, part 0 is {}",
                    p.format.name(),
                    format.name()
                )));
            }
            if p.k != k {
                return Err(Error::shape(format!(
                    "concat_rows: part {i} has k = {}, part 0 has k = {k}",
                    p.k
                )));
            }
        }
        let n = parts.iter().map(|p| p.n).sum();
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        let g = first.groups();
        // Packed halves and nibbles of one part may end mid-word: unpack and re-pack them.
        let halves = |of: fn(&PackedWeights) -> &Vec<u32>| {
            let all: Vec<u16> = parts
                .iter()
                .flat_map(|p| (0..p.n * g).map(move |i| pack::half_at(of(p), i)))
                .collect();
            pack::pack_halves(&all)
        };
        let (scales, zeros) = match format {
            WeightFormat::F32 | WeightFormat::F16 => (Vec::new(), Vec::new()),
            WeightFormat::Int8 => (
                parts
                    .iter()
                    .flat_map(|p| p.scales.iter().copied())
                    .collect(),
                Vec::new(),
            ),
            WeightFormat::Int8G32
            | WeightFormat::Int4 {
                asymmetric: false, ..
            } => (halves(|p| &p.scales), Vec::new()),
            WeightFormat::Int4Min { .. } | WeightFormat::Binary { mean: true, .. } => {
                (halves(|p| &p.scales), halves(|p| &p.zeros))
            }
            WeightFormat::Binary { .. }
            | WeightFormat::Ternary { .. }
            | WeightFormat::Ternary16 { .. } => (halves(|p| &p.scales), Vec::new()),
            WeightFormat::Int4 {
                asymmetric: true, ..
            } => {
                let all: Vec<u32> = parts
                    .iter()
                    .flat_map(|p| (0..p.n * g).map(move |i| pack::nibble_at(&p.zeros, i)))
                    .collect();
                (halves(|p| &p.scales), pack::pack_nibbles(&all))
            }
        };
        Ok(PackedWeights {
            format,
            n,
            k,
            data,
            scales,
            zeros,
        })
    }
}
