//! Numbers for people: significant digits and SI prefixes, so that a slow adapter reads
//! `812 MB/s` or `0.870 seq/s` rather than `0 GB/s` or `seq/s 0`, and a fast one `4.23 TB/s`.

/// Significant digits of [`si`], [`pct`] and [`ratio`].
pub const DIGITS: usize = 3;

/// `x` rounded to `digits` significant digits (at least 1), in plain notation between 10⁻⁴
/// and 10¹⁵ and in exponent notation outside; `0`, `NaN`, `inf` and `-inf` as such.
pub fn sig(x: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let r = round_sig(x, digits);
    let e = r.abs().log10().floor() as i32;
    if !(-4..15).contains(&e) {
        return format!("{:.*e}", digits - 1, r);
    }
    let decimals = (digits as i32 - 1 - e).max(0) as usize;
    format!("{r:.decimals$}")
}

/// `x` rounded to `digits` significant digits, as a number.
fn round_sig(x: f64, digits: usize) -> f64 {
    let e = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits as i32 - 1 - e);
    let r = (x * scale).round() / scale;
    // Beyond f64's range of exact scales, rounding by hand loses more than it gains.
    if r.is_finite() { r } else { x }
}

/// SI prefixes from pico to peta, with the power of 1000 each stands for.
const PREFIXES: &[(i32, &str)] = &[
    (-4, "p"),
    (-3, "n"),
    (-2, "µ"),
    (-1, "m"),
    (0, ""),
    (1, "k"),
    (2, "M"),
    (3, "G"),
    (4, "T"),
    (5, "P"),
];

/// `x` of `unit` (`B/s`, `FLOP/s`, `s`, `seq/s`, ...) to 3 significant digits with an SI
/// prefix: `si(4.23e12, "B/s")` is `4.23 TB/s`, `si(3.59e-5, "s")` is `35.9 µs`. Zero is
/// `0 unit`; a value that is not finite is [`sig`]'s word for it, without the unit.
pub fn si(x: f64, unit: &str) -> String {
    if !x.is_finite() {
        return sig(x, DIGITS);
    }
    if x == 0.0 {
        return format!("0 {unit}");
    }
    prefixed(x, unit, PREFIXES[0].0)
}

/// A rate (`B/s`, `FLOP/s`, `seq/s`, `rows/s`) as [`si`] does, but never with a prefix
/// below one: `rate(0.87, "seq/s")` is `0.870 seq/s`, not `870 mseq/s`.
pub fn rate(x: f64, unit: &str) -> String {
    if !x.is_finite() {
        return sig(x, DIGITS);
    }
    if x == 0.0 {
        return format!("0 {unit}");
    }
    prefixed(x, unit, 0)
}

fn prefixed(x: f64, unit: &str, least_power: i32) -> String {
    let (power, mantissa) = si_split(x, least_power);
    let prefix = PREFIXES.iter().find(|p| p.0 == power).map_or("", |p| p.1);
    format!("{} {prefix}{unit}", sig(mantissa, DIGITS))
}

/// The power of 1000 and the mantissa (rounded to [`DIGITS`]) of a finite, non-zero `x`,
/// the power clamped to [`PREFIXES`] and to at least `least_power`.
fn si_split(x: f64, least_power: i32) -> (i32, f64) {
    let r = round_sig(x, DIGITS);
    let power = (r.abs().log10() / 3.0).floor() as i32;
    let power = power.clamp(least_power, PREFIXES[PREFIXES.len() - 1].0);
    (power, r / 1000f64.powi(power))
}

/// A duration given in microseconds, to 3 significant digits: `35.9 µs`, `1.20 ms`, `2.50 s`.
pub fn time_us(us: f64) -> String {
    si(us * 1e-6, "s")
}

/// A median and its spread, both in microseconds, in the median's unit: `35.9 ± 1.2 µs`.
/// A spread that is zero, negative or not finite (one repetition) leaves the median alone.
pub fn time_us_pm(median_us: f64, stddev_us: f64) -> String {
    let median = median_us * 1e-6;
    if !median.is_finite() || median == 0.0 || !(stddev_us.is_finite() && stddev_us > 0.0) {
        return time_us(median_us);
    }
    let (power, mantissa) = si_split(median, PREFIXES[0].0);
    let prefix = PREFIXES.iter().find(|p| p.0 == power).map_or("", |p| p.1);
    let spread = stddev_us * 1e-6 / 1000f64.powi(power);
    format!("{} ± {} {prefix}s", sig(mantissa, DIGITS), sig(spread, 2))
}

/// A percentage to 3 significant digits: `108.6` is `109 %`, `0.0123` is `0.0123 %`.
pub fn pct(percent: f64) -> String {
    if percent.is_finite() {
        format!("{} %", sig(percent, DIGITS))
    } else {
        sig(percent, DIGITS)
    }
}

