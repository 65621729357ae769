//! ggml tensor types: their block layouts (as llama.cpp's `ggml-common.h` defines them), the
//! raw blocks sparq maps losslessly onto its own formats, and dequantization to f32 (the CPU
//! reference).

use crate::error::{Error, Result};
use half::f16;

/// A ggml tensor type, by its number in the GGUF file.
///
/// Every type llama.cpp currently writes is known, so that the data ranges of any file can be
/// checked; only [`GgmlType::is_supported`] types can be read as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, missing_docs)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
}

/// Types whose values sparq reads (dequantizes or maps onto its formats).
pub const SUPPORTED_TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

impl GgmlType {
    /// The type with number `id`, or `None` for a number ggml does not (or no longer) define.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        const ALL: [GgmlType; 34] = [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
            IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64,
            IQ1_M, BF16, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0,
        ];
        ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// The number the file stores.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name of the type (`Q4_1`, `F32`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
        }
    }

    /// Elements per block (1 for plain types); a row's length must be a multiple of it.
    pub fn block_len(self) -> u64 {
        self.layout().0
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.layout().1
    }

    /// (elements, bytes) of one block, from the `block_*` structs of `ggml-common.h` (the
    /// `gguf` Python package's table agrees, except its stale 40-byte Q8_1).
    fn layout(self) -> (u64, u64) {
        use GgmlType::*;
        const QK_K: u64 = 256;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 | IQ4_NL => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
            Q2_K => (QK_K, 84),
            Q3_K => (QK_K, 110),
            Q4_K => (QK_K, 144),
            Q5_K => (QK_K, 176),
            Q6_K => (QK_K, 210),
            Q8_K => (QK_K, 292),
            IQ2_XXS => (QK_K, 66),
            IQ2_XS => (QK_K, 74),
            IQ3_XXS => (QK_K, 98),
            IQ1_S => (QK_K, 50),
            IQ3_S => (QK_K, 110),
            IQ2_S => (QK_K, 82),
            IQ4_XS => (QK_K, 136),
            IQ1_M => (QK_K, 56),
            TQ1_0 => (QK_K, 54),
            TQ2_0 => (QK_K, 66),
        }
    }

    /// Whether sparq reads this type's values (see [`SUPPORTED_TYPES`]).
    pub fn is_supported(self) -> bool {
        SUPPORTED_TYPES.contains(&self)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A raw ggml block that a tensor's bytes can be viewed as without copying (see
/// [`super::Gguf::blocks`]). Fields are byte arrays so that the view needs no alignment.
pub trait GgmlBlock: bytemuck::Pod {
    /// The tensor type made of these blocks.
    const TYPE: GgmlType;
}

/// `block_q8_0`: 32 values `qs[i] · d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; 32],
}

/// `block_q4_0`: 32 values `(q - 8) · d`; byte `j` holds element `j` in its low nibble and
/// element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Nibbles.
    pub qs: [u8; 16],
}

/// `block_q4_1`: 32 values `q · d + m`, nibbles ordered as in [`BlockQ4_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Minimum, f16 bits (little-endian).
    pub m: [u8; 2],
    /// Nibbles.
    pub qs: [u8; 16],
}

/// `block_tq2_0`: 256 ternary values `(q - 1) · d`, four 2-bit codes a byte. Element `e`
/// is in byte `32 · (e / 128) + e % 32` at bits `2 · ((e % 128) / 32)`: each 32-byte half
/// holds 128 elements, 32 consecutive ones at each bit pair. Code 3 is no trit; ggml never
/// writes it, and sparq refuses it ([`BlockTQ2_0::codes`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ2_0 {
    /// Codes.
    pub qs: [u8; 64],
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
}

/// `block_tq1_0`: 256 ternary values `(t - 1) · d` in base 3: `qs` holds five trits a byte
/// (elements 0..160 as digit `e / 32` of byte `e % 32`, elements 160..240 as digit
/// `(e - 160) / 16` of byte `32 + (e - 160) % 16`), `qh` four (elements 240..256 as digit
/// `(e - 240) / 4` of byte `(e - 240) % 4`). A byte holding the digits `v` (most significant
/// first, `qh`'s fifth digit 0) is `⌈v · 256 / 243⌉`, and digit `j` is
/// `((b · 3ʲ) mod 256) · 3 / 256`: the trick sparq's ternary16 uses too.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ1_0 {
    /// Five trits a byte.
    pub qs: [u8; 48],
    /// Four trits a byte.
    pub qh: [u8; 4],
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
}

impl GgmlBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
}
impl GgmlBlock for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
}
impl GgmlBlock for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
}
impl GgmlBlock for BlockTQ1_0 {
    const TYPE: GgmlType = GgmlType::TQ1_0;
}
impl GgmlBlock for BlockTQ2_0 {
    const TYPE: GgmlType = GgmlType::TQ2_0;
}

