//! The tuning knobs of sparq in one typed value, parsed once from the `SPARQ_*` environment
//! variables and held by the device ([`crate::Gpu::config`]).
//!
//! Every field is an override: `None` (or the documented default) keeps the choice the
//! kernels make themselves, which lives next to the kernel with the measurement behind it
//! (`matmul/tuning.rs`, `sparse/gpu/tuning.rs`, `model/ops/attention.rs`). Overrides are for
//! speed; only [`GemmConfig::q8`] (int8 or exact activations) is meant to change results.
//!
//! [`Config::from_env`] is the only reader of the tuning variables; [`Config::from_vars`]
//! parses any list of pairs, so tests never touch the process environment. A value that does
//! not parse, or is out of range, is an [`crate::InputError::Setting`] naming the variable: a typo in a
//! tuning run must not silently measure the default. An unknown `SPARQ_*` name is only a
//! warning (`log::warn`), as scripts and shells set names sparq does not own.
//!
//! Not read here: `SPARQ_ADAPTER` (which device to open, before any config holder exists; see
//! [`crate::AdapterSelector::from_env`]) and the test harness's `SPARQ_TEST_ADAPTERS`,
//! `SPARQ_SEED` and `SPARQ_MINILM_ALL` (read in `tests/`).

use crate::error::InputError;
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Every tuning knob; `Config::default()` overrides nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Shape of the GEMV kernels.
    pub gemv: GemvConfig,
    /// The GEMM paths: tiled tile, tensor-core tiling and its tuning cache, int8 activations.
    pub gemm: GemmConfig,
    /// Construction-time choices of the sparse kernels.
    pub sparse: SparseConfig,
    /// Layout of the attention kernel.
    pub attention: AttentionConfig,
    /// `SPARQ_CHECKED=1`: compile every kernel with wgpu's runtime bounds checks, including
    /// those otherwise marked trusted (see `gpu::PipelineKey::trusted`). Default off.
    pub checked: bool,
    /// Knobs of `sparq bench`.
    pub bench: BenchOptions,
}

/// GEMV launch shape overrides; `None` keeps the H100-tuned default for the format and rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GemvConfig {
    /// `SPARQ_GEMV_WG`: invocations per workgroup, a multiple of 32 up to 1024 (default 256;
    /// the device limit still caps it).
    pub workgroup: Option<u32>,
    /// `SPARQ_GEMV_R`: weight rows a team walks at once, 1 ..= 8 (1 without subgroups).
    pub rows_per_team: Option<u32>,
    /// `SPARQ_GEMV_U`: weight blocks in flight per lane, 1 ..= 8.
    pub unroll: Option<u32>,
    /// `SPARQ_GEMV_XSTAGE`: stage x in workgroup memory (a flag; never for the int8-activation
    /// GEMV).
    pub x_staged: Option<bool>,
}

/// GEMM overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmConfig {
    /// `SPARQ_GEMM_TILE=64|128`: the portable tiled GEMM's tile edge, where workgroup memory
    /// holds it (see `matmul::gemm_tile` for the default rule).
    pub tile: Option<u32>,
    /// `SPARQ_COOP=SGM,SGN,FM,FN,BK[,BUFFERS]`: the tensor-core GEMM's tiling, instead of a
    /// tuned or default one.
    pub coop: Option<CoopTiling>,
    /// `SPARQ_TUNE_CACHE`: JSON file the tensor-core autotuner reads its choices from and
    /// writes them to (besides the device's in-memory cache).
    pub tune_cache: Option<PathBuf>,
    /// `SPARQ_Q8`: integer weights take int8 activations where the adapter has `dot4I8Packed`
    /// (default on; off keeps exact f32 activations).
    pub q8: bool,
}

impl Default for GemmConfig {
    fn default() -> Self {
        GemmConfig {
            tile: None,
            coop: None,
            tune_cache: None,
            q8: true,
        }
    }
}

