//! Block-sparse rows: small dense blocks of a configurable shape, each stored contiguously.

use super::{ValueType, check_matrix, check_range, dense_from, matmul_from, to_u32, values};
use crate::error::{Error, Result};

/// A weight matrix in BSR (see the [module documentation](super) for the layout).
#[derive(Clone, Debug, PartialEq)]
pub struct Bsr {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Rows of a block (along `n`).
    pub block_rows: usize,
    /// Columns of a block (along `k`); also the int4 scale group.
    pub block_cols: usize,
    /// Type of the stored values.
    pub value_type: ValueType,
    /// `ceil(n / block_rows) + 1` offsets into the stored blocks.
    pub row_ptr: Vec<u32>,
    /// Block column of each stored block.
    pub block_col: Vec<u32>,
    /// Blocks, each `block_words()` words, elements row-major within the block.
    pub values: Vec<u32>,
    /// int8: f32 bits per output row; int4: f16 per (block, block row), packed in pairs.
    pub scales: Vec<u32>,
}

/// Most block rows a BSR kernel runs (one block row of outputs per invocation).
pub const KERNEL_MAX_BLOCK_ROWS: usize = 16;
/// Most block columns a BSR kernel runs.
pub const KERNEL_MAX_BLOCK_COLS: usize = 128;

/// Whether the GPU's BSR kernels run blocks of `rows × cols` with `values`: the one rule
/// that `sparq pack` checks before packing and the kernel's launcher checks before loading.
/// A block row is read as whole 128-bit vectors, so the columns are a multiple of
/// `128 / bits` (4 f32, 8 f16, 16 int8, 32 int4), at most 128, and the rows at most 16.
pub fn check_kernel_block(rows: usize, cols: usize, values: ValueType) -> Result<()> {
    let step = 128 / values.bits();
    let fits = (1..=KERNEL_MAX_BLOCK_ROWS).contains(&rows)
        && (1..=KERNEL_MAX_BLOCK_COLS).contains(&cols)
        && cols.is_multiple_of(step);
    if fits {
        return Ok(());
    }
    let widths: Vec<String> = (step..=KERNEL_MAX_BLOCK_COLS)
        .step_by(step)
        .map(|c| c.to_string())
        .collect();
    Err(crate::error::InputError::BlockShape {
        rows,
        cols,
        values: values.name().to_string(),
        supported: format!(
            "R×C blocks with R in 1..={KERNEL_MAX_BLOCK_ROWS} and C in {}",
            widths.join(", ")
        ),
    }
    .into())
}

impl Bsr {
    /// Stores the blocks of `w` (`n × k`, row-major) that hold a non-zero, as `value_type`,
    /// with blocks of `block_rows × block_cols` (edge blocks zero-padded).
    pub fn from_dense(
        w: &[f32],
        n: usize,
        k: usize,
        block_rows: usize,
        block_cols: usize,
        value_type: ValueType,
    ) -> Result<Self> {
        check_matrix(w, n, k)?;
        if block_rows == 0 || block_cols == 0 {
            return Err(Error::invalid(format!(
                "empty block shape ({block_rows} × {block_cols})"
            )));
        }
        check_range(w, k, value_type)?;
        let (br, bc) = (block_rows, block_cols);
        let (grid_rows, grid_cols) = (n.div_ceil(br), k.div_ceil(bc));
        to_u32(grid_cols, "BSR block columns")?;
        let in_range = |rb: usize, cb: usize| {
            let rows = rb * br..((rb + 1) * br).min(n);
            rows.flat_map(move |r| r * k + cb * bc..r * k + ((cb + 1) * bc).min(k))
        };
        let mut row_ptr = vec![0u32];
        let mut block_col = Vec::new();
        for rb in 0..grid_rows {
            for cb in 0..grid_cols {
                if in_range(rb, cb).any(|i| w[i] != 0.0) {
                    block_col.push(cb as u32);
                }
            }
            row_ptr.push(to_u32(block_col.len(), "BSR blocks")?);
        }
        let mut bsr = Bsr {
            n,
            k,
            block_rows,
            block_cols,
            value_type,
            row_ptr,
            block_col,
            values: Vec::new(),
            scales: Vec::new(),
        };
        bsr.encode(w);
        Ok(bsr)
    }

