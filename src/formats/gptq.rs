//! Calibrated int4, binary and ternary rounding (GPTQ: Frantar et al., "GPTQ: Accurate Post-Training Quantization
//! for Generative Pre-trained Transformers", 2022). Rounding each weight to its nearest code
//! minimises the error of the weights; what matters is the error of the layer's outputs
//! `x · Wᵀ` on the inputs it really sees. With `H = E[x xᵀ]` over calibration inputs, GPTQ
//! rounds the columns of `W` in order and moves each column's rounding error onto the columns
//! not yet rounded, in the proportions `H⁻¹` gives, so that later columns absorb it.
//!
//! The result is an ordinary [`PackedWeights`] of the same format: the kernels do not know
//! how its codes were chosen. Each group's scale (and zero point or mean) is chosen as the
//! plain packer chooses it ([`super::int4`], [`super::low_bit`]) from the weights as updated
//! when the group's first column comes up; any scalar quantizer whose group scales are fixed
//! before its columns are rounded fits this loop. The inputs come from a host
//! model (see `crate::model::calibrate`); the cost is `O(n k²)` per layer plus a Cholesky
//! factorization and a triangular inverse of `H` (`O(k³)` each): seconds for MiniLM. The
//! column loop (`compensate_rows`) also prunes, in `crate::prune::calibrated` (SparseGPT).

use super::{PackedWeights, WeightFormat, int4, low_bit, pack};
use crate::error::{Error, Result};
use half::f16;

/// Damping of the Hessian, as a fraction of its mean diagonal.
const DAMP: f64 = 0.1;

/// Sum of `x xᵀ` over the calibration inputs of one layer (`k` wide).
#[derive(Clone, Debug)]
pub struct Hessian {
    k: usize,
    /// The lower triangle, row by row: row `i` holds columns `0..=i` from `i (i + 1) / 2`.
    sum: Vec<f64>,
    rows: usize,
}

impl Hessian {
    /// An empty sum for inputs of width `k`.
    pub fn new(k: usize) -> Self {
        Hessian {
            k,
            sum: vec![0.0; k * (k + 1) / 2],
            rows: 0,
        }
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Inputs added so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds the inputs `x` (`rows × k`, row-major).
    pub fn add(&mut self, x: &[f64]) {
        let k = self.k;
        for row in x.chunks_exact(k) {
            for (i, &xi) in row.iter().enumerate() {
                if xi != 0.0 {
                    let start = i * (i + 1) / 2;
                    let dst = &mut self.sum[start..=start + i];
                    for (d, &xj) in dst.iter_mut().zip(&row[..=i]) {
                        *d += xi * xj;
                    }
                }
            }
            self.rows += 1;
        }
    }

    /// Adds another sum of the same width.
    pub fn merge(&mut self, other: &Hessian) {
        debug_assert_eq!(self.k, other.k);
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        self.rows += other.rows;
    }

    /// Upper triangular `U` with `H⁻¹ = Uᵀ U` for the damped mean `H`: what
    /// [`compensate_rows`] moves errors with, for weights of width `k` (a
    /// [`crate::InputError::Shape`] when the sum is of another width or empty).
    pub(crate) fn inverse_factor(&self, k: usize) -> Result<Vec<f64>> {
        if self.k != k || self.rows == 0 {
            return Err(Error::shape(format!(
                "calibration of {} inputs of width {} for weights of width {k}",
                self.rows, self.k
            )));
        }
        // GPTQ's paper damps by 1 % of the mean diagonal; with fewer calibration tokens than
        // inputs (MiniLM's 1536-wide FFN output against ~900 built-in tokens) 10 % generalises
        // better (40 held-out sentences, int4 g32: mean cosine to f32 0.9869 at 1 %, 0.9890
        // at 10 %, 0.9878 at 30 %). More where that is still not definite.
        [DAMP, 1.0]
            .iter()
            .find_map(|&damp| inverse_factor(&self.damped(damp), self.k))
            .ok_or_else(|| Error::invalid("calibration inputs give no usable Hessian"))
    }

    /// `d H dᵀ` for the sum `H` damped as GPTQ damps it (by [`DAMP`] times its mean
    /// diagonal): the squared output error, summed over the calibration inputs, of a weight
    /// row off by `d` (`k` values), plus that multiple of `‖d‖²`, which keeps a row from
    /// fitting the calibration inputs' span at the cost of every other input.
    fn damped_error(&self, d: &[f64]) -> f64 {
        let k = self.k;
        let mean_diag = (0..k).map(|i| self.sum[i * (i + 1) / 2 + i]).sum::<f64>() / k as f64;
        let mut e = DAMP * mean_diag * d.iter().map(|v| v * v).sum::<f64>();
        for (i, &di) in d.iter().enumerate() {
            if di != 0.0 {
                let row = &self.sum[i * (i + 1) / 2..=i * (i + 1) / 2 + i];
                let below: f64 = row[..i].iter().zip(d).map(|(h, dj)| h * dj).sum();
                e += di * (row[i] * di + 2.0 * below);
            }
        }
        e
    }

    /// The mean `x xᵀ`, symmetric and full, with `damp` times its mean diagonal added to the
    /// diagonal (and 1 where an input was always zero) so that it is positive definite.
    fn damped(&self, damp: f64) -> Vec<f64> {
        let k = self.k;
        let scale = 1.0 / self.rows.max(1) as f64;
        let mut h = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..=i {
                let v = self.sum[i * (i + 1) / 2 + j] * scale;
                h[i * k + j] = v;
                h[j * k + i] = v;
            }
        }
        let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
        for i in 0..k {
            h[i * k + i] += if h[i * k + i] > 0.0 {
                damp * mean_diag
            } else {
                1.0
            };
        }
        h
    }
}

