//! GGUF files (llama.cpp's model format, versions 2 and 3, little-endian) on the host: the
//! header, metadata key/values, tensor infos and the data section, memory-mapped.
//!
//! The reader trusts nothing in the file: every count, length and offset is checked against
//! the bytes that remain (and against sane maxima) before anything is allocated, tensor data
//! ranges are checked against the file, and overlapping, misaligned or duplicate tensors are
//! refused. Every failure is an [`crate::InputError::Gguf`] naming the field and its byte
//! offset.
//!
//! GGUF lists a tensor's dimensions innermost first (`dims[0]` is the row length);
//! [`TensorInfo::shape`] gives them outermost first, as the rest of sparq does.
//!
//! ```no_run
//! # fn main() -> sparq::Result<()> {
//! let file = sparq::gguf::Gguf::open("models/SmolLM2-135M-Instruct/model.gguf")?;
//! let layers = file.get_u32("llama.block_count")?;
//! let w = file.dequantize("blk.0.attn_q.weight")?; // f32, row-major
//! # Ok(()) }
//! ```

mod packed;
mod parse;
mod subset;
mod types;
#[doc(hidden)]
pub mod writer;

pub use packed::packed_weights;
pub use subset::metadata_only;
pub use types::{
    BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockTQ1_0, BlockTQ2_0, GgmlBlock, GgmlType, SUPPORTED_TYPES,
    dequantize,
};

use crate::error::{Error, Result};
use memmap2::Mmap;
use parse::Parser;
use std::collections::HashMap;
use std::path::Path;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that sets the alignment of tensor data.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Longest metadata key (the GGUF specification's limit).
pub const MAX_KEY_LEN: u64 = 65535;
/// Longest tensor name (ggml's `GGML_MAX_NAME`).
pub const MAX_TENSOR_NAME_LEN: u64 = 64;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays in a metadata value; deeper files are refused rather than
/// parsed by unbounded recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Longest string value (1 GiB): longer ones are refused before the length is trusted.
pub const MAX_STRING_LEN: u64 = 1 << 30;

/// The type of a metadata value, by its number in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with number `id`, if GGUF defines one.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        [
            U8, I8, U16, I16, U32, I32, F32, Bool, Str, Array, U64, I64, F64,
        ]
        .into_iter()
        .find(|t| *t as u32 == id)
    }

    /// The number the file stores.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name used in messages (`u32`, `str`, `array`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "str",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// The fewest bytes a value of this type takes in the file: what makes a count of
    /// elements checkable against the bytes that remain before allocating for it.
    fn min_encoded_len(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | Str => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, stored by element type so that a long array of bytes costs bytes, not
/// a [`Value`] each.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The type for messages: `u32`, `array of str`, `array of array of u8`, ...
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => a.type_name(),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as an unsigned integer, for any integer type holding a non-negative value.
    pub fn as_uint(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

impl Array {
    /// Type of the elements.
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::Str(_) => ValueType::Str,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Str(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `array of T`, nested arrays spelled out from their first element (`array of array`
    /// when there is none).
    pub fn type_name(&self) -> String {
        match self {
            Array::Array(v) => match v.first() {
                Some(inner) => format!("array of {}", inner.type_name()),
                None => "array of array".to_string(),
            },
            a => format!("array of {}", a.elem_type().name()),
        }
    }
}

/// One tensor's entry in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Dimensions as the file lists them: innermost (the row length) first.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Dimensions outermost first (row-major), e.g. `[n, k]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        // Each dimension fits usize: the tensor's bytes were checked to lie in the file.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Length of one row (`dims[0]`).
    pub fn row_len(&self) -> usize {
        self.dims[0] as usize
    }

    /// Number of rows (the product of the outer dimensions; 1 for a vector).
    pub fn rows(&self) -> usize {
        self.dims[1..].iter().product::<u64>() as usize
    }
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata and tensor infos in memory, tensor data in the mapping.
pub struct Gguf {
    source: String,
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u32,
    data_start: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("source", &self.source)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl Gguf {
    /// Maps the file at `path` and parses and checks its header, metadata and tensor infos.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|e| Error::gguf(format!("{source}: cannot open: {e}")))?;
        // SAFETY: the mapping is read-only and private to this process; if another process
        // truncates the file while it is mapped, reads may fault, as with any mapped file.
        // Every range read from it was checked against its length when it was parsed.
        let mmap = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::gguf(format!("{source}: cannot map: {e}")))?;
        Self::parse(source, Storage::Mapped(mmap))
    }

    /// Parses a GGUF file held in memory (`source` names it in messages).
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self> {
        Self::parse(source.to_string(), Storage::Owned(bytes))
    }

    fn parse(source: String, storage: Storage) -> Result<Self> {
        let parsed = Parser {
            buf: storage.bytes(),
            pos: 0,
        }
        .parse()
        .map_err(|e| e.map_message(|m| format!("{source}: {m}")))?;
        Ok(Gguf {
            source,
            storage,
            version: parsed.version,
            metadata: parsed.metadata,
            key_index: parsed.key_index,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
            alignment: parsed.alignment,
            data_start: parsed.data_start,
        })
    }

    /// The path (or name) the file was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::gguf(format!("{}: metadata key '{key}' is missing", self.source)))
    }

    fn wrong_type(&self, key: &str, found: &Value, expected: &str) -> Error {
        Error::gguf(format!(
            "{}: metadata key '{key}' is {}, expected {expected}",
            self.source,
            found.type_name()
        ))
    }

    /// `key` as any non-negative integer (whatever integer type the writer chose).
    pub fn get_uint(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_uint()
            .ok_or_else(|| self.wrong_type(key, v, "a non-negative integer"))
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::Str(s) => Ok(s),
            v => Err(self.wrong_type(key, v, "str")),
        }
    }

    /// `key` as an array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.wrong_type(key, v, "array")),
        }
    }
}