/// Tile shape of the cooperative-matrix GEMM: a workgroup of `sgm × sgn` subgroups, each
/// owning `fm × fn_` 16 × 16 accumulator fragments, staging `bk`-deep slices of x and W
/// (`matmul::coop` computes with it; here because `SPARQ_COOP` can force one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CoopTiling {
    /// Subgroups along m.
    pub sgm: u32,
    /// Subgroups along n.
    pub sgn: u32,
    /// Fragments per subgroup along m.
    pub fm: u32,
    /// Fragments per subgroup along n.
    pub fn_: u32,
    /// Depth of a staged slice (a multiple of 16 and of the format's block).
    pub bk: u32,
    /// Staging buffers: 2 (double-buffered) or 1 (deeper slices in the same memory, one
    /// more barrier per slice).
    pub buffers: u32,
}

impl CoopTiling {
    /// Parses `SGM,SGN,FM,FN,BK[,BUFFERS]`; on failure returns what was expected.
    pub fn from_spec(s: &str) -> std::result::Result<Self, &'static str> {
        const WANT: &str = "SGM,SGN,FM,FN,BK[,BUFFERS]: SGM..FN in 1..=8, BK a multiple \
                            of 16, BUFFERS 1 or 2";
        let v: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| WANT)?;
        let (sgm, sgn, fm, fn_, bk, buffers) = match v[..] {
            [a, b, c, d, e] => (a, b, c, d, e, 2),
            [a, b, c, d, e, f] => (a, b, c, d, e, f),
            _ => return Err(WANT),
        };
        if [sgm, sgn, fm, fn_].iter().any(|&x| x == 0 || x > 8)
            || bk == 0
            || !bk.is_multiple_of(16)
            || !(1..=2).contains(&buffers)
        {
            return Err(WANT);
        }
        Ok(CoopTiling {
            sgm,
            sgn,
            fm,
            fn_,
            bk,
            buffers,
        })
    }
}

/// Sparse kernel overrides; `None` keeps `sparse::SparseTuning`'s default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseConfig {
    /// `SPARQ_SPARSE_LONG`: units above which an item gets a whole workgroup (at least 1).
    pub long_units: Option<usize>,
    /// `SPARQ_SPARSE_BIN`: most short items in one bin, 1 ..= 2²⁰.
    pub bin_items: Option<usize>,
    /// `SPARQ_SPARSE_24_ROWS`: output rows per 2:4 item, 1 ..= 8.
    pub two_four_rows: Option<usize>,
    /// `SPARQ_SPARSE_XT_FROM`: activation rows per tile from which CSR reads x transposed
    /// (rows, or `off`: `usize::MAX`).
    pub transpose_x_from: Option<usize>,
    /// `SPARQ_SPARSE_DENSE_FROM`: activation rows from which the automatic path runs the
    /// weights dense (rows, or `off`: `usize::MAX`).
    pub dense_from: Option<usize>,
    /// `SPARQ_SPARSE_U`: units a lane has in flight, 1 ..= 8.
    pub unroll: Option<usize>,
    /// `SPARQ_SPARSE_XSM`: CSR with one activation row stages x in workgroup memory (a flag).
    pub stage_x: Option<bool>,
    /// `SPARQ_SPARSE_XPICK=sel|dyn`: the kernels pick a unit's x value by `select` over the
    /// loaded vector (`sel`, the default) or by a dynamic index (`dyn`). `Some(false)` is `dyn`.
    pub x_select: Option<bool>,
}

/// Attention layout overrides (see `model::AttentionLayout`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttentionConfig {
    /// `SPARQ_ATTENTION_SPLIT=1|2|4|8`: invocations per query.
    pub split: Option<usize>,
    /// `SPARQ_ATTENTION_QPI=1|2|4`: queries per invocation; ignored where the head size
    /// allows fewer (`AttentionLayout::max_qpi`), which depends on the model, not the config.
    pub qpi: Option<usize>,
}

/// Knobs of the benchmark harness (`sparq bench`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// `SPARQ_WARMUP_MS`: least untimed run before timing a case, in ms (default 500 on GPUs,
    /// none on CPU adapters).
    pub warmup_ms: Option<u64>,
    /// `SPARQ_BENCH_REPLACE=N`: re-create each case's weights N times and print each
    /// placement's median, to tell allocation-dependent speed from kernel speed (default 0).
    pub replace: usize,
}

