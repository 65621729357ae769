//! The precision a linear kernel reads its activations in, which is not always the tensor's:
//! the int8 GEMVs (`GemvSubgroupQ8`, `GemvWorkgroupQ8`) and `GemmDp4a` quantize them to int8
//! first, and the tensor-core GEMM stages them as f16. Reports say which a model used, so
//! that two runs of the same weights that differ in their last digits (one device's GEMV on
//! int8 activations against the batch-invariant tiled GEMM's f32) are told apart.

use super::Strategy;
use crate::tensor::ActDType;
use std::sync::atomic::{AtomicU8, Ordering};

/// The precision of the activations a linear kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ActivationPrecision {
    /// 32-bit floats, as stored.
    F32,
    /// 16-bit floats: f16 activation tensors, or f32 ones staged as f16 by tensor cores.
    F16,
    /// int8 with a scale per block (GEMV: 32 values; 64 or 80 for ternary weights) or per
    /// row (`GemmDp4a`).
    Int8,
}

impl ActivationPrecision {
    /// Every precision, in order.
    pub const ALL: [ActivationPrecision; 3] = [Self::F32, Self::F16, Self::Int8];

    /// The precision `strategy` reads activations of type `dtype` in.
    pub fn of(strategy: Strategy, dtype: ActDType) -> Self {
        match strategy {
            s if s.quantizes_activations() || s == Strategy::GemmDp4a => Self::Int8,
            Strategy::GemmCoop => Self::F16,
            _ => Self::of_dtype(dtype),
        }
    }

    /// The precision of kernels that read activations as stored (sparse kernels).
    pub fn of_dtype(dtype: ActDType) -> Self {
        match dtype {
            ActDType::F32 => Self::F32,
            ActDType::F16 => Self::F16,
        }
    }

    /// Short name for reports: `f32`, `f16`, `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The precisions a layer's plans have used, recorded as they are built (plans are built on
/// shared layers from several threads, hence an atomic).
#[derive(Debug, Default)]
pub struct PrecisionsUsed(AtomicU8);

impl PrecisionsUsed {
    /// Records that a plan reads activations in `p`.
    pub fn record(&self, p: ActivationPrecision) {
        self.0.fetch_or(p.bit(), Ordering::Relaxed);
    }

    /// The precisions recorded so far, in [`ActivationPrecision::ALL`] order.
    pub fn get(&self) -> Vec<ActivationPrecision> {
        let bits = self.0.load(Ordering::Relaxed);
        ActivationPrecision::ALL
            .into_iter()
            .filter(|p| bits & p.bit() != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizing_kernels_read_int8_and_others_the_tensor_type() {
        use ActivationPrecision::*;
        for s in [
            Strategy::GemvSubgroupQ8,
            Strategy::GemvWorkgroupQ8,
            Strategy::GemmDp4a,
        ] {
            assert_eq!(ActivationPrecision::of(s, ActDType::F32), Int8, "{s:?}");
        }
        assert_eq!(
            ActivationPrecision::of(Strategy::GemmCoop, ActDType::F32),
            F16
        );
        for s in [
            Strategy::GemmTiled,
            Strategy::GemvSubgroup,
            Strategy::GemvWorkgroup,
        ] {
            assert_eq!(ActivationPrecision::of(s, ActDType::F32), F32, "{s:?}");
            assert_eq!(ActivationPrecision::of(s, ActDType::F16), F16, "{s:?}");
        }
        let used = PrecisionsUsed::default();
        assert!(used.get().is_empty());
        used.record(Int8);
        used.record(F32);
        used.record(Int8);
        assert_eq!(used.get(), [F32, Int8]);
    }
}
