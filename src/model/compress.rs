//! How `sparq pack` stores each float linear weight: quantized dense, or pruned and stored in
//! a sparse format whose values are quantized the same way.
//!
//! | `--prune` | pruning | storage |
//! | --- | --- | --- |
//! | (none) | – | dense, `--format` |
//! | `2:4` | [`crate::prune::n_of_m`] 2 of 4 | [`TwoFour`], values in `--format` |
//! | `magnitude:S` | [`crate::prune::magnitude`], fraction `S` | [`Csr`], f32 or f16 values |
//! | `random:S` | [`crate::prune::random`], fraction `S`, seed 0 (the baseline) | [`Csr`] |
//! | `global:S` | [`crate::prune::magnitude_global`]: one threshold over all linear weights | [`Csr`] |
//! | `blocks:RxC:S` | [`crate::prune::blocks_l2`], fraction `S` of `R × C` blocks | [`Bsr`] |
//!
//! Sparse int4 is symmetric with the sparse formats' own groups (a 2:4 scale per 32 kept
//! values, a BSR scale per block row), so `--format int4` stands for any int4 group there.
//! Binary and ternary weights are dense only (a pruning with them is refused).
//!
//! With `--calibrate` ([`Compression::store_calibrated`]): dense int4, binary and ternary
//! weights are rounded by GPTQ ([`crate::formats::gptq`]); `2:4` and `magnitude:S` are
//! pruned by SparseGPT
//! ([`crate::prune::calibrated`], `magnitude:S` then prunes `S` of every row); the others are
//! refused.

use crate::error::{Error, Result};
use crate::formats::gptq::{self, Hessian};
use crate::formats::{PackedWeights, WeightFormat};
use crate::model::config::Architecture;
use crate::model::loader::{Store, WeightFile};
use crate::prune::calibrated::{Pattern, prune_calibrated};
use crate::prune::{PruneReport, blocks_l2, magnitude, magnitude_global, n_of_m, random};
use crate::sparse::{Bsr, Csr, SparseWeights, TwoFour, ValueType, check_kernel_block};
use crate::weights::LayerWeights;
use std::collections::HashMap;

/// Pruning followed by a sparse format.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SparseStorage {
    /// 2:4 pruning, stored as 2:4.
    TwoFour,
    /// Unstructured magnitude pruning to `sparsity`, stored as CSR.
    Csr {
        /// Fraction of weights zeroed.
        sparsity: f64,
    },
    /// Random pruning to `sparsity` (seed 0), stored as CSR: the baseline magnitude pruning
    /// must beat.
    Random {
        /// Fraction of weights zeroed.
        sparsity: f64,
    },
    /// Magnitude pruning with one threshold over every linear weight of the model, so that
    /// layers of small weights lose more, stored as CSR ([`pack_model`] only).
    Global {
        /// Fraction of all linear weights zeroed.
        sparsity: f64,
    },
    /// Pruning of whole `rows × cols` blocks by L2 norm, stored as BSR.
    Bsr {
        /// Block rows.
        rows: usize,
        /// Block columns.
        cols: usize,
        /// Fraction of blocks zeroed.
        sparsity: f64,
    },
}

/// How a float linear weight is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compression {
    /// Dense format, or value type of the sparse format.
    pub format: WeightFormat,
    /// Pruning and sparse format, if any.
    pub sparse: Option<SparseStorage>,
}

