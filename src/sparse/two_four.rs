//! 2:4 compressed: two kept values and their 2-bit positions per group of four along `k`.

use super::{ValueType, check_matrix, check_range, dense_from, matmul_from, values};
use crate::error::{Error, Result};

/// A 2:4-sparse weight matrix (see the [module documentation](super) for the layout).
#[derive(Clone, Debug, PartialEq)]
pub struct TwoFour {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Type of the stored values.
    pub value_type: ValueType,
    /// Kept values, `n × row_value_words()` words.
    pub values: Vec<u32>,
    /// Positions, `n × row_meta_words()` words, 4 bits per group.
    pub meta: Vec<u32>,
    /// int8: f32 bits per row; int4: f16 per (row, 32 slots), packed in pairs.
    pub scales: Vec<u32>,
}

impl TwoFour {
    /// Slots per int4 scale.
    pub const INT4_GROUP: usize = 32;

    /// Compresses `w` (`n × k`, row-major), which must have at most two non-zeros in every
    /// group of four columns (use [`crate::prune::n_of_m`] with 2:4 first), as `value_type`.
    pub fn from_dense(w: &[f32], n: usize, k: usize, value_type: ValueType) -> Result<Self> {
        check_matrix(w, n, k)?;
        check_range(w, k, value_type)?;
        let groups = k.div_ceil(4);
        let mut tf = TwoFour {
            n,
            k,
            value_type,
            values: Vec::new(),
            meta: vec![0; n * groups.div_ceil(32) * 4],
            scales: Vec::new(),
        };
        let rmw = tf.row_meta_words();
        // Kept values of the current row, in slot order, before quantization.
        let mut kept = Vec::with_capacity(2 * groups);
        let mut slots = Vec::with_capacity(n * 2 * groups);
        for r in 0..n {
            kept.clear();
            for g in 0..groups {
                let at = |p: usize| {
                    let c = 4 * g + p;
                    if c < k { w[r * k + c] } else { 0.0 }
                };
                let (mut nz, mut count) = ([0usize; 4], 0);
                for p in (0..4).filter(|&p| at(p) != 0.0) {
                    nz[count] = p;
                    count += 1;
                }
                if count > 2 {
                    return Err(Error::invalid(format!(
                        "not 2:4 sparse: row {r}, group {g} (columns {}..{}) has {} non-zeros, \
                         at most 2 allowed (prune with prune::n_of_m(w, n, k, 2, 4) first)",
                        4 * g,
                        (4 * g + 4).min(k),
                        count
                    )));
                }
                // Missing slots take the lowest free positions, keeping p0 < p1.
                let (p0, p1) = match (count, nz[0]) {
                    (2, a) => (a, nz[1]),
                    (1, a) if a > 0 => (0, a),
                    _ => (0, 1),
                };
                tf.meta[r * rmw + g / 8] |= ((p0 | (p1 << 2)) as u32) << (4 * (g % 8));
                kept.push(at(p0));
                kept.push(at(p1));
            }
            slots.extend_from_slice(&kept);
        }
        tf.encode(&slots);
        Ok(tf)
    }

    /// Quantizes the kept values (`n × 2G`, slot order) into `values` and `scales`.
    fn encode(&mut self, slots: &[f32]) {
        let vt = self.value_type;
        let (n, spr) = (self.n, 2 * self.groups());
        let per_row = self.row_value_words() * (32 / vt.bits());
        self.values = values::zeroed(vt, n * per_row);
        let sg = self.scale_groups();
        match vt {
            ValueType::Int8 => {
                self.scales = (0..n)
                    .map(|r| {
                        values::int8_scale(values::amax(
                            slots[r * spr..(r + 1) * spr].iter().copied(),
                        ))
                        .to_bits()
                    })
                    .collect();
            }
            ValueType::Int4 => {
                self.scales = vec![0; (n * sg).div_ceil(2)];
                for r in 0..n {
                    for s in 0..sg {
                        let c0 = r * spr + s * Self::INT4_GROUP;
                        let c1 = (c0 + Self::INT4_GROUP).min((r + 1) * spr);
                        let h = values::int4_scale(&slots[c0..c1]);
                        values::put(&mut self.scales, 16, r * sg + s, h.to_bits() as u32);
                    }
                }
            }
            _ => {}
        }
        for r in 0..n {
            for j in 0..spr {
                let code = values::encode(vt, slots[r * spr + j], self.scale(r, j));
                values::put(&mut self.values, vt.bits(), r * per_row + j, code);
            }
        }
    }

    /// Groups of four per row: `ceil(k / 4)`.
    pub fn groups(&self) -> usize {
        self.k.div_ceil(4)
    }

    /// Words per row of values (`2 · groups()` values, padded to 16 bytes).
    pub fn row_value_words(&self) -> usize {
        (2 * self.groups() * self.value_type.bits()).div_ceil(128) * 4
    }

    /// Words per row of metadata (`groups()` nibbles, padded to 16 bytes).
    pub fn row_meta_words(&self) -> usize {
        self.groups().div_ceil(32) * 4
    }

    /// int4 scales per row (`ceil(2 · groups() / 32)`), else 0.
    pub fn scale_groups(&self) -> usize {
        match self.value_type {
            ValueType::Int4 => (2 * self.groups()).div_ceil(Self::INT4_GROUP),
            _ => 0,
        }
    }

    /// Stored weights: two slots per group, zero slots included.
    pub fn nnz(&self) -> usize {
        2 * self.n * self.groups()
    }

    /// Bytes a kernel reads to use every weight once (values, metadata, scales).
    pub fn bytes(&self) -> u64 {
        4 * (self.values.len() + self.meta.len() + self.scales.len()) as u64
    }

    /// Positions (within the group) of the two slots of group `g` of row `r`.
    pub fn positions(&self, r: usize, g: usize) -> [usize; 2] {
        let nib = (self.meta[r * self.row_meta_words() + g / 8] >> (4 * (g % 8))) & 0xF;
        [(nib & 3) as usize, (nib >> 2) as usize]
    }

    /// Scale of slot `j` of row `r` (1 for the float types).
    fn scale(&self, r: usize, j: usize) -> f32 {
        match self.value_type {
            ValueType::Int8 => f32::from_bits(self.scales[r]),
            ValueType::Int4 => {
                values::half(&self.scales, r * self.scale_groups() + j / Self::INT4_GROUP)
            }
            _ => 1.0,
        }
    }

    /// Slot `j` of row `r` decoded with a unit scale (zero exactly when its code is zero).
    pub(super) fn slot_value(&self, r: usize, j: usize) -> f32 {
        let vt = self.value_type;
        let per_row = self.row_value_words() * (32 / vt.bits());
        values::decode(
            vt,
            values::get(&self.values, vt.bits(), r * per_row + j),
            1.0,
        )
    }

    fn for_each(&self, f: &mut dyn FnMut(usize, usize, f32)) {
        let vt = self.value_type;
        let per_row = self.row_value_words() * (32 / vt.bits());
        for r in 0..self.n {
            for g in 0..self.groups() {
                for (i, p) in self.positions(r, g).into_iter().enumerate() {
                    let (j, c) = (2 * g + i, 4 * g + p);
                    if c < self.k {
                        let code = values::get(&self.values, vt.bits(), r * per_row + j);
                        f(r, c, values::decode(vt, code, self.scale(r, j)));
                    }
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
