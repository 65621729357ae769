//! Weight formats on the host: quantization from f32, packing into the GPU layout, unpacking,
//! and the quantization error.
//!
//! # Layouts
//!
//! A weight matrix `W` is `n × k` (`n` outputs, `k` inputs), row-major, and each row is
//! packed into whole 16-byte *blocks* so that a GPU lane reads one `vec4<u32>` per step and a
//! subgroup reads consecutive 16-byte blocks of a row (coalesced). Rows are padded up to a
//! multiple of the block with weights that decode to exactly zero (the min formats: see
//! *Padding* below):
//!
//! | format | block (weights / 16 B) | element | scale | zero point |
//! | --- | --- | --- | --- | --- |
//! | f32 | 4 | IEEE f32 | – | – |
//! | f16 | 8 | IEEE f16, even k in the low half | – | – |
//! | int8 | 16 | i8, k ascending from the low byte | f32 per row | – |
//! | int8 g32 | 16 | i8, k ascending from the low byte | f16 per (row, group of 32) | – |
//! | int4 g{32,64,128} | 32 | u4, k ascending from the low nibble | f16 per (row, group) | 8 (symmetric) or u4 per (row, group) |
//! | int4 g{32,64,128} m | 32 | u4, k ascending from the low nibble | f16 `d` per (row, group) | f16 minimum `m` per (row, group) |
//! | binary g{32,64,128}, with or without m | 128 | sign bit ([`low_bit`]) | f16 per (row, group of the padded row) | f16 mean per (row, group) with `m` |
//! | ternary g{64,128,256} | 64 | 2-bit code ([`low_bit`]) | f16 per (row, group) | – |
//! | ternary16 g{80,160,320} | 80 | base-3 digit, five a byte ([`low_bit`]) | f16 per (row, group) | – |
//!
//! Scales of int4 and int8 g32 are `n × groups` f16 values packed two per `u32` (even index
//! low); asymmetric zero points are `n × groups` nibbles packed eight per `u32`, the minimums
//! of the `m` formats `n × groups` f16 values packed like the scales. An int4 weight decodes
//! as `(q - z) · s`, an int8 g32 weight as `q · d`, a min-format weight as `q · d + m` (f32
//! arithmetic in that order). These are GGUF's Q8_0, Q4_0 (int4 g32, zero point 8, after
//! reordering ggml's nibbles) and Q4_1, which map onto them bit for bit
//! (`gguf::packed_weights`).
//!
//! `k` need not be a multiple of the group: the last group of a row is partial and its scale
//! is computed from the weights it really has. Each int4 group's scale (and zero point) is the
//! one of a few clipped ranges with the least squared error ([`int4`]); int8 scales each row to
//! its largest magnitude; int8 g32 and the min formats quantize as ggml's Q8_0 and Q4_1 do.
//!
//! Padding: f32, f16, i8 and symmetric/asymmetric u4 padding decodes to exactly zero.
//! Min-format padding holds code 0, which decodes to the last group's minimum `m` (finite):
//! `m` is shared with the real weights of a partial group, so no code makes it zero. It never
//! reaches a result: the host unpacking stops at `k`, the matrix kernels multiply it by x's
//! padding, which is zero (an invariant of the activation tensors, and the kernels stage
//! zeros past `k`), and the row gather masks columns past `k`. GGUF rows are whole groups,
//! so mapped GGUF tensors have no padding at all.

mod concat;
pub mod gptq;
pub mod int4;
pub mod low_bit;
mod pack;

use crate::error::{Error, Result};

