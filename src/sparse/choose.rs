//! Choosing how to store a pruned matrix: dense, CSR, BSR or 2:4, whichever a cost model
//! predicts to be fastest on the adapter.
//!
//! With few activation rows (`m ≤ 8`) a linear layer is memory-bound: its time is the bytes it
//! must read divided by the rate its kernel reads them at. Each format's rate differs (CSR
//! gathers x per element and masks partial units, BSR reads whole blocks, 2:4 decodes
//! positions), so the model keeps one *measured* effective rate per format: bytes the kernel
//! reads to use every weight once, divided by its GPU time, both from `sparq bench --sparse`
//! on the adapter ([`CostModel::from_measurements`]). The estimate of a representation is
//! `launch + bytes / rate`; [`choose`] counts the bytes each representation of the given
//! matrix would take (without building it) and picks the smallest estimate. 2:4 is only a
//! candidate when the matrix is 2:4 sparse; CSR only for f32 and f16 values.

use super::{Csr, TwoFour, ValueType, check_matrix};
use crate::error::Result;
use crate::gpu::Caps;

/// A way to store a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Representation {
    /// Dense rows of 16-byte blocks ([`crate::formats`]).
    Dense,
    /// Compressed sparse rows.
    Csr,
    /// Block-sparse rows (bytes estimated for `1 × 32` blocks).
    Bsr,
    /// 2:4 compressed.
    TwoFour,
}

impl Representation {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Representation::Dense => "dense",
            Representation::Csr => "csr",
            Representation::Bsr => "bsr",
            Representation::TwoFour => "2:4",
        }
    }

    /// Every representation, in the order reports list them.
    pub fn all() -> [Representation; 4] {
        [
            Representation::Dense,
            Representation::Csr,
            Representation::Bsr,
            Representation::TwoFour,
        ]
    }
}

/// Measured effective read rate (GB/s of the bytes a format must read) per representation,
/// and the fixed cost of one dispatch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CostModel {
    /// GB/s per representation, in the order of [`Representation::all`].
    pub gbps: [f64; 4],
    /// Fixed µs per layer (launch and the tail of the last wave).
    pub launch_us: f64,
    /// Where the figures come from.
    pub source: String,
}

impl CostModel {
    /// Figures measured on an NVIDIA H100 (Vulkan) with `sparq bench --sparse` at m = 1:
    /// medians of the 8192 × 8192 and 4096 × 14336 sweeps, averaged (BENCHMARKS.md,
    /// "Sparse (issue 3)"). The launch term is the time of the sparsest cases (~7 µs) less
    /// their bytes at full rate.
    pub fn h100() -> Self {
        CostModel {
            gbps: [1840.0, 2060.0, 510.0, 545.0],
            launch_us: 5.0,
            source: "H100 sweep (m = 1), 2026-11-25".into(),
        }
    }

    /// Figures measured on an NVIDIA H200 (Vulkan) at m = 1, 2026-12-01 (BENCHMARKS.md,
    /// "Sparse (issue 3) on the H200"): dense and 2:4 from the last sweep, CSR from the first
    /// one (x read from global memory, as by default; the last staged x), BSR from the 4 × 32
    /// and 16 × 16 blocks the bench now sweeps.
    pub fn h200() -> Self {
        CostModel {
            gbps: [2610.0, 2112.0, 762.0, 1224.0],
            launch_us: 5.0,
            source: "H200 sweeps (m = 1), 2026-12-01".into(),
        }
    }

    /// The measured figures for the adapter when sparq has them, else the H100's scaled to a
    /// typical bandwidth of the device type (the ratios between formats are what matter).
    pub fn for_caps(caps: &Caps) -> Self {
        if caps.name.contains("H200") {
            return Self::h200();
        }
        let h = Self::h100();
        if caps.name.contains("H100") {
            return h;
        }
        let scale = if caps.is_cpu() { 0.01 } else { 0.2 };
        CostModel {
            gbps: h.gbps.map(|g| g * scale),
            launch_us: if caps.is_cpu() { 50.0 } else { h.launch_us },
            source: format!("H100 ratios × {scale}"),
        }
    }

    /// A model from measurements `(representation, bytes read, GPU µs)`: each
    /// representation's rate is the median of its measurements; representations without
    /// any keep `fallback`'s rate, scaled by the ratio of the measured dense rate.
    pub fn from_measurements(
        measured: &[(Representation, u64, f64)],
        fallback: &CostModel,
        source: &str,
    ) -> Self {
        let rate = |r: Representation| {
            let mut v: Vec<f64> = measured
                .iter()
                .filter(|(q, _, us)| *q == r && *us > 0.0)
                .map(|(_, b, us)| *b as f64 / us / 1e3)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let dense_scale = rate(Representation::Dense).map_or(1.0, |d| d / fallback.gbps[0]);
        let mut gbps = fallback.gbps;
        for (i, r) in Representation::all().into_iter().enumerate() {
            gbps[i] = rate(r).unwrap_or(fallback.gbps[i] * dense_scale);
        }
        CostModel {
            gbps,
            launch_us: fallback.launch_us,
            source: source.to_string(),
        }
    }

    /// Predicted µs to read `bytes` with `r`'s kernel.
    pub fn estimate_us(&self, r: Representation, bytes: u64) -> f64 {
        let i = Representation::all().iter().position(|&q| q == r).unwrap();
        self.launch_us + bytes as f64 / (self.gbps[i] * 1e3)
    }
}

/// One candidate representation of a matrix.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    /// The representation.
    pub representation: Representation,
    /// Bytes a forward pass reads.
    pub bytes: u64,
    /// The model's estimate in µs.
    pub estimate_us: f64,
}

