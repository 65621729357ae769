//! Construction-time choices of the sparse kernels (how items are binned into workgroups, rows
//! per 2:4 item, when x is transposed), with the device config's overrides for tuning on a
//! new GPU.

use crate::config::SparseConfig;

/// How items are grouped into bins (see [`bins`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinShape {
    /// An item of more units than this gets a whole workgroup.
    pub long_units: usize,
    /// Most short items in one bin.
    pub items: usize,
}

impl BinShape {
    /// The shape measured best on an H100 (BENCHMARKS.md, "Sparse (issue 3)"); the config's
    /// `long_units` and `bin_items` (`SPARQ_SPARSE_LONG`, `SPARQ_SPARSE_BIN`) override it for
    /// tuning on other GPUs.
    pub fn from_config(c: &SparseConfig) -> Self {
        BinShape {
            long_units: c.long_units.unwrap_or(256).max(1),
            items: c.bin_items.unwrap_or(8).clamp(1, 1 << 20),
        }
    }
}

/// Construction-time choices of a [`super::SparseLinear`] that change speed, never results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseTuning {
    /// How items are grouped into bins.
    pub bins: BinShape,
    /// Output rows per 2:4 item: a lane loads the x vectors of a unit's columns once and
    /// picks from them for this many rows (1 ..= 8); None: 8 for f16 values, 4 for the others
    /// (H200 at 8192², m = 1: f16 27.9 µs with 8 rows, 32.9 with 4; int4 29.8 with 4, 34.3
    /// with 8).
    pub two_four_rows: Option<usize>,
    /// CSR with at least this many activation rows per tile reads x transposed per tile
    /// (one small extra dispatch); `usize::MAX` never does.
    pub transpose_x_from: usize,
    /// Activation rows from which the automatic path writes the weights out dense and runs
    /// the dense GEMM (see `densify.rs`); None: the default for the weights (2:4 and short
    /// BSR blocks 8, CSR and tall blocks by density; see `default_dense_from`), `usize::MAX`:
    /// never.
    pub dense_from: Option<usize>,
    /// Units a lane has in flight per loop step (1 ..= 8).
    pub unroll: usize,
    /// CSR with one activation row stages x in workgroup memory where it fits (off by
    /// default: see `SparseLinear::staged_x`).
    pub stage_x: bool,
}

impl SparseTuning {
    /// The defaults (x transposed from 2 rows, 2 units in flight, x not staged), each
    /// overridden by its field of `c` (the `SPARQ_SPARSE_*` variables, see [`SparseConfig`])
    /// for tuning. A device's own tuning is `SparseTuning::from_config(&gpu.config().sparse)`.
    pub fn from_config(c: &SparseConfig) -> Self {
        SparseTuning {
            bins: BinShape::from_config(c),
            two_four_rows: c.two_four_rows.map(|r| r.clamp(1, 8)),
            transpose_x_from: c.transpose_x_from.unwrap_or(2),
            dense_from: c.dense_from,
            unroll: c.unroll.unwrap_or(2).clamp(1, 8),
            stage_x: c.stage_x.unwrap_or(false),
        }
    }
}

/// Groups consecutive items into bins: `(first item, count | whole << 31)` word pairs.
/// An item of more than `shape.long_units` units gets a bin of its own walked by the whole
/// workgroup; shorter items share bins of at most `shape.items` items, closed early once they
/// hold `items · long_units / 2` units so that a bin of near-long items stays short.
pub fn bins(units: impl Iterator<Item = usize>, shape: BinShape) -> Vec<u32> {
    let bin_units = shape.items * shape.long_units / 2;
    let mut out = Vec::new();
    let (mut first, mut count, mut sum) = (0u32, 0u32, 0usize);
    let close = |out: &mut Vec<u32>, first: u32, count: u32| {
        if count > 0 {
            out.extend([first, count]);
        }
    };
    for (i, u) in units.enumerate() {
        let i = i as u32;
        if u > shape.long_units {
            close(&mut out, first, count);
            out.extend([i, 1 | 1 << 31]);
            (first, count, sum) = (i + 1, 0, 0);
            continue;
        }
        if count == 0 {
            first = i;
        }
        count += 1;
        sum += u;
        if count as usize == shape.items || sum >= bin_units {
            close(&mut out, first, count);
            (count, sum) = (0, 0);
        }
    }
    close(&mut out, first, count);
    out
}