/// Storage format of a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum WeightFormat {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (round to nearest from f32; bf16 input is converted).
    F16,
    /// Symmetric int8 with one f32 scale per output channel.
    Int8,
    /// Symmetric int8 with one f16 scale per (row, group of 32 along `k`): GGUF's Q8_0.
    Int8G32,
    /// Group-wise int4 with f16 scales, symmetric or with a 4-bit zero point per group.
    Int4 {
        /// Weights per scale along `k`: 32, 64 or 128.
        group: u32,
        /// Whether each group has its own zero point.
        asymmetric: bool,
    },
    /// Group-wise u4 `q` with an f16 scale `d` and an f16 minimum `m` per group, decoding as
    /// `q · d + m`: GGUF's Q4_1 (group 32).
    Int4Min {
        /// Weights per scale along `k`: 32, 64 or 128.
        group: u32,
    },
    /// Sign bits (1 bit a weight) with an f16 scale per group along `k` and, with `mean`, an
    /// f16 mean per group: a weight decodes as `±s + m` ([`low_bit`]).
    Binary {
        /// Weights per scale along `k`: 32, 64 or 128.
        group: u32,
        /// Whether each group stores its mean (decoding around it) as well as its scale.
        mean: bool,
    },
    /// Ternary weights {−1, 0, +1} in 2 bits with an f16 scale per group ([`low_bit`]).
    Ternary {
        /// Weights per scale along `k`: 64, 128 or 256.
        group: u32,
    },
    /// Ternary weights, five per byte (1.6 bits a weight), with an f16 scale per group.
    Ternary16 {
        /// Weights per scale along `k`: 80, 160 or 320 (whole 80-weight blocks).
        group: u32,
    },
}

impl WeightFormat {
    /// Every format sparq supports, in the order the benchmark lists them.
    pub fn all() -> Vec<WeightFormat> {
        let mut v = vec![WeightFormat::F32, WeightFormat::F16, WeightFormat::Int8];
        for group in [32, 64, 128] {
            v.push(WeightFormat::Int4 {
                group,
                asymmetric: false,
            });
        }
        v.push(WeightFormat::Int4 {
            group: 32,
            asymmetric: true,
        });
        v.push(WeightFormat::Int8G32);
        v.push(WeightFormat::Int4Min { group: 32 });
        v.extend(Self::low_bit());
        v
    }

    /// The default binary and ternary formats (`binary`, `ternary`, `ternary16`).
    pub fn low_bit() -> [WeightFormat; 3] {
        [
            WeightFormat::Binary {
                group: 128,
                mean: false,
            },
            WeightFormat::Ternary { group: 128 },
            WeightFormat::Ternary16 { group: 160 },
        ]
    }