/// What [`choose`] decided, with the alternatives it weighed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FormatChoice {
    /// The representation with the smallest estimate.
    pub pick: Representation,
    /// Every representation that can hold the matrix.
    pub candidates: Vec<Candidate>,
}

/// Bytes of the representations of `w` (`n × k`) with values of type `vt`; `None` for one
/// that cannot hold it.
pub fn representation_bytes(
    w: &[f32],
    n: usize,
    k: usize,
    vt: ValueType,
) -> Vec<(Representation, Option<u64>)> {
    let bits = vt.bits() as u64;
    let (n64, k64) = (n as u64, k as u64);
    let row_scales = |per_row: u64| match vt {
        ValueType::Int8 => 4 * n64,
        ValueType::Int4 => 2 * per_row,
        _ => 0,
    };
    // Dense: rows of 16-byte blocks; int8 one f32 scale per row, int4 an f16 per 32 weights.
    let dense_row = (k64 * bits).div_ceil(128) * 16;
    let dense = n64 * dense_row + row_scales(n64 * k64.div_ceil(32));
    let nnz = w.iter().filter(|&&v| v != 0.0).count() as u64;
    let csr = matches!(vt, ValueType::F32 | ValueType::F16).then(|| {
        let ib = if k <= Csr::MAX_K_U16 { 2 } else { 4 };
        4 * (n64 + 1) + nnz.div_ceil(8) * 8 * (ib + bits / 8)
    });
    let bc = 32;
    let mut blocks = 0u64;
    let mut two_four = true;
    for r in 0..n {
        let row = &w[r * k..(r + 1) * k];
        blocks += row
            .chunks(bc)
            .filter(|c| c.iter().any(|&v| v != 0.0))
            .count() as u64;
        two_four &= row
            .chunks(4)
            .all(|g| g.iter().filter(|&&v| v != 0.0).count() <= 2);
    }
    let bsr = 4 * (n64 + 1) + 4 * blocks + blocks * (bc as u64 * bits / 8) + row_scales(blocks);
    let tf = two_four.then(|| {
        let groups = k64.div_ceil(4);
        let vals = (2 * groups * bits).div_ceil(128) * 16;
        let meta = groups.div_ceil(32) * 16;
        n64 * (vals + meta) + row_scales(n64 * (2 * groups).div_ceil(TwoFour::INT4_GROUP as u64))
    });
    vec![
        (Representation::Dense, Some(dense)),
        (Representation::Csr, csr),
        (Representation::Bsr, Some(bsr)),
        (Representation::TwoFour, tf),
    ]
}

/// Picks the representation of the pruned matrix `w` (`n × k`, values of type `vt`) with the
/// smallest predicted time under `model` (see [`CostModel`]).
pub fn choose(
    w: &[f32],
    n: usize,
    k: usize,
    vt: ValueType,
    model: &CostModel,
) -> Result<FormatChoice> {
    check_matrix(w, n, k)?;
    let candidates: Vec<Candidate> = representation_bytes(w, n, k, vt)
        .into_iter()
        .filter_map(|(r, b)| {
            b.map(|bytes| Candidate {
                representation: r,
                bytes,
                estimate_us: model.estimate_us(r, bytes),
            })
        })
        .collect();
    let pick = candidates
        .iter()
        .min_by(|a, b| a.estimate_us.total_cmp(&b.estimate_us))
        .map(|c| c.representation)
        .unwrap_or(Representation::Dense);
    Ok(FormatChoice { pick, candidates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(name: &str, device_type: &str) -> Caps {
        Caps {
            name: name.into(),
            backend: "Vulkan".into(),
            device_type: device_type.into(),
            driver: String::new(),
            f16: true,
            subgroups: true,
            subgroup_min: 32,
            subgroup_max: 32,
            timestamps: true,
            dot4_i8: true,
            coop_matrix: Vec::new(),
            max_buffer: 1 << 30,
            max_storage_binding: 1 << 30,
            workgroup_storage: 48 * 1024,
            max_invocations: 1024,
            max_workgroups_per_dim: 65535,
        }
    }

    #[test]
    fn measured_gpus_get_their_figures_others_scaled_ones() {
        let h200 = CostModel::for_caps(&caps("NVIDIA H200", "DiscreteGpu"));
        assert_eq!(h200.gbps, CostModel::h200().gbps);
        let h100 = CostModel::for_caps(&caps("NVIDIA H100 80GB HBM3", "DiscreteGpu"));
        assert_eq!(h100.gbps, CostModel::h100().gbps);
        let cpu = CostModel::for_caps(&caps("llvmpipe (LLVM 15.0.6, 256 bits)", "Cpu"));
        assert!(cpu.gbps.iter().zip(h100.gbps).all(|(c, h)| *c < h));
        assert!(cpu.source.contains("H100 ratios"));
    }
}