    fn encode(&mut self, w: &[f32]) {
        let (n, k, br, bc, vt) = (
            self.n,
            self.k,
            self.block_rows,
            self.block_cols,
            self.value_type,
        );
        let per_block = self.block_words() * (32 / vt.bits());
        let mut vals = values::zeroed(vt, self.blocks() * per_block);
        let mut int4_scales = Vec::new();
        if vt == ValueType::Int8 {
            let row_scale =
                |r: usize| values::int8_scale(values::amax(w[r * k..(r + 1) * k].iter().copied()));
            self.scales = (0..n).map(|r| row_scale(r).to_bits()).collect();
        }
        for (b, r0, c0) in self.block_origins() {
            for rr in 0..br {
                let r = r0 + rr;
                // Rows past n are padding: an empty row, and for int4 still a scale slot.
                let row = if r < n {
                    &w[r * k + c0..r * k + (c0 + bc).min(k)]
                } else {
                    &[][..]
                };
                let s = match vt {
                    ValueType::Int8 if r < n => f32::from_bits(self.scales[r]),
                    ValueType::Int4 => {
                        let s = values::int4_scale(row);
                        int4_scales.push(s.to_bits() as u32);
                        s.to_f32()
                    }
                    _ => 1.0,
                };
                for (cc, &v) in row.iter().enumerate() {
                    let code = values::encode(vt, v, s);
                    values::put(&mut vals, vt.bits(), b * per_block + rr * bc + cc, code);
                }
            }
        }
        self.values = vals;
        if vt == ValueType::Int4 {
            self.scales = vec![0; int4_scales.len().div_ceil(2)];
            for (i, &h) in int4_scales.iter().enumerate() {
                values::put(&mut self.scales, 16, i, h);
            }
        }
    }

    /// `(block index, first row, first column)` of every stored block, in storage order.
    pub(super) fn block_origins(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.row_ptr.len() - 1).flat_map(move |rb| {
            (self.row_ptr[rb] as usize..self.row_ptr[rb + 1] as usize).map(move |b| {
                (
                    b,
                    rb * self.block_rows,
                    self.block_col[b] as usize * self.block_cols,
                )
            })
        })
    }

    /// Words per stored block: its elements, rounded up to whole 16-byte units.
    pub fn block_words(&self) -> usize {
        (self.block_rows * self.block_cols * self.value_type.bits()).div_ceil(128) * 4
    }

    /// Stored blocks.
    pub fn blocks(&self) -> usize {
        self.block_col.len()
    }

    /// Stored weights: blocks × block size, explicit and padding zeros included.
    pub fn nnz(&self) -> usize {
        self.blocks() * self.block_rows * self.block_cols
    }

    /// Bytes a kernel reads to use every weight once (pointers, block columns, values, scales).
    pub fn bytes(&self) -> u64 {
        4 * (self.row_ptr.len() + self.block_col.len() + self.values.len() + self.scales.len())
            as u64
    }

    /// Scale of row `rr` of block `b` (1 for the float types).
    fn scale(&self, b: usize, r: usize, rr: usize) -> f32 {
        match self.value_type {
            ValueType::Int8 => f32::from_bits(self.scales[r]),
            ValueType::Int4 => values::half(&self.scales, b * self.block_rows + rr),
            _ => 1.0,
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(usize, usize, f32)) {
        let (vt, bc) = (self.value_type, self.block_cols);
        let per_block = self.block_words() * (32 / vt.bits());
        for (b, r0, c0) in self.block_origins() {
            for rr in 0..self.block_rows.min(self.n - r0) {
                let s = self.scale(b, r0 + rr, rr);
                for cc in 0..bc.min(self.k - c0) {
                    let code = values::get(&self.values, vt.bits(), b * per_block + rr * bc + cc);
                    f(r0 + rr, c0 + cc, values::decode(vt, code, s));
                }
            }
        }
    }

    /// Unpacks to a dense f32 matrix (`n × k`): the weights a kernel multiplies by.
    pub fn to_dense(&self) -> Vec<f32> {
        dense_from(self.n, self.k, |f| self.for_each(f))
    }

    /// `y = x · Wᵀ` for `x` (`m × k`), returning `m × n`, accumulated in f64.
    pub fn matmul_ref(&self, x: &[f32], m: usize) -> Result<Vec<f64>> {
        matmul_from(self.n, self.k, x, m, |f| self.for_each(f))
    }
}