/// Lower Cholesky factor `L` (`a = L Lᵀ`) of the symmetric `k × k` matrix `a`, or `None` where
/// `a` is not positive definite.
fn cholesky(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum();
            if i == j {
                let d = a[i * k + i] - dot;
                if d.is_nan() || d <= 0.0 || d.is_infinite() {
                    return None;
                }
                l[i * k + i] = d.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - dot) / l[j * k + j];
            }
        }
    }
    Some(l)
}

/// Inverse of the lower triangular `l` (lower triangular too). Row `i` of the inverse is
/// `−(Σ_{p<i} l[i][p] · row p) / l[i][i]` plus `1 / l[i][i]` on the diagonal: rows only, so
/// every access is contiguous.
fn lower_inverse(l: &[f64], k: usize) -> Vec<f64> {
    let mut x = vec![0.0; k * k];
    for i in 0..k {
        let (done, rest) = x.split_at_mut(i * k);
        let row = &mut rest[..k];
        for p in 0..i {
            let f = l[i * k + p];
            if f != 0.0 {
                for (r, &v) in row[..=p].iter_mut().zip(&done[p * k..=p * k + p]) {
                    *r += f * v;
                }
            }
        }
        let d = 1.0 / l[i * k + i];
        for r in &mut row[..i] {
            *r *= -d;
        }
        row[i] = d;
    }
    x
}

/// Upper triangular `U` with `H⁻¹ = Uᵀ U`, the factor GPTQ's updates use. Reversing the order of
/// the inputs makes it one factorization and one triangular inverse: with `P` the reversal and
/// `P H P = L Lᵀ`, `H⁻¹ = (P L⁻¹ P)ᵀ (P L⁻¹ P)`, and `P L⁻¹ P` is upper triangular.
fn inverse_factor(h: &[f64], k: usize) -> Option<Vec<f64>> {
    let rev = |m: &[f64]| -> Vec<f64> {
        (0..k * k)
            .map(|idx| m[(k - 1 - idx / k) * k + (k - 1 - idx % k)])
            .collect()
    };
    let l = cholesky(&rev(h), k)?;
    Some(rev(&lower_inverse(&l, k)))
}

/// Whether [`quantize_calibrated`] rounds `format`: int4, binary and ternary, the group-wise
/// scalar quantizers whose scales can be fixed as each group's first column comes up.
pub fn rounds(format: WeightFormat) -> bool {
    matches!(format, WeightFormat::Int4 { .. }) || format.is_low_bit()
}

/// Quantizes `w` (`n × k`, row-major) into the int4, binary or ternary `format`, rounding with
/// GPTQ against the calibration inputs summed in `h`. Other formats are refused.
pub fn quantize_calibrated(
    w: &[f32],
    n: usize,
    k: usize,
    format: WeightFormat,
    h: &Hessian,
) -> Result<PackedWeights> {
    if !rounds(format) {
        return Err(Error::invalid(format!(
            "calibrated rounding is for int4, binary and ternary formats, not {}",
            format.name()
        )));
    }
    format.check()?;
    if w.len() != n * k || n == 0 {
        return Err(Error::shape(format!(
            "weights of {} values for {n} × {k}",
            w.len()
        )));
    }
    let u = h.inverse_factor(k)?;
    let WeightFormat::Int4 { group, asymmetric } = format else {
        return Ok(low_bit_calibrated(w, n, k, format, &u, h));
    };
    let g = group as usize;
    let groups = k.div_ceil(g);
    let mut params = vec![(f16::ONE, 0u8); n * groups];
    let rounded = compensate_rows(w, n, k, &u, &mut params, |params, j, w| {
        if j % g == 0 {
            let vals: Vec<f32> = w[j..(j + g).min(k)].iter().map(|&v| v as f32).collect();
            params[j / g] = int4::group_params(&vals, asymmetric);
        }
        let (s, z) = params[j / g];
        let (s, z) = (s.to_f32(), z as f32);
        (((w[j] as f32 / s).round() + z).clamp(0.0, 15.0) - z) * s
    });
    Ok(pack::pack_int4(&rounded, n, k, format, &params))
}