fn f16_le(b: [u8; 2]) -> f32 {
    f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

impl BlockQ8_0 {
    /// The 32 values, as ggml's `dequantize_row_q8_0` computes them.
    pub fn values(&self) -> [f32; 32] {
        let d = f16_le(self.d);
        std::array::from_fn(|i| self.qs[i] as f32 * d)
    }
}

impl BlockQ4_0 {
    /// The 32 values, as ggml's `dequantize_row_q4_0` computes them.
    pub fn values(&self) -> [f32; 32] {
        let d = f16_le(self.d);
        std::array::from_fn(|i| {
            let q = if i < 16 {
                self.qs[i] & 0xF
            } else {
                self.qs[i - 16] >> 4
            };
            (q as i32 - 8) as f32 * d
        })
    }
}

impl BlockQ4_1 {
    /// The 32 values, as ggml's `dequantize_row_q4_1` computes them.
    pub fn values(&self) -> [f32; 32] {
        let (d, m) = (f16_le(self.d), f16_le(self.m));
        std::array::from_fn(|i| {
            let q = if i < 16 {
                self.qs[i] & 0xF
            } else {
                self.qs[i - 16] >> 4
            };
            q as f32 * d + m
        })
    }
}

/// Base-3 digit `j` (most significant first) of a byte of [`BlockTQ1_0`]: always 0, 1 or 2,
/// whatever the byte.
fn trit(b: u8, j: usize) -> u8 {
    const POW3: [u32; 5] = [1, 3, 9, 27, 81];
    ((((b as u32 * POW3[j]) & 0xFF) * 3) >> 8) as u8
}

impl BlockTQ2_0 {
    /// The 256 codes (0, 1, 2 for −1, 0, +1), or the first element holding code 3.
    pub fn codes(&self) -> std::result::Result<[u8; 256], usize> {
        let codes: [u8; 256] = std::array::from_fn(|e| {
            (self.qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3
        });
        match codes.iter().position(|&q| q == 3) {
            Some(e) => Err(e),
            None => Ok(codes),
        }
    }

    /// The scale.
    pub fn scale(&self) -> f32 {
        f16_le(self.d)
    }
}

impl BlockTQ1_0 {
    /// The 256 trits (0, 1, 2 for −1, 0, +1).
    pub fn codes(&self) -> [u8; 256] {
        std::array::from_fn(|e| match e {
            0..160 => trit(self.qs[e % 32], e / 32),
            160..240 => trit(self.qs[32 + (e - 160) % 16], (e - 160) / 16),
            _ => trit(self.qh[(e - 240) % 4], (e - 240) / 4),
        })
    }

    /// The scale.
    pub fn scale(&self) -> f32 {
        f16_le(self.d)
    }
}

/// Ternary values `(q - 1) · d`, as ggml's `dequantize_row_tq{1,2}_0` compute them.
fn ternary_values(codes: &[u8; 256], d: f32) -> [f32; 256] {
    std::array::from_fn(|e| (codes[e] as f32 - 1.0) * d)
}

fn blocks_values<B: GgmlBlock, const N: usize>(
    bytes: &[u8],
    values: impl Fn(&B) -> [f32; N],
) -> Vec<f32> {
    let blocks: &[B] = bytemuck::cast_slice(bytes);
    blocks.iter().flat_map(values).collect()
}

/// The f32 values of `bytes`, a whole number of blocks of `ty`; an error for an unsupported
/// type (naming it and `tensor`) or a length that is not a whole number of blocks.
pub fn dequantize(ty: GgmlType, bytes: &[u8], tensor: &str) -> Result<Vec<f32>> {
    if !ty.is_supported() {
        return Err(unsupported(ty, tensor));
    }
    if !(bytes.len() as u64).is_multiple_of(ty.block_bytes()) {
        return Err(Error::gguf(format!(
            "tensor '{tensor}': {} bytes are not a whole number of {ty} blocks of {} bytes",
            bytes.len(),
            ty.block_bytes()
        )));
    }
    Ok(match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_le([c[0], c[1]]))
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        GgmlType::Q8_0 => blocks_values(bytes, BlockQ8_0::values),
        GgmlType::Q4_0 => blocks_values(bytes, BlockQ4_0::values),
        GgmlType::Q4_1 => blocks_values(bytes, BlockQ4_1::values),
        GgmlType::TQ1_0 => blocks_values(bytes, |b: &BlockTQ1_0| {
            ternary_values(&b.codes(), b.scale())
        }),
        GgmlType::TQ2_0 => {
            let blocks: &[BlockTQ2_0] = bytemuck::cast_slice(bytes);
            let mut out = Vec::with_capacity(256 * blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let codes = b.codes().map_err(|e| tq2_code3(tensor, 256 * i + e))?;
                out.extend(ternary_values(&codes, b.scale()));
            }
            out
        }
        _ => return Err(unsupported(ty, tensor)),
    })
}

/// A TQ2_0 tensor holding code 3 (no trit) at element `e`.
pub(crate) fn tq2_code3(tensor: &str, e: usize) -> Error {
    Error::gguf(format!(
        "tensor '{tensor}': TQ2_0 element {e} has code 3, which is no ternary weight"
    ))
}

/// `unsupported type X in tensor Y`, with the list of what is supported.
pub(crate) fn unsupported(ty: GgmlType, tensor: &str) -> Error {
    let names: Vec<&str> = SUPPORTED_TYPES.iter().map(|t| t.name()).collect();
    Error::gguf(format!(
        "unsupported type {ty} in tensor '{tensor}' (sparq reads {})",
        names.join(", ")
    ))
}
