//! `sparq bench --sparse-tune`: the construction-time knobs of the sparse kernels
//! ([`SparseTuning`]: rows per 2:4 item, when an item gets a whole workgroup, items per bin,
//! units in flight per lane) swept on one shape, so that the defaults come from a measurement
//! on the GPU at hand. The weights are pruned and packed once; each setting re-uploads them
//! (the bins live with the weights) and times the sparse kernel alone (`SparsePath::Kernel`).

use super::{median, time_dispatches};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::prune::{blocks_l2, magnitude, n_of_m};
use crate::sparse::{
    BinShape, Bsr, Csr, SparseLinear, SparsePath, SparseTuning, SparseWeights, TwoFour, ValueType,
};
use crate::tensor::{ActDType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// One timed setting.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneRow {
    /// Format name, e.g. `2:4-int4`.
    pub format: String,
    /// Activation rows.
    pub m: usize,
    /// Output rows per 2:4 item.
    pub rows: usize,
    /// Units above which an item gets a whole workgroup.
    pub long_units: usize,
    /// Most short items per bin.
    pub bin_items: usize,
    /// Units in flight per lane.
    pub unroll: usize,
    /// Median GPU time, µs.
    pub us: f64,
    /// Sample standard deviation of the timed runs, µs.
    pub us_stddev: f64,
    /// Whether this is the current default.
    pub default: bool,
}

/// Settings [`run`] times (each at every m): 8 for CSR, 8 for BSR, 24 for each 2:4 format.
pub const SETTINGS: usize = 64;

/// Sweeps the knobs for CSR (f16, 90 % magnitude), BSR 4×32 f16 (90 % of blocks) and 2:4
/// (f16 and int4) at `n × k` for each m in `ms`; rows fastest first per format and m.
/// Calls `progress(done, total, label)` before each of the [`SETTINGS`] settings and
/// `(total, total, "done")` at the end.
pub fn run(
    gpu: &Gpu,
    (n, k): (usize, usize),
    ms: &[usize],
    iters: usize,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<TuneRow>> {
    // The floats, the 2:4 copy, the pruned copies and the device's.
    gpu.check_layer_shape((n, k), ms.iter().copied().max().unwrap_or(1), 6)?;
    let mut rng = StdRng::seed_from_u64(7);
    let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w24 = n_of_m(&w, n, k, 2, 4)?.w;
    let formats: Vec<SparseWeights> = vec![
        Csr::from_dense(&magnitude(&w, n, k, 0.9)?.w, n, k, ValueType::F16)?.into(),
        Bsr::from_dense(
            &blocks_l2(&w, n, k, 4, 32, 0.9)?.w,
            n,
            k,
            4,
            32,
            ValueType::F16,
        )?
        .into(),
        TwoFour::from_dense(&w24, n, k, ValueType::F16)?.into(),
        TwoFour::from_dense(&w24, n, k, ValueType::Int4)?.into(),
    ];
    drop((w, w24));
    let xs = ms
        .iter()
        .map(|&m| {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let xt = Tensor::from_f32_as(gpu, &x, m, k, ActDType::F32)?;
            Ok((m, xt, Tensor::empty(gpu, m, n, ActDType::F32)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let default = SparseTuning::from_config(&gpu.config().sparse);
    let mut rows = Vec::new();
    let mut done = 0;
    for sw in &formats {
        let two_four = matches!(sw, SparseWeights::TwoFour(_));
        // Around the defaults (4 rows, 256 units, 8 items, unroll 2): 64 settings in all,
        // a minute or two on a large GPU.
        let item_rows: &[usize] = if two_four { &[2, 4, 8] } else { &[1] };
        for &r in item_rows {
            for long_units in [256, 1 << 20] {
                for bin_items in [8, 32] {
                    for unroll in [1, 2] {
                        let tuning = SparseTuning {
                            bins: BinShape {
                                long_units,
                                items: bin_items,
                            },
                            two_four_rows: Some(r),
                            unroll,
                            ..default
                        };
                        let layer = SparseLinear::with_tuning(gpu, sw, None, tuning)?;
                        progress(
                            done,
                            SETTINGS,
                            &format!(
                                "{} rows {r} units {long_units} items {bin_items} unroll {unroll}",
                                layer.format
                            ),
                        );
                        done += 1;
                        for (m, x, y) in &xs {
                            let plan = layer.plan(gpu, x, y, SparsePath::Kernel)?;
                            let times = time_dispatches(gpu, &[plan], 3, iters)?;
                            let us = median(&times);
                            rows.push(TuneRow {
                                format: layer.format.clone(),
                                m: *m,
                                rows: r,
                                long_units,
                                bin_items,
                                unroll,
                                us,
                                us_stddev: crate::report::stddev(&times),
                                default: (!two_four || Some(r) == default.two_four_rows)
                                    && tuning.bins == default.bins
                                    && unroll == default.unroll,
                            });
                        }
                    }
                }
            }
        }
    }
    progress(SETTINGS, SETTINGS, "done");
    rows.sort_by(|a, b| {
        (&a.format, a.m)
            .cmp(&(&b.format, b.m))
            .then(a.us.total_cmp(&b.us))
    });
    Ok(rows)
}

/// The five fastest settings per format and m, and the default's place among them.
pub fn markdown(rows: &[TuneRow]) -> String {
    use crate::report::{Align::*, Table, num};
    let mut t = Table::new(&[
        ("format", Left),
        ("m", Right),
        ("rows/item", Right),
        ("long units", Right),
        ("items/bin", Right),
        ("unroll", Right),
        ("time (median ± sd)", Right),
        ("vs default", Right),
    ]);
    let mut groups: Vec<(&str, usize)> = rows.iter().map(|r| (r.format.as_str(), r.m)).collect();
    groups.dedup();
    for (f, m) in groups {
        let g: Vec<&TuneRow> = rows.iter().filter(|r| r.format == f && r.m == m).collect();
        let def = g.iter().find(|r| r.default).map(|r| r.us);
        let shown = g
            .iter()
            .take(5)
            .chain(g.iter().filter(|r| r.default).take(1));
        for r in shown {
            let long = if r.long_units >= 1 << 20 {
                "never".to_string()
            } else {
                r.long_units.to_string()
            };
            let vs = def.map_or("-".into(), |d| num::ratio(d / r.us));
            t.push([
                r.format.clone(),
                r.m.to_string(),
                r.rows.to_string(),
                long,
                r.bin_items.to_string(),
                r.unroll.to_string(),
                num::time_us_pm(r.us, r.us_stddev),
                if r.default {
                    format!("{vs} (default)")
                } else {
                    vs
                },
            ]);
        }
    }
    t.markdown()
}
