//! Launch shapes of the dense kernels: when the tensor-core GEMM takes over, the GEMV's
//! workgroup and rows per team, the tiled GEMM's tiles. Defaults come from H100 sweeps (or,
//! where said, reasoning awaiting one); the device's [`Config`] overrides them for tuning.

use crate::config::{Config, GemvConfig};
use crate::formats::WeightFormat;
use crate::gpu::Gpu;

/// Activation rows from which `Auto` uses the tensor-core GEMM where available, per weight
/// format: where it beat GEMV run in slices of 8 rows on an H100 at n = k = 4096
/// (docs/notes/tensor_cores.md, "Crossover"). Below it GEMV wins, as the GEMM's work per
/// workgroup is too small to hide its staging.
pub fn coop_min_rows(format: WeightFormat) -> usize {
    match format {
        WeightFormat::F32 | WeightFormat::F16 => 32,
        WeightFormat::Int8 | WeightFormat::Int8G32 => 48,
        WeightFormat::Int4 { .. } | WeightFormat::Int4Min { .. } => 64,
        // Fewer bytes per weight than int4 (unmeasured).
        WeightFormat::Binary { .. }
        | WeightFormat::Ternary { .. }
        | WeightFormat::Ternary16 { .. } => 64,
    }
}

/// GEMV shape: invocations per workgroup and weight rows each team (subgroup) walks at once.
pub(super) struct GemvTuning {
    pub(super) workgroup: u32,
    pub(super) rows_per_team: u32,
    pub(super) unroll: u32,
    pub(super) x_staged: bool,
}

impl GemvTuning {
    /// The shape measured fastest on an H100 (BENCHMARKS.md, "GEMV tuning"); the config's
    /// [`GemvConfig`] (`SPARQ_GEMV_{WG,R,U,XSTAGE}`) overrides it for tuning on other GPUs.
    pub(super) fn for_rows(cfg: &Config, format: WeightFormat, m: usize, subgroups: bool) -> Self {
        // (rows per team, blocks in flight, x staged) for one or two activation rows / more.
        let (r, u, staged) = match (format, m <= 2) {
            (WeightFormat::F32, _) => (4, 1, false),
            (WeightFormat::F16, true) => (2, 1, false),
            (WeightFormat::F16, false) => (4, 1, false),
            // The group formats read like their per-row or per-group relatives (unmeasured).
            (WeightFormat::Int8 | WeightFormat::Int8G32, true) => (2, 1, false),
            (WeightFormat::Int8 | WeightFormat::Int8G32, false) => (4, 1, true),
            (WeightFormat::Int4 { .. } | WeightFormat::Int4Min { .. }, true) => (4, 1, false),
            (WeightFormat::Int4 { .. } | WeightFormat::Int4Min { .. }, false) => (4, 2, true),
            // Binary and ternary: a block is 64-128 weights, so one block per lane already
            // spans much of a short row, and the unrolled block (16-32 vec4s × rows × R)
            // is long; fewer rows and blocks in flight than int4 (unmeasured).
            (_, true) => (4, 1, false),
            (_, false) => (2, 1, true),
        };
        Self::with_overrides(&cfg.gemv, r, u, subgroups, staged)
    }

    /// The int8-activation GEMV (no x staging: its x blocks are small and coalesced).
    /// Defaults from an H100 sweep (R ∈ {1, 2, 4, 8}, U ∈ {1, 2, 4}) at 8192² and 14336×4096.
    pub(super) fn for_q8(cfg: &Config, format: WeightFormat, m: usize, subgroups: bool) -> Self {
        let (r, u) = match (format, m <= 2) {
            (WeightFormat::Int4 { .. }, true) => (1, 4),
            (WeightFormat::Int4 { .. }, false) => (4, 1),
            // Reasoned, awaiting a sweep (benches/tune_low_bit.sh): a lane's x block costs
            // 4 (ternary) to 10 (binary) times its weight block's bytes, so four rows share
            // each x read; two blocks in flight keep 128 weight bytes a lane outstanding
            // where k = 8192 gives a team only 2 (binary) to 4 (ternary) blocks a row. From
            // 3 rows on, x reads grow with m and one block in flight leaves the registers
            // to the decoded codes, which serve every activation row.
            (WeightFormat::Binary { .. }, true) => (4, 2),
            (WeightFormat::Binary { .. }, false) => (2, 1),
            (WeightFormat::Ternary { .. } | WeightFormat::Ternary16 { .. }, true) => (4, 2),
            (WeightFormat::Ternary { .. } | WeightFormat::Ternary16 { .. }, false) => (4, 1),
            _ => (2, 1),
        };
        GemvTuning {
            x_staged: false,
            ..Self::with_overrides(&cfg.gemv, r, u, subgroups, false)
        }
    }

    /// `r` rows per team (one without subgroups: then every row's partial sums go through
    /// workgroup memory, which one row keeps small), `u` blocks in flight, x staged or not,
    /// each overridden by its field of `o`.
    fn with_overrides(o: &GemvConfig, r: u32, u: u32, subgroups: bool, staged: bool) -> Self {
        let r = if subgroups { r } else { 1 };
        GemvTuning {
            workgroup: o.workgroup.unwrap_or(256),
            rows_per_team: o.rows_per_team.unwrap_or(r).clamp(1, 8),
            unroll: o.unroll.unwrap_or(u).clamp(1, 8),
            x_staged: o.x_staged.unwrap_or(staged),
        }
    }
}

