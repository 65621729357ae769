//! Choosing int4 scales (and zero points). Scaling each group to its largest magnitude wastes
//! most of the 16 levels on one outlier; a slightly smaller range clips that weight a little
//! and rounds all the others on a finer step. Each group therefore takes, among a few clipped
//! ranges, the scale with the least squared error of its own weights (all-MiniLM-L6-v2, worst
//! cosine to PyTorch over the test sentences: int4 g32 0.9332 → 0.9384, asymmetric
//! 0.9516 → 0.9563). The full range comes first, so ties keep it, and zero weights always
//! decode to exactly zero.

use half::f16;

/// Fractions of a group's range that are tried.
const CLIP: [f32; 11] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5];

/// `v` as an f16 scale; never zero, so decoding never multiplies by a flushed scale.
fn scale_f16(v: f32) -> f16 {
    let s = f16::from_f32(v);
    if s.to_f32() > 0.0 {
        s
    } else {
        f16::MIN_POSITIVE_SUBNORMAL
    }
}

/// Symmetric scale of one group (codes −8..7 around zero point 8): the candidate with the
/// least squared error, 1 for an all-zero group.
pub fn symmetric_scale(vals: &[f32]) -> f16 {
    let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return f16::ONE;
    }
    let error = |s: f32| -> f32 {
        vals.iter()
            .map(|&v| (v - (v / s).round().clamp(-8.0, 7.0) * s).powi(2))
            .sum()
    };
    let mut best = (f32::INFINITY, f16::ONE);
    for c in CLIP {
        // Dividing by 8 uses the code −8 where the extreme weight is negative.
        for levels in [7.0, 8.0] {
            let s = scale_f16(amax * c / levels);
            let e = error(s.to_f32());
            if e < best.0 {
                best = (e, s);
            }
        }
    }
    best.1
}

/// Asymmetric scale and zero point of one group (codes 0..15): the candidate with the least
/// squared error. The range always includes 0, so that zero weights stay exactly zero.
pub fn asymmetric_params(vals: &[f32]) -> (f16, u8) {
    let lo = vals.iter().fold(0f32, |m, &v| m.min(v));
    let hi = vals.iter().fold(0f32, |m, &v| m.max(v));
    if hi <= lo {
        return (f16::ONE, 0);
    }
    let error = |s: f32, z: f32| -> f32 {
        vals.iter()
            .map(|&v| (v - (((v / s).round() + z).clamp(0.0, 15.0) - z) * s).powi(2))
            .sum()
    };
    let mut best = (f32::INFINITY, f16::ONE, 0u8);
    for c in CLIP {
        let s = scale_f16((hi - lo) * c / 15.0);
        let z = (-lo * c / s.to_f32()).round().clamp(0.0, 15.0);
        let e = error(s.to_f32(), z);
        if e < best.0 {
            best = (e, s, z as u8);
        }
    }
    (best.1, best.2)
}

/// Scale and zero point of one group: [`asymmetric_params`], or [`symmetric_scale`] with
/// zero point 8.
pub fn group_params(vals: &[f32], asymmetric: bool) -> (f16, u8) {
    if asymmetric {
        asymmetric_params(vals)
    } else {
        (symmetric_scale(vals), 8)
    }
}

/// Scale and zero point of every group of `w` (`n × k`, groups of `g` along `k`), row-major by
/// group. The search costs about twenty passes over the weights, so rows are spread over the
/// machine's cores.
pub(super) fn all_group_params(
    w: &[f32],
    n: usize,
    k: usize,
    g: usize,
    asymmetric: bool,
) -> Vec<(f16, u8)> {
    let groups = k.div_ceil(g);
    let mut out = vec![(f16::ONE, 0u8); n * groups];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // Small matrices are not worth a thread each.
    let rows_per = n.div_ceil(threads).max(65536_usize.div_ceil(k));
    std::thread::scope(|scope| {
        for (chunk_i, chunk) in out.chunks_mut(rows_per * groups).enumerate() {
            scope.spawn(move || {
                for (i, p) in chunk.iter_mut().enumerate() {
                    let r = chunk_i * rows_per + i / groups;
                    let c0 = (i % groups) * g;
                    let vals = &w[r * k + c0..r * k + (c0 + g).min(k)];
                    *p = group_params(vals, asymmetric);
                }
            });
        }
    });
    out
}