/// The tuning variables [`Config::from_vars`] understands.
pub const VARIABLES: [&str; 21] = [
    "SPARQ_GEMV_WG",
    "SPARQ_GEMV_R",
    "SPARQ_GEMV_U",
    "SPARQ_GEMV_XSTAGE",
    "SPARQ_GEMM_TILE",
    "SPARQ_COOP",
    "SPARQ_TUNE_CACHE",
    "SPARQ_Q8",
    "SPARQ_SPARSE_LONG",
    "SPARQ_SPARSE_BIN",
    "SPARQ_SPARSE_24_ROWS",
    "SPARQ_SPARSE_XT_FROM",
    "SPARQ_SPARSE_DENSE_FROM",
    "SPARQ_SPARSE_U",
    "SPARQ_SPARSE_XSM",
    "SPARQ_SPARSE_XPICK",
    "SPARQ_ATTENTION_SPLIT",
    "SPARQ_ATTENTION_QPI",
    "SPARQ_CHECKED",
    "SPARQ_WARMUP_MS",
    "SPARQ_BENCH_REPLACE",
];

/// `SPARQ_*` names read elsewhere (see the module docs) or set by sparq's scripts, which
/// [`Config::from_vars`] skips without a warning.
pub const READ_ELSEWHERE: [&str; 6] = [
    "SPARQ_ADAPTER",
    "SPARQ_TEST_ADAPTERS",
    "SPARQ_SEED",
    "SPARQ_MINILM_ALL",
    "SPARQ_ROOT",
    "SPARQ_MIN_RUST_MINOR",
];