/// Typed getters, one per scalar type: `get_u32` and so on.
macro_rules! scalar_getters {
    ($($fn_name:ident, $variant:ident, $t:ty);* $(;)?) => {
        impl Gguf {
            $(
                #[doc = concat!("`key` as `", stringify!($t), "`; an error naming the key and the type found otherwise.")]
                pub fn $fn_name(&self, key: &str) -> Result<$t> {
                    match self.require(key)? {
                        Value::$variant(x) => Ok(*x),
                        v => Err(self.wrong_type(key, v, stringify!($t))),
                    }
                }
            )*
        }
    };
}

scalar_getters! {
    get_u8, U8, u8;
    get_i8, I8, i8;
    get_u16, U16, u16;
    get_i16, I16, i16;
    get_u32, U32, u32;
    get_i32, I32, i32;
    get_u64, U64, u64;
    get_i64, I64, i64;
    get_f32, F32, f32;
    get_f64, F64, f64;
    get_bool, Bool, bool;
}

/// Typed array getters: `get_array_str` and so on.
macro_rules! array_getters {
    ($($fn_name:ident, $variant:ident, $t:ty, $elem:literal);* $(;)?) => {
        impl Gguf {
            $(
                #[doc = concat!("`key` as an array of ", $elem, "; an error naming the key and the type found otherwise.")]
                pub fn $fn_name(&self, key: &str) -> Result<&[$t]> {
                    match self.require(key)? {
                        Value::Array(Array::$variant(x)) => Ok(x),
                        v => Err(self.wrong_type(key, v, concat!("array of ", $elem))),
                    }
                }
            )*
        }
    };
}

array_getters! {
    get_array_u8, U8, u8, "u8";
    get_array_i8, I8, i8, "i8";
    get_array_u16, U16, u16, "u16";
    get_array_i16, I16, i16, "i16";
    get_array_u32, U32, u32, "u32";
    get_array_i32, I32, i32, "i32";
    get_array_u64, U64, u64, "u64";
    get_array_i64, I64, i64, "i64";
    get_array_f32, F32, f32, "f32";
    get_array_f64, F64, f64, "f64";
    get_array_bool, Bool, bool, "bool";
    get_array_str, Str, String, "str";
}

impl Gguf {
    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::gguf(format!("{}: no tensor named '{name}'", self.source)))
    }

    /// The raw bytes of tensor `name`, in its ggml type's layout.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        Ok(self.bytes_of(t))
    }

    fn bytes_of(&self, t: &TensorInfo) -> &[u8] {
        // In range: checked against the file's length when the file was parsed.
        let start = (self.data_start + t.offset) as usize;
        &self.storage.bytes()[start..start + t.size as usize]
    }

    /// Tensor `name` as raw blocks of `B` (no copy): what maps losslessly onto sparq's
    /// formats. An error when the tensor is of another type.
    pub fn blocks<B: GgmlBlock>(&self, name: &str) -> Result<&[B]> {
        let t = self.tensor(name)?;
        if t.ty != B::TYPE {
            return Err(Error::gguf(format!(
                "{}: tensor '{name}' is {}, not {}",
                self.source,
                t.ty,
                B::TYPE
            )));
        }
        // The blocks are byte arrays (alignment 1) and the size a whole number of blocks.
        Ok(bytemuck::cast_slice(self.bytes_of(t)))
    }

    /// Tensor `name` as f32 values, row-major (the CPU reference of every supported type);
    /// `unsupported type X in tensor Y` for the others.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        dequantize(t.ty, self.bytes_of(t), name).map_err(|e| e.prefixed(&self.source))
    }
}