    /// Weights per 16-byte block.
    pub fn block_k(self) -> usize {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::F16 => 8,
            WeightFormat::Int8 | WeightFormat::Int8G32 => 16,
            WeightFormat::Int4 { .. } | WeightFormat::Int4Min { .. } => 32,
            WeightFormat::Ternary { .. } => 64,
            WeightFormat::Ternary16 { .. } => 80,
            WeightFormat::Binary { .. } => 128,
        }
    }

    /// Weights per f16 scale along `k` for the group-wise formats (int8 g32, int4, binary,
    /// ternary), else `None`.
    pub fn group(self) -> Option<usize> {
        match self {
            WeightFormat::Int8G32 => Some(32),
            WeightFormat::Int4 { group, .. }
            | WeightFormat::Int4Min { group }
            | WeightFormat::Binary { group, .. }
            | WeightFormat::Ternary { group }
            | WeightFormat::Ternary16 { group } => Some(group as usize),
            _ => None,
        }
    }

    /// Scale groups per row of `k` weights (0 for the formats without groups). Binary rows
    /// have a group for every weight of the padded row (see [`low_bit`]).
    pub fn groups(self, k: usize) -> usize {
        match (self, self.group()) {
            (WeightFormat::Binary { .. }, Some(g)) => k.next_multiple_of(self.block_k()) / g,
            (_, Some(g)) => k.div_ceil(g),
            (_, None) => 0,
        }
    }

    /// Whether the format is binary or ternary.
    pub fn is_low_bit(self) -> bool {
        matches!(
            self,
            WeightFormat::Binary { .. }
                | WeightFormat::Ternary { .. }
                | WeightFormat::Ternary16 { .. }
        )
    }

    /// Short name: `f32`, `f16`, `int8`, `int8g32`, `int4g32`, `int4g32a` (asymmetric),
    /// `int4g32m` (scale and minimum), `binaryg128` (`binaryg128m` with means),
    /// `ternaryg128`, `ternary16g160`.
    pub fn name(self) -> String {
        match self {
            WeightFormat::F32 => "f32".into(),
            WeightFormat::F16 => "f16".into(),
            WeightFormat::Int8 => "int8".into(),
            WeightFormat::Int8G32 => "int8g32".into(),
            WeightFormat::Int4 { group, asymmetric } => {
                format!("int4g{group}{}", if asymmetric { "a" } else { "" })
            }
            WeightFormat::Int4Min { group } => format!("int4g{group}m"),
            WeightFormat::Binary { group, mean } => {
                format!("binaryg{group}{}", if mean { "m" } else { "" })
            }
            WeightFormat::Ternary { group } => format!("ternaryg{group}"),
            WeightFormat::Ternary16 { group } => format!("ternary16g{group}"),
        }
    }

    /// Parses the names [`WeightFormat::name`] produces (`int4` means `int4g32`; `binary`,
    /// `binarym`, `ternary` and `ternary16` mean the groups of [`WeightFormat::low_bit`]).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(f) = parse_low_bit(&s)? {
            return Ok(f);
        }
        Ok(match s.as_str() {
            "f32" => WeightFormat::F32,
            "f16" => WeightFormat::F16,
            "int8" | "i8" => WeightFormat::Int8,
            "int8g32" => WeightFormat::Int8G32,
            "int4" | "i4" => WeightFormat::Int4 {
                group: 32,
                asymmetric: false,
            },
            _ => {
                let rest = s
                    .strip_prefix("int4g")
                    .ok_or_else(|| Error::invalid(format!("unknown weight format '{s}'")))?;
                let (digits, suffix) = match rest.strip_suffix(['a', 'm']) {
                    Some(d) => (d, rest.chars().last()),
                    None => (rest, None),
                };
                let group = digits
                    .parse()
                    .map_err(|_| Error::invalid(format!("unknown weight format '{s}'")))?;
                check_group(group)?;
                match suffix {
                    Some('m') => WeightFormat::Int4Min { group },
                    a => WeightFormat::Int4 {
                        group,
                        asymmetric: a.is_some(),
                    },
                }
            }
        })
    }

    /// Bits per stored weight, without scales (1.6 for ternary16).
    pub fn bits(self) -> f64 {
        128.0 / self.block_k() as f64
    }

    /// The group sizes the format accepts.
    fn groups_allowed(self) -> &'static [u32] {
        match self {
            WeightFormat::Ternary { .. } => &[64, 128, 256],
            WeightFormat::Ternary16 { .. } => &[80, 160, 320],
            _ => &[32, 64, 128],
        }
    }

    /// Refuses a group size the format does not have.
    fn check(self) -> Result<()> {
        let Some(g) = self.group() else {
            return Ok(());
        };
        let allowed = self.groups_allowed();
        if allowed.contains(&(g as u32)) {
            return Ok(());
        }
        let family = match self {
            WeightFormat::Binary { .. } => "binary",
            WeightFormat::Ternary { .. } => "ternary",
            WeightFormat::Ternary16 { .. } => "ternary16",
            _ => "int4",
        };
        Err(Error::invalid(format!(
            "{family} group size must be {}, got {g}",
            allowed
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn check_group(group: u32) -> Result<()> {
    WeightFormat::Int4 {
        group,
        asymmetric: false,
    }
    .check()
}

/// Parses `binary[gN][m]`, `ternary[gN]` and `ternary16[gN]`; `None` for other names.
fn parse_low_bit(s: &str) -> Result<Option<WeightFormat>> {
    let unknown = || Error::invalid(format!("unknown weight format '{s}'"));
    let group = |rest: &str, default: u32| -> Result<u32> {
        match rest {
            "" => Ok(default),
            r => r
                .strip_prefix('g')
                .and_then(|d| d.parse().ok())
                .ok_or_else(unknown),
        }
    };
    let f = if let Some(rest) = s.strip_prefix("ternary16") {
        WeightFormat::Ternary16 {
            group: group(rest, 160)?,
        }
    } else if let Some(rest) = s.strip_prefix("ternary") {
        WeightFormat::Ternary {
            group: group(rest, 128)?,
        }
    } else if let Some(rest) = s.strip_prefix("binary") {
        let (rest, mean) = match rest.strip_suffix('m') {
            Some(r) => (r, true),
            None => (rest, false),
        };
        WeightFormat::Binary {
            group: group(rest, 128)?,
            mean,
        }
    } else {
        return Ok(None);
    };
    f.check()?;
    Ok(Some(f))
}

/// A weight matrix in its GPU layout (see the module documentation).
#[derive(Clone, Debug)]
pub struct PackedWeights {
    /// Storage format.
    pub format: WeightFormat,
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Packed rows, `n × row_words()` words.
    pub data: Vec<u32>,
    /// Scales: f32 bits per row (int8) or packed f16 pairs per (row, group) (int8 g32, int4);
    /// else empty.
    pub scales: Vec<u32>,
    /// Packed 4-bit zero points per (row, group) for asymmetric int4, packed f16 minimums
    /// per (row, group) for [`WeightFormat::Int4Min`]; else empty.
    pub zeros: Vec<u32>,
}

/// How far the quantized weights are from the originals.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct QuantError {
    /// ‖W − Ŵ‖ / ‖W‖ (Frobenius).
    pub relative: f64,
    /// max |W − Ŵ|.
    pub max_abs: f64,
}

impl PackedWeights {
    /// Quantizes and packs `w` (`n × k`, row-major f32) into `format`.
    pub fn quantize(w: &[f32], n: usize, k: usize, format: WeightFormat) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(Error::invalid(format!("empty weight matrix ({n} × {k})")));
        }
        if w.len() != n * k {
            return Err(Error::shape(format!(
                "weight data has {} values, expected {n} × {k} = {}",
                w.len(),
                n * k
            )));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "weight [{}, {}] is {} (not finite)",
                i / k,
                i % k,
                w[i]
            )));
        }
        format.check()?;
        let p = if format.is_low_bit() {
            low_bit::pack(w, n, k, format)
        } else {
            pack::pack(w, n, k, format)
        };
        // f16 storage and the f16 scales and minimums of the group formats overflow for
        // weights past f16's range (65504) instead of clipping them: refuse what would be
        // stored as an infinity rather than let it poison every result.
        if let Some(r) = p.non_finite_row() {
            return Err(Error::invalid(format!(
                "weights of row {r} are too large for {} (an f16 weight, scale or minimum \
                 would be infinite)",
                format.name()
            )));
        }
        Ok(p)
    }

    /// Packs bf16 weights (as raw u16 bits) by widening them to f32 first.
    pub fn quantize_bf16(bits: &[u16], n: usize, k: usize, format: WeightFormat) -> Result<Self> {
        let w: Vec<f32> = bits
            .iter()
            .map(|&b| half::bf16::from_bits(b).to_f32())
            .collect();
        Self::quantize(&w, n, k, format)
    }

    /// The first row whose stored numbers (f32 or f16 weights, f32 or f16 scales, f16
    /// minimums) are not all finite: what converting too large weights, or a hostile file,
    /// leaves. `None` when every one is finite.
    pub fn non_finite_row(&self) -> Option<usize> {
        let half = |words: &[u32], i: usize| pack::half_f32(words, i).is_finite();
        let rw = self.row_words();
        let groups = self.groups();
        (0..self.n).find(|&r| {
            let row = self.data.get(r * rw..(r + 1) * rw).unwrap_or(&[]);
            let data_ok = match self.format {
                WeightFormat::F32 => row.iter().all(|&w| f32::from_bits(w).is_finite()),
                WeightFormat::F16 => (0..2 * row.len()).all(|i| half(row, i)),
                _ => true,
            };
            let in_range = |words: &[u32]| (r + 1) * groups <= 2 * words.len();
            let scales_ok = match self.format {
                WeightFormat::Int8 => self
                    .scales
                    .get(r)
                    .is_none_or(|&s| f32::from_bits(s).is_finite()),
                WeightFormat::F32 | WeightFormat::F16 => true,
                _ => {
                    !in_range(&self.scales)
                        || (r * groups..(r + 1) * groups).all(|i| half(&self.scales, i))
                }
            };
            let zeros_ok = !self.format.has_half_zeros()
                || !in_range(&self.zeros)
                || (r * groups..(r + 1) * groups).all(|i| half(&self.zeros, i));
            !(data_ok && scales_ok && zeros_ok)
        })
    }

    /// Words per packed row (a multiple of 4).
    pub fn row_words(&self) -> usize {
        row_words(self.format, self.k)
    }

    /// Scale groups per row (int8 g32, int4, binary, ternary), else 0.
    pub fn groups(&self) -> usize {
        self.format.groups(self.k)
    }

    /// Bytes a kernel reads to use every weight once (data, scales, zero points).
    pub fn bytes(&self) -> u64 {
        4 * (self.data.len() + self.scales.len() + self.zeros.len()) as u64
    }

    /// Unpacks to f32 (`n × k`): the weights the GPU kernels really multiply by.
    pub fn dequantize(&self) -> Vec<f32> {
        if self.format.is_low_bit() {
            return low_bit::unpack(self);
        }
        pack::unpack(self)
    }

    /// Compares the stored weights with the originals `w`.
    pub fn error(&self, w: &[f32]) -> QuantError {
        let d = self.dequantize();
        let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
        for (a, b) in w.iter().zip(&d) {
            let e = (*a as f64 - *b as f64).abs();
            num += e * e;
            den += (*a as f64) * (*a as f64);
            max_abs = max_abs.max(e);
        }
        QuantError {
            relative: if den > 0.0 {
                (num / den).sqrt()
            } else {
                num.sqrt()
            },
            max_abs,
        }
    }

    /// Rows `r0..r1` as a matrix of their own (used to split weights across bindings).
    pub fn rows(&self, r0: usize, r1: usize) -> PackedWeights {
        let rw = self.row_words();
        let (scales, zeros) = match self.format {
            WeightFormat::Int8 => (self.scales[r0..r1].to_vec(), Vec::new()),
            WeightFormat::F32 | WeightFormat::F16 => (Vec::new(), Vec::new()),
            _ => {
                let g = self.groups();
                let s = pack::halves_of(&self.scales, r0 * g, r1 * g);
                let z = match self.format {
                    WeightFormat::Int4 {
                        asymmetric: true, ..
                    } => pack::nibbles_of(&self.zeros, r0 * g, r1 * g),
                    f if f.has_half_zeros() => pack::halves_of(&self.zeros, r0 * g, r1 * g),
                    _ => Vec::new(),
                };
                (s, z)
            }
        };
        PackedWeights {
            format: self.format,
            n: r1 - r0,
            k: self.k,
            data: self.data[r0 * rw..r1 * rw].to_vec(),
            scales,
            zeros,
        }
    }
}

/// Words per packed row of `k` weights in `format` (whole 16-byte blocks).
pub fn row_words(format: WeightFormat, k: usize) -> usize {
    k.div_ceil(format.block_k()) * 4
}

impl WeightFormat {
    /// Whether `zeros` holds one f16 per (row, group): the minimums of the min formats and
    /// the means of binary with means.
    pub fn has_half_zeros(self) -> bool {
        matches!(
            self,
            WeightFormat::Int4Min { .. } | WeightFormat::Binary { mean: true, .. }
        )
    }
}