impl Config {
    /// The configuration from the process environment: every `SPARQ_*` variable through
    /// [`Config::from_vars`]. A `SPARQ_*` value that is not UTF-8 is an error.
    pub fn from_env() -> Result<Self> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with("SPARQ_")) else {
                continue;
            };
            let value = value.into_string().map_err(|v| {
                Error::Input(InputError::Setting {
                    var: name.to_string(),
                    value: v.to_string_lossy().into_owned(),
                    expected: "UTF-8 text".into(),
                })
            })?;
            vars.push((name.to_string(), value));
        }
        Self::from_vars(vars)
    }

    /// Parses `(name, value)` pairs; names not starting with `SPARQ_` are skipped, unknown
    /// `SPARQ_*` names are warned about (see [`Config::unknown_vars`]). An empty value counts
    /// as unset, so `SPARQ_COOP= cmd` runs with the default. A later pair of the same name
    /// wins.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut c = Config::default();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref().trim());
            if !name.starts_with("SPARQ_") {
                continue;
            }
            if !VARIABLES.contains(&name) {
                if !READ_ELSEWHERE.contains(&name) {
                    log::warn!("unknown variable {name} ignored (sparq reads {VARIABLES:?})");
                }
                continue;
            }
            if value.is_empty() {
                continue;
            }
            c.set(name, value)?;
        }
        Ok(c)
    }

    /// The names among `names` that start with `SPARQ_` but that sparq neither parses here
    /// nor reads elsewhere: what [`Config::from_vars`] warns about.
    pub fn unknown_vars<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        names
            .into_iter()
            .filter(|n| {
                n.starts_with("SPARQ_") && !VARIABLES.contains(n) && !READ_ELSEWHERE.contains(n)
            })
            .collect()
    }

    fn set(&mut self, var: &str, v: &str) -> Result<()> {
        let bad = |expected: &str| {
            Error::Input(InputError::Setting {
                var: var.to_string(),
                value: v.to_string(),
                expected: expected.to_string(),
            })
        };
        let int = |lo: u64, hi: u64, expected: &str| -> Result<u64> {
            v.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(expected))
        };
        let one_to_8 = || int(1, 8, "a whole number from 1 to 8");
        let flag = || -> Result<bool> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "on" | "true" | "yes" => Ok(true),
                "0" | "off" | "false" | "no" => Ok(false),
                _ => Err(bad("a flag: 1, on, true, yes or 0, off, false, no")),
            }
        };
        let rows_or_off = || -> Result<usize> {
            if v.eq_ignore_ascii_case("off") {
                return Ok(usize::MAX);
            }
            v.parse::<usize>()
                .map_err(|_| bad("a number of activation rows, or off"))
        };
        match var {
            "SPARQ_GEMV_WG" => {
                let wg = int(32, 1024, "a multiple of 32 from 32 to 1024")?;
                if !wg.is_multiple_of(32) {
                    return Err(bad("a multiple of 32 from 32 to 1024"));
                }
                self.gemv.workgroup = Some(wg as u32);
            }
            "SPARQ_GEMV_R" => self.gemv.rows_per_team = Some(one_to_8()? as u32),
            "SPARQ_GEMV_U" => self.gemv.unroll = Some(one_to_8()? as u32),
            "SPARQ_GEMV_XSTAGE" => self.gemv.x_staged = Some(flag()?),
            "SPARQ_GEMM_TILE" => {
                self.gemm.tile = Some(match v {
                    "64" => 64,
                    "128" => 128,
                    _ => return Err(bad("64 or 128")),
                })
            }
            "SPARQ_COOP" => self.gemm.coop = Some(CoopTiling::from_spec(v).map_err(bad)?),
            "SPARQ_TUNE_CACHE" => self.gemm.tune_cache = Some(PathBuf::from(v)),
            "SPARQ_Q8" => self.gemm.q8 = flag()?,
            "SPARQ_SPARSE_LONG" => {
                self.sparse.long_units = Some(int(1, u32::MAX as u64, "a positive number")? as _)
            }
            "SPARQ_SPARSE_BIN" => {
                self.sparse.bin_items = Some(int(1, 1 << 20, "a number from 1 to 1048576")? as _)
            }
            "SPARQ_SPARSE_24_ROWS" => self.sparse.two_four_rows = Some(one_to_8()? as usize),
            "SPARQ_SPARSE_XT_FROM" => self.sparse.transpose_x_from = Some(rows_or_off()?),
            "SPARQ_SPARSE_DENSE_FROM" => self.sparse.dense_from = Some(rows_or_off()?),
            "SPARQ_SPARSE_U" => self.sparse.unroll = Some(one_to_8()? as usize),
            "SPARQ_SPARSE_XSM" => self.sparse.stage_x = Some(flag()?),
            "SPARQ_SPARSE_XPICK" => {
                self.sparse.x_select = Some(match v.to_ascii_lowercase().as_str() {
                    "sel" => true,
                    "dyn" => false,
                    _ => return Err(bad("sel or dyn")),
                })
            }
            "SPARQ_ATTENTION_SPLIT" => {
                self.attention.split = Some(match v {
                    "1" | "2" | "4" | "8" => v.parse().unwrap_or(1),
                    _ => return Err(bad("1, 2, 4 or 8")),
                })
            }
            "SPARQ_ATTENTION_QPI" => {
                self.attention.qpi = Some(match v {
                    "1" | "2" | "4" => v.parse().unwrap_or(1),
                    _ => return Err(bad("1, 2 or 4")),
                })
            }
            "SPARQ_CHECKED" => self.checked = flag()?,
            "SPARQ_WARMUP_MS" => {
                self.bench.warmup_ms = Some(int(0, 3_600_000, "milliseconds, up to an hour")?)
            }
            "SPARQ_BENCH_REPLACE" => {
                self.bench.replace = int(0, 1000, "a count from 0 to 1000")? as usize
            }
            // `from_vars` only passes names of `VARIABLES`, each matched above.
            _ => return Err(bad("a variable sparq knows")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_an_arm() {
        // A name listed but not matched would be refused as unknown to `set`.
        for name in VARIABLES {
            if let Err(e) = Config::default().set(name, "\u{1}") {
                let e = e.to_string();
                assert!(!e.contains("a variable sparq knows"), "{name}: {e}");
            }
        }
    }
}