/// Workgroups below which a grid of 128 × 128 GEMM tiles leaves a large GPU mostly idle (one
/// per compute unit on a 132-SM H100; a reasoned default, not yet tuned by measurement).
pub const GEMM_SMALL_GRID: usize = 128;

/// Edge of the square tile (64 or 128 outputs) the portable tiled GEMM uses for `m × n`
/// outputs: 128 where workgroup memory holds it (32 KiB at BK = 32) and the grid of 128-tiles
/// has at least [`GEMM_SMALL_GRID`] workgroups, else 64, which gives the GPU four times as
/// many. Either tile sums each output over k in the same order, so the choice never changes
/// a result. The config's `gemm.tile` (`SPARQ_GEMM_TILE=64|128`) overrides it within the
/// memory limit (see `gemm_tile_for`).
pub fn gemm_tile(workgroup_storage: u32, m: usize, n: usize) -> usize {
    gemm_tile_for(workgroup_storage, m, n, None)
}

/// [`gemm_tile`] with an optional forced tile, which still needs the 32 KiB of a 128-tile.
fn gemm_tile_for(workgroup_storage: u32, m: usize, n: usize, forced: Option<u32>) -> usize {
    if workgroup_storage < 32 * 1024 {
        return 64;
    }
    match forced {
        Some(t) => t as usize,
        _ if n.div_ceil(128) * m.div_ceil(128) < GEMM_SMALL_GRID => 64,
        _ => 128,
    }
}

/// Weight vec4s that one invocation of a GEMM (tiled or tensor-core) decodes and stages as a
/// unit for `bk`-deep slices of k: a whole block where `bk` holds whole blocks; for the
/// binary and ternary formats, whose blocks (64-128 weights) are deeper than most slices, the
/// largest part of a block that divides both the block and the slice (so that a unit never
/// straddles either); `None` where the slice depth does not suit the format.
pub(super) fn stage_unit4(format: WeightFormat, bk: u32) -> Option<u32> {
    let block4 = format.block_k() as u32 / 4;
    if bk.is_multiple_of(4 * block4) {
        return Some(block4);
    }
    if !format.is_low_bit() || !bk.is_multiple_of(4) {
        return None;
    }
    Some(gcd(block4 as u64, bk as u64 / 4) as u32)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// GEMM register and workgroup tiling.
pub(super) struct GemmTiling {
    pub(super) tm: u32,
    pub(super) tn: u32,
    pub(super) bk: u32,
    /// Weight vec4s per staging unit (see [`stage_unit4`]).
    pub(super) unit4: u32,
    pub(super) block_k: u32,
}

impl GemmTiling {
    pub(super) fn for_shape(gpu: &Gpu, format: WeightFormat, m: usize, n: usize) -> Self {
        let tile = gemm_tile_for(gpu.caps.workgroup_storage, m, n, gpu.config.gemm.tile);
        Self::with_tile(format, tile)
    }

    /// The tiling for square tiles of `tile` outputs (one of [`gemm_tile`]'s answers).
    pub(super) fn with_tile(format: WeightFormat, tile: usize) -> Self {
        let block_k = format.block_k() as u32;
        let t = tile as u32 / 16;
        let bk = 32;
        GemmTiling {
            tm: t,
            tn: t,
            bk,
            unit4: stage_unit4(format, bk).expect("every format stages in 32-deep slices"),
            block_k,
        }
    }

    pub(super) fn vars(&self) -> Vec<(&'static str, i64)> {
        let (bm, bn) = (16 * self.tm, 16 * self.tn);
        vec![
            ("TM", self.tm as i64),
            ("TN", self.tn as i64),
            ("TM4", (self.tm / 4) as i64),
            ("TN4", (self.tn / 4) as i64),
            ("BK", self.bk as i64),
            ("XLOADS", (bm * self.bk / 4).div_ceil(256) as i64),
            (
                "WLOADS",
                (bn * self.bk / (4 * self.unit4)).div_ceil(256) as i64,
            ),
            ("SUB4", self.unit4 as i64),
            ("PARTIAL", (4 * self.unit4 < self.block_k) as i64),
        ]
    }
}

/// x vec4s per activation row that GEMV stages in workgroup memory at once, for rows of
/// `row4` vec4s and blocks of `block4` vec4s: what fits beside `other_bytes` of workgroup
/// memory (at most 32 KiB in all), never more than a row; a whole row when x is not staged.
/// Always a multiple of the block and of 8 (the staging swizzle permutes within 8 vec4s), so
/// a chunk holds whole blocks (binary's 32 vec4s, ternary16's 20: a chunk of 40).
pub(super) fn x_chunk4(
    row4: usize,
    block4: usize,
    workgroup_storage: u32,
    m: usize,
    other_bytes: u64,
    staged: bool,
) -> i64 {
    let block4 = (block4 as u64).max(1);
    let unit = 8 * block4 / gcd(8, block4);
    let row = (row4 as u64).next_multiple_of(unit);
    if !staged {
        return row as i64;
    }
    let budget = (workgroup_storage as u64)
        .min(32 * 1024)
        .saturating_sub(other_bytes);
    let fit = budget / (16 * m as u64) / unit * unit;
    fit.min(row).max(unit) as i64
}
