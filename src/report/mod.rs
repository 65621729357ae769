//! Results for people and for programs (host side, no GPU): numbers with significant digits
//! and SI prefixes ([`num`]), tables rendered as padded markdown, CSV or JSON rows
//! ([`Table`]), the spread of repeated timings ([`Stats`]), and the one JSON envelope of every
//! machine-readable output ([`Envelope`], docs/output.md).

mod envelope;
pub mod num;
mod table;

pub use envelope::{COMMIT, Envelope, SCHEMA, VERSION, now_rfc3339};
pub use table::{Align, Table};

/// Median and spread of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    /// How many.
    pub n: usize,
    /// The median (the upper middle one of an even count, as [`crate::gpu::median`]).
    pub median: f64,
    /// Sample standard deviation (n − 1 in the denominator); 0 for one measurement.
    pub stddev: f64,
    /// The least.
    pub min: f64,
}

impl Stats {
    /// Of `v`; `None` when empty.
    pub fn of(v: &[f64]) -> Option<Stats> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Stats {
            n,
            median: s[n / 2],
            stddev: var.sqrt(),
            min: s[0],
        })
    }
}

/// Sample standard deviation of `v` (0 for fewer than two values).
pub fn stddev(v: &[f64]) -> f64 {
    Stats::of(v).map_or(0.0, |s| s.stddev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_repetitions() {
        let s = Stats::of(&[4.0, 2.0, 6.0, 8.0]).unwrap();
        assert_eq!((s.n, s.median, s.min), (4, 6.0, 2.0));
        // mean 5, squared deviations 1+9+1+9 = 20, / 3.
        assert!((s.stddev - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stats::of(&[3.0]).unwrap().stddev, 0.0);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(stddev(&[]), 0.0);
        assert!(Stats::of(&[1.0, f64::NAN]).unwrap().stddev.is_nan());
    }
}
