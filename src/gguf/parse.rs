//! The GGUF parser: a cursor that never reads past the end of the file, and the header,
//! metadata and tensor-info sections read through it with every count checked first.

use super::{
    ALIGNMENT_KEY, Array, DEFAULT_ALIGNMENT, GgmlType, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS,
    MAX_KEY_LEN, MAX_STRING_LEN, MAX_TENSOR_NAME_LEN, TensorInfo, Value, ValueType,
};
use crate::error::{Error, Result};
use std::collections::HashMap;

pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) metadata: Vec<(String, Value)>,
    pub(super) key_index: HashMap<String, usize>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) tensor_index: HashMap<String, usize>,
    pub(super) alignment: u32,
    pub(super) data_start: u64,
}

/// Most elements reserved ahead of parsing them. A count was checked against the bytes that
/// remain, but an element can take several times its encoded size in memory (a `String` is
/// 24 bytes, its encoding 8), so lists of such elements grow as they are parsed instead.
const PREALLOC: u64 = 1 << 16;

fn prealloc(count: u64) -> usize {
    count.min(PREALLOC) as usize
}

/// A cursor over the file that never reads past its end.
pub(super) struct Parser<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Parser<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::gguf(format!(
                "truncated: {} needs {n} bytes at byte {}, {} remain",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > max {
            return Err(Error::gguf(format!(
                "{} at byte {at} is {len} bytes long, over the limit of {max}",
                what()
            )));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::gguf(format!("{} at byte {at} is not valid UTF-8", what())))
    }

    /// Refuses `count` elements of at least `min_len` bytes each when they cannot fit in
    /// what remains, before anything is allocated for them.
    fn check_count(&self, count: u64, min_len: u64, what: &dyn Fn() -> String) -> Result<()> {
        let fits = count
            .checked_mul(min_len)
            .is_some_and(|n| n <= self.remaining());
        if !fits {
            return Err(Error::gguf(format!(
                "{} is {count}, but each takes at least {min_len} bytes and only {} remain after byte {}",
                what(),
                self.remaining(),
                self.pos
            )));
        }
        Ok(())
    }

    fn bool(&mut self, what: &dyn Fn() -> String) -> Result<bool> {
        let at = self.pos;
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::gguf(format!(
                "{} at byte {at} is the bool {b}, not 0 or 1",
                what()
            ))),
        }
    }

    fn value_type(&mut self, what: &dyn Fn() -> String) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32(&|| format!("the type of {}", what()))?;
        ValueType::from_id(id).ok_or_else(|| {
            Error::gguf(format!(
                "unknown value type {id} for {} at byte {at}",
                what()
            ))
        })
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => Value::Bool(self.bool(what)?),
            ValueType::Str => Value::Str(self.string(MAX_STRING_LEN, what)?),
            ValueType::Array => Value::Array(self.array_value(depth + 1, what)?),
        })
    }

    fn array_value(&mut self, depth: usize, what: &dyn Fn() -> String) -> Result<Array> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(Error::gguf(format!(
                "{} at byte {} nests arrays deeper than {MAX_ARRAY_DEPTH}",
                what(),
                self.pos
            )));
        }
        let elem = self.value_type(&|| format!("the elements of {}", what()))?;
        let count = self.u64(&|| format!("the length of {}", what()))?;
        self.check_count(count, elem.min_encoded_len(), &|| {
            format!("the length of {} (array of {})", what(), elem.name())
        })?;
        // `count` elements fit in the bytes that remain, so this allocation is bounded by
        // the file's size (times the in-memory size of an element).
        let n = count as usize;
        let item = |i: usize| move || format!("{}[{i}]", what());
        macro_rules! items {
            ($variant:ident, $t:ty) => {{
                let mut v: Vec<$t> = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(<$t>::from_le_bytes(self.array(&item(i))?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(count, what)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(count, what)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => items!(U16, u16),
            ValueType::I16 => items!(I16, i16),
            ValueType::U32 => items!(U32, u32),
            ValueType::I32 => items!(I32, i32),
            ValueType::F32 => items!(F32, f32),
            ValueType::U64 => items!(U64, u64),
            ValueType::I64 => items!(I64, i64),
            ValueType::F64 => items!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.bool(&item(i))?);
                }
                Array::Bool(v)
            }
            ValueType::Str => {
                let mut v = Vec::with_capacity(prealloc(count));
                for i in 0..n {
                    v.push(self.string(MAX_STRING_LEN, &item(i))?);
                }
                Array::Str(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(prealloc(count));
                for i in 0..n {
                    v.push(self.array_value(depth + 1, &item(i))?);
                }
                Array::Array(v)
            }
        })
    }

    pub(super) fn parse(mut self) -> Result<Parsed> {
        let magic: [u8; 4] = self.array(&|| "the magic".into())?;
        if magic != MAGIC {
            return Err(Error::gguf(format!(
                "not a GGUF file: it starts with {magic:02x?}, not \"GGUF\""
            )));
        }
        let version = self.u32(&|| "the version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::gguf(
                    "GGUF version 1 is not supported (sparq reads versions 2 and 3)",
                ));
            }
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(Error::gguf(format!(
                    "GGUF version {v} looks like a big-endian file, which sparq does not read"
                )));
            }
            v => {
                return Err(Error::gguf(format!(
                    "unknown GGUF version {v} (sparq reads versions 2 and 3)"
                )));
            }
        }
        let tensor_count = self.u64(&|| "the tensor count".into())?;
        let kv_count = self.u64(&|| "the metadata count".into())?;
        // Smallest key/value: an empty key (8), a type (4) and a one-byte value.
        self.check_count(kv_count, 8 + 4 + 1, &|| "the metadata count".into())?;
        let mut metadata = Vec::with_capacity(prealloc(kv_count));
        let mut key_index = HashMap::with_capacity(prealloc(kv_count));
        for i in 0..kv_count {
            let at = self.pos;
            let key = self.string(MAX_KEY_LEN, &|| format!("metadata key #{i}"))?;
            let what = || format!("metadata '{key}'");
            let ty = self.value_type(&what)?;
            let value = self.value(ty, 0, &what)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::gguf(format!(
                    "metadata key '{key}' at byte {at} appears twice"
                )));
            }
            metadata.push((key, value));
        }
        let alignment = match key_index.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a,
            Some(Value::U32(a)) => {
                return Err(Error::gguf(format!(
                    "metadata '{ALIGNMENT_KEY}' is {a}, not a power of two"
                )));
            }
            Some(v) => {
                return Err(Error::gguf(format!(
                    "metadata '{ALIGNMENT_KEY}' is {}, expected u32",
                    v.type_name()
                )));
            }
        };

        // Smallest tensor info: an empty name (8), one dimension (4 + 8), type and offset.
        self.check_count(tensor_count, 8 + 4 + 8 + 4 + 8, &|| {
            "the tensor count".into()
        })?;
        let mut tensors = Vec::with_capacity(prealloc(tensor_count));
        let mut tensor_index = HashMap::with_capacity(prealloc(tensor_count));
        for i in 0..tensor_count {
            let at = self.pos;
            let name = self.string(MAX_TENSOR_NAME_LEN, &|| format!("the name of tensor #{i}"))?;
            let info = self.tensor_info(name, alignment)?;
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(Error::gguf(format!(
                    "tensor '{}' at byte {at} appears twice",
                    info.name
                )));
            }
            tensors.push(info);
        }

        let data_start = (self.pos as u64).next_multiple_of(alignment as u64);
        let len = self.buf.len() as u64;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size));
            if end.is_none_or(|e| e > len) {
                return Err(Error::gguf(format!(
                    "tensor '{}': data at offset {} ({} bytes, data section at byte {data_start}) runs past the end of the file ({len} bytes)",
                    t.name, t.offset, t.size
                )));
            }
        }
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            if pair[0].offset + pair[0].size > pair[1].offset {
                return Err(Error::gguf(format!(
                    "tensors '{}' (bytes {}..{}) and '{}' (from {}) overlap",
                    pair[0].name,
                    pair[0].offset,
                    pair[0].offset + pair[0].size,
                    pair[1].name,
                    pair[1].offset
                )));
            }
        }
        Ok(Parsed {
            version,
            metadata,
            key_index,
            tensors,
            tensor_index,
            alignment,
            data_start,
        })
    }

    fn tensor_info(&mut self, name: String, alignment: u32) -> Result<TensorInfo> {
        let at = self.pos;
        let n_dims = self.u32(&|| format!("the dimension count of tensor '{name}'"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Error::gguf(format!(
                "tensor '{name}' has {n_dims} dimensions (at byte {at}); ggml takes 1 to {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let dim = self.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
            if dim == 0 {
                return Err(Error::gguf(format!("tensor '{name}': dimension {d} is 0")));
            }
            dims.push(dim);
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                Error::gguf(format!(
                    "tensor '{name}': dimensions {dims:?} overflow the element count"
                ))
            })?;
        let at = self.pos;
        let id = self.u32(&|| format!("the type of tensor '{name}'"))?;
        let ty = GgmlType::from_id(id).ok_or_else(|| {
            Error::gguf(format!(
                "unknown tensor type {id} in tensor '{name}' (at byte {at})"
            ))
        })?;
        if !dims[0].is_multiple_of(ty.block_len()) {
            return Err(Error::gguf(format!(
                "tensor '{name}': its row length {} is not a multiple of {ty}'s block of {}",
                dims[0],
                ty.block_len()
            )));
        }
        let size = (elements / ty.block_len())
            .checked_mul(ty.block_bytes())
            .ok_or_else(|| {
                Error::gguf(format!(
                    "tensor '{name}': dimensions {dims:?} overflow the byte size"
                ))
            })?;
        let offset = self.u64(&|| format!("the offset of tensor '{name}'"))?;
        if !offset.is_multiple_of(alignment as u64) {
            return Err(Error::gguf(format!(
                "tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        })
    }
}
