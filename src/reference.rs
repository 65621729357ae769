//! Plain CPU references with f64 accumulation: the oracles every GPU kernel is tested against.

/// `y = x · Wᵀ + bias` for `x` (`m × k`), `w` (`n × k`), returning `m × n`.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let mut acc = bias.map_or(0.0, |b| b[j] as f64);
            for (a, b) in xr.iter().zip(wr) {
                acc += *a as f64 * *b as f64;
            }
            y[i * n + j] = acc;
        }
    }
    y
}

/// `y[i][j] = Σ_k |x[i][k] · w[j][k]|` (+|bias|): the scale against which rounding errors of a
/// dot product are judged, so tolerances hold for any sign pattern of the data.
pub fn linear_abs(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let xa: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let wa: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let ba: Option<Vec<f32>> = bias.map(|b| b.iter().map(|v| v.abs()).collect());
    linear(&xa, &wa, ba.as_deref(), m, n, k)
}