/// A ratio to 3 significant digits: `1.50×`.
pub fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{}×", sig(x, DIGITS))
    } else {
        sig(x, DIGITS)
    }
}

/// `v` as JSON numbers at f32's shortest round-trip precision (`0.1f32` is `0.1`, not the
/// `0.10000000149011612` that widening it to f64 prints); a value that is not finite is `null`,
/// as serde_json writes it.
pub fn f32_json(v: &[f32]) -> serde_json::Value {
    serde_json::Value::Array(
        v.iter()
            .map(|&x| {
                // f32's Display is its shortest round-trip decimal; the f64 nearest that decimal
                // prints as the same digits.
                x.to_string()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(sig(108.6, 3), "109");
        assert_eq!(sig(0.0012345, 3), "0.00123");
        assert_eq!(sig(9.996, 3), "10.0");
        assert_eq!(sig(123456.0, 3), "123000");
        assert_eq!(sig(-2.5e-7, 2), "-2.5e-7");
        assert_eq!(sig(3.2e20, 3), "3.20e20");
        assert_eq!(sig(0.0, 3), "0");
        assert_eq!(sig(-0.0, 3), "0");
        assert_eq!(sig(f64::NAN, 3), "NaN");
        assert_eq!(sig(f64::NEG_INFINITY, 3), "-inf");
        assert_eq!(sig(5.0, 0), "5");
    }

    #[test]
    fn prefixes() {
        assert_eq!(si(4.23e12, "B/s"), "4.23 TB/s");
        assert_eq!(si(812e6, "B/s"), "812 MB/s");
        assert_eq!(si(0.48e9, "B/s"), "480 MB/s");
        assert_eq!(si(3.1e12, "FLOP/s"), "3.10 TFLOP/s");
        assert_eq!(si(12.4e9, "FLOP/s"), "12.4 GFLOP/s");
        assert_eq!(rate(0.87, "seq/s"), "0.870 seq/s");
        assert_eq!(rate(12_400.0, "rows/s"), "12.4 krows/s");
        assert_eq!(rate(0.0, "rows/s"), "0 rows/s");
        assert_eq!(rate(f64::NAN, "rows/s"), "NaN");
        // Rounding up to 1000 moves to the next prefix rather than printing `1000 kB/s`.
        assert_eq!(si(999_999.0, "B/s"), "1.00 MB/s");
        assert_eq!(si(-1500.0, "B/s"), "-1.50 kB/s");
        assert_eq!(si(0.0, "B/s"), "0 B/s");
        assert_eq!(si(f64::NAN, "B/s"), "NaN");
        assert_eq!(si(f64::INFINITY, "B/s"), "inf");
        // Beyond the prefixes: the largest or smallest one and more digits, never a wrong one.
        assert_eq!(si(2e18, "B/s"), "2000 PB/s");
        assert_eq!(si(3e-15, "s"), "0.00300 ps");
    }

    #[test]
    fn slow_adapter_never_reads_zero() {
        for x in [1e-3, 0.4, 0.87, 3.0] {
            let s = rate(x * 1e9, "B/s");
            assert!(!s.starts_with("0 "), "{x} printed as {s}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(time_us(35.9), "35.9 µs");
        assert_eq!(time_us(1200.0), "1.20 ms");
        assert_eq!(time_us(0.25), "250 ns");
        assert_eq!(time_us_pm(35.9, 1.24), "35.9 ± 1.2 µs");
        assert_eq!(time_us_pm(1234.0, 56.0), "1.23 ± 0.056 ms");
        assert_eq!(time_us_pm(35.9, 0.0), "35.9 µs");
        assert_eq!(time_us_pm(35.9, f64::NAN), "35.9 µs");
        assert_eq!(time_us_pm(f64::NAN, 1.0), "NaN");
    }

    #[test]
    fn f32s_print_at_their_own_precision() {
        let v = [0.1f32, -1.0 / 3.0, 1e-8, 3.4e38, 0.0, f32::NAN];
        let text = f32_json(&v).to_string();
        assert_eq!(text, "[0.1,-0.33333334,1e-8,3.4e+38,0.0,null]");
        // And they read back as the same f32s.
        let back: Vec<Option<f32>> = serde_json::from_str(&text).unwrap();
        for (a, b) in v.iter().zip(&back) {
            match b {
                Some(b) => assert_eq!(a.to_bits(), b.to_bits()),
                None => assert!(a.is_nan()),
            }
        }
        // The same digits `embed` prints (serde_json's own f32 formatting).
        assert_eq!(
            serde_json::to_string(&v[..5]).unwrap(),
            f32_json(&v[..5]).to_string()
        );
    }

    #[test]
    fn percentages_and_ratios() {
        assert_eq!(pct(108.64), "109 %");
        assert_eq!(pct(0.0123), "0.0123 %");
        assert_eq!(pct(-5.0), "-5.00 %");
        assert_eq!(ratio(1.5), "1.50×");
        assert_eq!(ratio(f64::NAN), "NaN");
    }
}