impl SparseStorage {
    /// Parses `2:4`, `magnitude:S`, `random:S`, `global:S` or `blocks:RxC:S`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("pruning '{s}' is not {}", prune_specs()));
        let fraction = |v: &str| -> Result<f64> {
            let f: f64 = v.parse().map_err(|_| bad())?;
            if (0.0..=1.0).contains(&f) {
                Ok(f)
            } else {
                Err(bad())
            }
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["2", "4"] => Ok(SparseStorage::TwoFour),
            ["magnitude", f] => Ok(SparseStorage::Csr {
                sparsity: fraction(f)?,
            }),
            ["random", f] => Ok(SparseStorage::Random {
                sparsity: fraction(f)?,
            }),
            ["global", f] => Ok(SparseStorage::Global {
                sparsity: fraction(f)?,
            }),
            ["blocks", shape, f] => {
                let (r, c) = shape.split_once(['x', 'X']).ok_or_else(bad)?;
                let (rows, cols) = (r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?);
                if rows == 0 || cols == 0 {
                    return Err(bad());
                }
                Ok(SparseStorage::Bsr {
                    rows,
                    cols,
                    sparsity: fraction(f)?,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Every `--prune` spec `sparq pack` takes: the sparse storages [`SparseStorage::parse`]
/// reads, and `neurons:S` ([`crate::model::shrink::drop_neurons`], a smaller dense model).
/// Messages list them from here, so that a new spec cannot be left out of one.
pub const PRUNE_SPECS: [&str; 6] = [
    "2:4",
    "magnitude:S",
    "random:S",
    "global:S",
    "blocks:RxC:S",
    "neurons:S",
];

/// [`PRUNE_SPECS`] as a sentence: `one of 2:4, ..., neurons:S (S a fraction in [0, 1])`.
pub fn prune_specs() -> String {
    format!(
        "one of {} (S a fraction in [0, 1], RxC a block shape)",
        PRUNE_SPECS.join(", ")
    )
}

impl Compression {
    /// Dense weights in `format`.
    pub fn dense(format: WeightFormat) -> Self {
        Compression {
            format,
            sparse: None,
        }
    }

    /// The value type of the sparse formats for this format.
    fn value_type(&self) -> Result<ValueType> {
        Ok(match self.format {
            WeightFormat::F32 => ValueType::F32,
            WeightFormat::F16 => ValueType::F16,
            WeightFormat::Int8 => ValueType::Int8,
            WeightFormat::Int4 {
                asymmetric: false, ..
            } => ValueType::Int4,
            WeightFormat::Int4 { .. } => {
                return Err(Error::invalid(
                    "sparse int4 values are symmetric: use int4 without a zero point",
                ));
            }
            f if f.is_low_bit() => {
                return Err(Error::invalid(format!(
                    "{} weights are stored dense: pruned (sparse) values are f32, f16, int8 \
                     or symmetric int4",
                    f.name()
                )));
            }
            f => {
                return Err(Error::invalid(format!(
                    "sparse values are f32, f16, int8 or symmetric int4, not {}",
                    f.name()
                )));
            }
        })
    }

    /// Whether this compression can be packed into a file the runtime loads, checked before
    /// any work: sparse values of a type the sparse formats hold, and BSR blocks of a shape
    /// the kernels run ([`check_kernel_block`], the check the kernel's launcher makes).
    pub fn check(&self) -> Result<()> {
        let Some(sparse) = self.sparse else {
            return Ok(());
        };
        let vt = self.value_type()?;
        if let SparseStorage::Bsr { rows, cols, .. } = sparse {
            check_kernel_block(rows, cols, vt)?;
        }
        Ok(())
    }

    /// Whether calibration applies: to dense int4, binary and ternary (GPTQ), and to 2:4 and
    /// `magnitude:S` pruning with values the sparse formats hold (SparseGPT).
    pub fn check_calibrated(&self) -> Result<()> {
        self.calibrated_pattern().map(|_| ())
    }

    /// What calibration does: `None` rounds dense int4, binary or ternary weights by GPTQ, a
    /// pattern prunes to it; the rest is refused.
    fn calibrated_pattern(&self) -> Result<Option<Pattern>> {
        let pattern = match self.sparse {
            None if gptq::rounds(self.format) => return Ok(None),
            None => {
                return Err(Error::invalid(format!(
                    "calibration rounds int4, binary or ternary weights, not {}",
                    self.format.name()
                )));
            }
            Some(SparseStorage::TwoFour) => Pattern::NofM { keep: 2, group: 4 },
            Some(SparseStorage::Csr { sparsity }) => Pattern::Fraction { sparsity },
            Some(other) => {
                return Err(Error::invalid(format!(
                    "calibration prunes to 2:4 or magnitude:S, not {other:?}"
                )));
            }
        };
        self.value_type()?;
        Ok(Some(pattern))
    }

    /// Stores `w` like [`Compression::store`], with the layer's calibration inputs `h`:
    /// dense int4, binary and ternary rounded by GPTQ ([`gptq::quantize_calibrated`]), 2:4 and `magnitude:S`
    /// pruned by SparseGPT ([`prune_calibrated`]; `magnitude:S` then takes the fraction `S`
    /// of every row).
    pub fn store_calibrated(
        &self,
        w: &[f32],
        n: usize,
        k: usize,
        h: &Hessian,
    ) -> Result<(LayerWeights, PruneReport)> {
        let Some(pattern) = self.calibrated_pattern()? else {
            let p = gptq::quantize_calibrated(w, n, k, self.format, h)?;
            return Ok((p.into(), PruneReport::measure(w, w)));
        };
        let p = prune_calibrated(w, n, k, pattern, h)?;
        let vt = self.value_type()?;
        let weights: SparseWeights = match pattern {
            Pattern::NofM { .. } => TwoFour::from_dense(&p.w, n, k, vt)?.into(),
            Pattern::Fraction { .. } => Csr::from_dense(&p.w, n, k, vt)?.into(),
        };
        Ok((weights.into(), p.report))
    }

    /// Stores `w` (`n × k`, row-major), returning the weights and what pruning cost (a zero
    /// report when nothing was pruned).
    pub fn store(&self, w: &[f32], n: usize, k: usize) -> Result<(LayerWeights, PruneReport)> {
        let Some(sparse) = self.sparse else {
            let p = PackedWeights::quantize(w, n, k, self.format)?;
            return Ok((p.into(), PruneReport::measure(w, w)));
        };
        let vt = self.value_type()?;
        let (weights, report): (SparseWeights, PruneReport) = match sparse {
            SparseStorage::TwoFour => {
                let p = n_of_m(w, n, k, 2, 4)?;
                (TwoFour::from_dense(&p.w, n, k, vt)?.into(), p.report)
            }
            SparseStorage::Csr { sparsity } => {
                let p = magnitude(w, n, k, sparsity)?;
                (Csr::from_dense(&p.w, n, k, vt)?.into(), p.report)
            }
            SparseStorage::Random { sparsity } => {
                let p = random(w, n, k, sparsity, 0)?;
                (Csr::from_dense(&p.w, n, k, vt)?.into(), p.report)
            }
            SparseStorage::Global { .. } => {
                return Err(Error::invalid(
                    "global pruning needs every layer at once: use compress::pack_model",
                ));
            }
            SparseStorage::Bsr {
                rows,
                cols,
                sparsity,
            } => {
                check_kernel_block(rows, cols, vt)?;
                // One block over the whole matrix: pruning keeps all of it or nothing.
                if rows >= n && cols >= k {
                    return Err(Error::invalid(format!(
                        "BSR blocks of {rows}×{cols} cover the whole {n}×{k} matrix: use \
                         smaller blocks"
                    )));
                }
                let p = blocks_l2(w, n, k, rows, cols, sparsity)?;
                (
                    Bsr::from_dense(&p.w, n, k, rows, cols, vt)?.into(),
                    p.report,
                )
            }
        };
        Ok((weights.into(), report))
    }
}

/// Float tensors (name, shape, values) of a packed model file.
pub type Floats = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Linear weights of a packed model file, by tensor name.
pub type Linears = Vec<(String, LayerWeights)>;

/// What [`pack_model`] did to the linear weights stored from floats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackReport {
    /// Linear weights in the file.
    pub layers: usize,
    /// Of those, weights the input already held packed or sparse, kept as they were (not
    /// pruned again, not counted below).
    pub kept: usize,
    /// Their formats, sorted, each once.
    pub formats: Vec<String>,
    /// Weights that are zero after pruning (pre-existing zeros included).
    pub zeros: usize,
    /// Weights in all.
    pub len: usize,
    /// ‖W − Ŵ‖/‖W‖ over all of them, pruning and quantization together.
    pub relative_error: f64,
}

/// Every weight of the model in `file` (architecture `arch`) as `c` stores it: the linear
/// weights compressed (already packed ones as they are), the rest as f32; with a report.
/// With `calibration` (sums of each layer's inputs by tensor name, from
/// [`crate::model::calibrate`]), weights are stored by [`Compression::store_calibrated`].
pub fn pack_model(
    file: &WeightFile,
    arch: &Architecture,
    c: &Compression,
    calibration: Option<&HashMap<String, Hessian>>,
) -> Result<(Floats, Linears, PackReport)> {
    let packed = pack_with(arch, c, calibration, |store| {
        arch.family().pack(file, store)
    })?;
    let family = arch.family();
    super::loader::check_unused_except(&[file], &|n| family.expected_unused(n))?;
    Ok(packed)
}

/// [`pack_model`] over any reader of the model's tensors: `read` hands every linear weight
/// it reads as floats to the store it is given (weights already packed it keeps), and
/// returns the float tensors and the stored linear weights. Weights the architecture keeps
/// dense ([`super::network::Family::dense_only`]) are stored dense in `c.format`.
pub fn pack_with(
    arch: &Architecture,
    c: &Compression,
    calibration: Option<&HashMap<String, Hessian>>,
    read: impl FnOnce(&mut Store<'_>) -> Result<(Floats, Linears)>,
) -> Result<(Floats, Linears, PackReport)> {
    if calibration.is_some() {
        c.check_calibrated()?;
    }
    let global = match c.sparse {
        Some(SparseStorage::Global { sparsity }) => Some(sparsity),
        _ => None,
    };
    // Per float layer: (name, original, n, k) and (the weights as stored, dequantized; what
    // pruning did). Global pruning stores every layer once it has seen them all, so its pass
    // keeps the floats (as f32 weights) and replaces them below.
    // Layers pruned by one global threshold wait in `global_seen` until all are read.
    let mut seen: Vec<(String, Vec<f32>, usize, usize)> = Vec::new();
    let mut global_seen: Vec<(String, Vec<f32>, usize, usize)> = Vec::new();
    let mut stored: Vec<(Vec<f32>, PruneReport)> = Vec::new();
    let family = arch.family();
    let mut store = |name: &str, w: &[f32], n: usize, k: usize| -> Result<LayerWeights> {
        let dense = family.dense_only(name);
        if global.is_some() && !dense {
            global_seen.push((name.to_string(), w.to_vec(), n, k));
            return Ok(PackedWeights::quantize(w, n, k, WeightFormat::F32)?.into());
        }
        seen.push((name.to_string(), w.to_vec(), n, k));
        let (weights, pruning) = match calibration.and_then(|m| m.get(name)) {
            Some(h) if !dense => c.store_calibrated(w, n, k, h),
            _ if dense => Compression::dense(c.format).store(w, n, k),
            _ => c.store(w, n, k),
        }
        .map_err(|e| super::loader::named(name, c.format.name(), e))?;
        refuse_emptied(name, w, &pruning)?;
        stored.push((weights.dequantize(), pruning));
        Ok(weights)
    };
    let (floats, mut packed) = read(&mut store)?;
    if let Some(sparsity) = global {
        let views: Vec<(&[f32], usize, usize)> = global_seen
            .iter()
            .map(|(_, w, n, k)| (w.as_slice(), *n, *k))
            .collect();
        let pruned = magnitude_global(&views, sparsity)?;
        for ((name, w, n, k), p) in global_seen.iter().zip(pruned.layers) {
            refuse_emptied(name, w, &PruneReport::measure(w, &p.w))?;
            let csr: SparseWeights = Csr::from_dense(&p.w, *n, *k, c.value_type()?)?.into();
            stored.push((csr.to_dense(), PruneReport::measure(w, &p.w)));
            if let Some(slot) = packed.iter_mut().find(|(m, _)| m == name) {
                slot.1 = csr.into();
            }
        }
        seen.append(&mut global_seen);
    }
    let views: Vec<(&[f32], &[f32])> = seen
        .iter()
        .zip(&stored)
        .map(|((_, a, _, _), (b, _))| (a.as_slice(), b.as_slice()))
        .collect();
    let formats: std::collections::BTreeSet<String> =
        packed.iter().map(|(_, w)| w.format_name()).collect();
    let report = PackReport {
        layers: packed.len(),
        kept: packed.len() - seen.len(),
        formats: formats.into_iter().collect(),
        zeros: stored.iter().map(|(_, r)| r.zeros).sum(),
        len: stored.iter().map(|(_, r)| r.len).sum(),
        relative_error: PruneReport::measure_many(&views).relative_error,
    };
    Ok((floats, packed, report))
}

/// A pruning that zeroed every weight of a layer that had some leaves a model that answers
/// nothing: refused, naming the layer.
fn refuse_emptied(name: &str, w: &[f32], pruning: &PruneReport) -> Result<()> {
    if pruning.zeros == pruning.len && w.iter().any(|&x| x != 0.0) {
        return Err(Error::invalid(format!(
            "pruning removes every weight of {name}: lower the sparsity or use smaller blocks"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spec the messages list is one that is taken: the sparse ones by `parse`, and
    /// `neurons:S` by `sparq pack` (the only one `parse` leaves to its caller).
    #[test]
    fn every_listed_prune_spec_is_accepted() {
        for spec in PRUNE_SPECS {
            let concrete = spec.replace("RxC", "4x32").replace('S', "0.5");
            match concrete.strip_prefix("neurons:") {
                Some(f) => assert_eq!(f.parse::<f64>().unwrap(), 0.5),
                None => assert!(SparseStorage::parse(&concrete).is_ok(), "{spec}"),
            }
        }
        let e = SparseStorage::parse("neuron:0.5").unwrap_err().to_string();
        assert!(e.contains("neurons:S") && e.contains("blocks:RxC:S"), "{e}");
    }

    #[test]
    fn prune_specs_parse_or_are_refused() {
        assert_eq!(SparseStorage::parse("2:4").unwrap(), SparseStorage::TwoFour);
        assert_eq!(
            SparseStorage::parse("magnitude:0.5").unwrap(),
            SparseStorage::Csr { sparsity: 0.5 }
        );
        assert_eq!(
            SparseStorage::parse("random:0.25").unwrap(),
            SparseStorage::Random { sparsity: 0.25 }
        );
        assert_eq!(
            SparseStorage::parse("blocks:4x32:0.9").unwrap(),
            SparseStorage::Bsr {
                rows: 4,
                cols: 32,
                sparsity: 0.9
            }
        );
        for bad in [
            "",
            "2:8",
            "magnitude",
            "magnitude:1.5",
            "random:-0.1",
            "blocks:4:0.5",
            "blocks:0x32:0.5",
            "blocks:4x32",
            "csr:0.5",
        ] {
            assert!(SparseStorage::parse(bad).is_err(), "'{bad}' parsed");
        }
    }

    #[test]
    fn sparse_int4_refuses_zero_points() {
        let c = Compression {
            format: WeightFormat::Int4 {
                group: 32,
                asymmetric: true,
            },
            sparse: Some(SparseStorage::TwoFour),
        };
        assert!(c.store(&[1.0; 8], 2, 4).is_err());
        // Binary and ternary weights are dense only: pruning them is refused before any work.
        for format in WeightFormat::low_bit() {
            for sparse in [SparseStorage::TwoFour, SparseStorage::Csr { sparsity: 0.5 }] {
                let c = Compression {
                    format,
                    sparse: Some(sparse),
                };
                let e = c.check().unwrap_err().to_string();
                assert!(e.contains("stored dense"), "{e}");
                assert!(c.store(&[1.0; 8], 2, 4).is_err());
            }
        }
        let c = Compression::dense(WeightFormat::Int8);
        let (w, r) = c.store(&[1.0, 0.0, 2.0, 3.0], 1, 4).unwrap();
        assert_eq!((w.format_name().as_str(), r.zeros), ("int8", 1));
    }
}