/// GPTQ for the binary and ternary formats: each group's scale (and mean) chosen as the plain
/// packer chooses it ([`low_bit::group_params`]), from the weights as updated when the group's
/// first column comes up; each weight then rounded to its nearest code. At one or two bits a
/// weight the rounding errors GPTQ moves onto later columns are as large as the weights and
/// can grow along a row, so a row keeps whichever of the two roundings does better by GPTQ's
/// own damped objective ([`Hessian::damped_error`]): calibration never does worse than plain
/// rounding by the measure it minimises.
fn low_bit_calibrated(
    w: &[f32],
    n: usize,
    k: usize,
    format: WeightFormat,
    u: &[f64],
    h: &Hessian,
) -> PackedWeights {
    let g = format.group().expect("low-bit formats are group-wise");
    let groups = format.groups(k);
    // Binary rows have groups past `k` (the padded row's): they keep a zero scale and mean.
    let mut params = vec![(f16::ZERO, f16::ZERO); n * groups];
    let mut rounded = compensate_rows(w, n, k, u, &mut params, |params, j, w| {
        if j % g == 0 {
            let vals: Vec<f32> = w[j..(j + g).min(k)].iter().map(|&v| v as f32).collect();
            params[j / g] = low_bit::group_params(format, &vals);
        }
        low_bit::round(format, w[j] as f32, params[j / g])
    });
    let error = |row: &[f32], q: &[f32]| {
        let d: Vec<f64> = row
            .iter()
            .zip(q)
            .map(|(&a, &b)| a as f64 - b as f64)
            .collect();
        h.damped_error(&d)
    };
    // One plain rounding per row, where it does better.
    par_rows(w, k, &mut rounded, &mut params, groups, |row, q, p| {
        let mut plain_params = vec![(f16::ZERO, f16::ZERO); groups];
        low_bit::row_params(format, row, &mut plain_params);
        let plain: Vec<f32> = row
            .iter()
            .enumerate()
            .map(|(c, &v)| low_bit::round(format, v, plain_params[c / g]))
            .collect();
        if error(row, &plain) < error(row, q) {
            q.copy_from_slice(&plain);
            p.copy_from_slice(&plain_params);
        }
    });
    low_bit::pack_with(&rounded, n, k, format, &params)
}

/// GPTQ's column loop over every row of `w` (`n × k`), rows spread over the machine's cores.
/// For column `j` of a row, `store(state, j, w)` returns the value the weight is stored as,
/// seeing the row as updated so far (`w[j..]` still free) and `state`, the row's share of
/// `states` (`states.len() / n ≥ 1` items a row); the difference is moved onto the later
/// columns through `u` ([`Hessian::inverse_factor`]). Returns the stored weights.
pub(crate) fn compensate_rows<S: Send>(
    w: &[f32],
    n: usize,
    k: usize,
    u: &[f64],
    states: &mut [S],
    store: impl Fn(&mut [S], usize, &[f64]) -> f32 + Sync,
) -> Vec<f32> {
    assert!(
        n > 0 && states.len().is_multiple_of(n) && !states.is_empty(),
        "one or more states a row"
    );
    let per_row = states.len() / n;
    let mut stored = vec![0f32; n * k];
    par_rows(w, k, &mut stored, states, per_row, |row, out, state| {
        let mut w: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        for j in 0..k {
            let q = store(state, j, &w);
            out[j] = q;
            let err = (w[j] - q as f64) / u[j * k + j];
            let u_row = &u[j * k + j + 1..(j + 1) * k];
            for (wc, &uc) in w[j + 1..].iter_mut().zip(u_row) {
                *wc -= err * uc;
            }
        }
    });
    stored
}

/// Calls `f(row, out_row, row_states)` for every row of `w` (rows of `k`), with the row's `k`
/// values of `out` and `per_row` items of `states`, rows spread over the machine's cores.
fn par_rows<S: Send>(
    w: &[f32],
    k: usize,
    out: &mut [f32],
    states: &mut [S],
    per_row: usize,
    f: impl Fn(&[f32], &mut [f32], &mut [S]) + Sync,
) {
    let n = w.len() / k;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let band = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for ((rows_w, rows_out), rows_states) in w
            .chunks(band * k)
            .zip(out.chunks_mut(band * k))
            .zip(states.chunks_mut(band * per_row))
        {
            let f = &f;
            scope.spawn(move || {
                for ((row, o), st) in rows_w
                    .chunks(k)
                    .zip(rows_out.chunks_mut(k))
                    .zip(rows_states.chunks_mut(per_row))
                {
                    f(row, o, st);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn inverse_factor_inverts() {
        let k = 7;
        let mut rng = StdRng::seed_from_u64(3);
        let mut h = Hessian::new(k);
        let x: Vec<f64> = (0..20 * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        h.add(&x);
        let a = h.damped(0.01);
        let u = inverse_factor(&a, k).unwrap();
        for i in 0..k {
            for j in 0..i {
                assert_eq!(u[i * k + j], 0.0, "U not upper triangular at [{i}, {j}]");
            }
        }
        // Uᵀ U A = I.
        for i in 0..k {
            for j in 0..k {
                let v: f64 = (0..k)
                    .map(|m| {
                        let utu: f64 = (0..k).map(|p| u[p * k + i] * u[p * k + m]).sum();
                        utu * a[m * k + j]
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-9, "[{i}, {j}] = {v}");
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none(), "indefinite");
    }
}
