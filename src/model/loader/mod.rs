//! Weights from a `.safetensors` file, memory-mapped: the header is parsed and validated once,
//! and each tensor is read straight from the mapping when a layer uploads it, so the file is
//! never copied whole into memory.
//!
//! Besides the float dtypes (f32, f16, bf16) a file may hold sparq's packed weight layouts
//! (see [`crate::formats`]): the header's metadata entry `sparq.packed` is a JSON map from a
//! weight name to `{"format": "int4g32", "n": N, "k": K}`, and the tensors `NAME` (U32,
//! `[n, row_words]`), `NAME.scales` and `NAME.zeros` (U32, where the format has them) hold the
//! packed words. Such a file, with the architecture in `sparq.config`, describes itself.

use crate::error::InputError;
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat, row_words};
use crate::weights::LayerWeights;
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod raw;
pub mod sparse;
mod unused;
mod write;

pub use raw::TOKENIZER_GGUF;

pub use unused::{check_unused, check_unused_except};
pub use write::check_output;

/// Metadata key of the packed-layout table.
pub const PACKED_KEY: &str = "sparq.packed";
/// Metadata key of sparq's architecture JSON.
pub const CONFIG_KEY: &str = "sparq.config";

/// How one packed weight is described in the metadata.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PackedInfo {
    /// Format name as [`WeightFormat::name`] writes it.
    pub format: String,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
}

/// Turns the float matrix `name` (`n × k`) into stored weights: quantized when a model loads,
/// compressed (and its pruning recorded) by `sparq pack`.
pub type Store<'a> = dyn FnMut(&str, &[f32], usize, usize) -> Result<LayerWeights> + 'a;

/// A [`Store`] that quantizes into `format`; weights that do not fit it (too large for f16)
/// are refused with the tensor's name.
pub fn quantizer(
    format: WeightFormat,
) -> impl FnMut(&str, &[f32], usize, usize) -> Result<LayerWeights> {
    move |name, w, n, k| {
        PackedWeights::quantize(w, n, k, format)
            .map(Into::into)
            .map_err(|e| named(name, format.name(), e))
    }
}

/// `e` (a refusal of the values of a matrix) as a [`InputError::BadTensor`] naming `tensor`.
pub(crate) fn named(tensor: &str, format: String, e: Error) -> Error {
    match e {
        Error::Input(InputError::Invalid(m)) => Error::Input(InputError::BadTensor {
            tensor: tensor.to_string(),
            expected: format!("a matrix that can be stored as {format}"),
            found: m,
        }),
        e => e,
    }
}

/// The bytes of a weights file: mapped from disk, or owned (a file read from elsewhere, the
/// fuzzers' inputs).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open, validated safetensors file.
pub struct WeightFile {
    path: PathBuf,
    mmap: Bytes,
    header: usize,
    meta: Metadata,
    packed: HashMap<String, PackedInfo>,
    /// Names of the tensors read so far (loaders on several threads share one file).
    used: Mutex<HashSet<String>>,
}

impl WeightFile {
    /// Maps `path` and validates its header (offsets, sizes, total length).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::config(format!("cannot open weights {}: {e}", path.display())))?;
        let len = file.metadata()?.len();
        if len < 8 {
            return Err(Error::safetensors(format!(
                "{}: {len} bytes is too short for a safetensors file",
                path.display()
            )));
        }
        // SAFETY: the mapping is read-only and private to this process; if another process
        // truncates the file while it is mapped, reads may fault, as with any mapped file.
        // sparq never writes to it, and the header's bounds were checked against its length.
        let mmap = unsafe { Mmap::map(&file)? };
        Self::parse(path.to_path_buf(), Bytes::Mapped(mmap))
    }

    /// Validates `bytes` as a safetensors file held in memory; `name` stands for its path in
    /// messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = name.into();
        if bytes.len() < 8 {
            return Err(Error::safetensors(format!(
                "{}: {} bytes is too short for a safetensors file",
                path.display(),
                bytes.len()
            )));
        }
        Self::parse(path, Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, mmap: Bytes) -> Result<Self> {
        let (header, meta) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
            // A JSON file's first bytes read as a header length past 4 GiB, which no real
            // file has: say what it is.
            let text = mmap.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&mmap);
            let huge = mmap.get(4..8).is_some_and(|b| b != [0; 4]);
            let tokenizer = path.file_name().is_some_and(|n| n == "tokenizer.json");
            match text.iter().find(|b| !b.is_ascii_whitespace()) {
                _ if mmap.starts_with(b"GGUF") => Error::safetensors(format!(
                    "{} is a GGUF file (a decoder): `sparq generate`, `chat` and `perplexity` \
                     run it; `embed` and `run` take an encoder or classifier in safetensors",
                    path.display()
                )),
                Some(b'{') if huge && tokenizer => Error::safetensors(format!(
                    "{} is a tokenizer, not a model: pass the model's directory or its \
                     .safetensors file (and this file with --tokenizer, if the model has none)",
                    path.display()
                )),
                Some(b'{' | b'[') if huge => Error::safetensors(format!(
                    "{} is a JSON file, not a safetensors file: pass the model's directory \
                     or its model.safetensors (config.json and the tokenizer are found beside \
                     it)",
                    path.display()
                )),
                _ => Error::safetensors(format!("{}: {e}", path.display())),
            }
        })?;
        let packed = match meta.metadata().as_ref().and_then(|m| m.get(PACKED_KEY)) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::config(format!("metadata '{PACKED_KEY}': {e}")))?,
            None => HashMap::new(),
        };
        let file = WeightFile {
            path,
            mmap,
            header,
            meta,
            packed,
            used: Mutex::new(HashSet::new()),
        };
        file.check_packed_table()?;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A string of the header's `__metadata__`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .map(String::as_str)
    }

    /// Whether the file holds a tensor (float or packed) named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.meta.info(name).is_some()
    }

    /// Whether `name` is stored in one of sparq's packed layouts.
    pub fn is_packed(&self, name: &str) -> bool {
        self.packed.contains_key(name)
    }

    /// The formats of the packed and sparse weights the file holds, sorted, each once (empty
    /// for a file of floats): what those layers run as, whatever format a load asks for.
    pub fn packed_formats(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> =
            self.packed.values().map(|p| &p.format).collect();
        set.into_iter().cloned().collect()
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.meta.tensors().into_keys().collect();
        v.sort();
        v
    }

    fn info(&self, name: &str, expected: &str) -> Result<&TensorInfo> {
        self.meta.info(name).ok_or_else(|| {
            Error::Input(InputError::MissingTensor {
                tensor: name.to_string(),
                expected: expected.to_string(),
            })
        })
    }

    /// Records that the model read `name` (see [`check_unused`]).
    fn mark(&self, name: &str) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(name) {
            used.insert(name.to_string());
        }
    }

    /// The names of the tensors read so far.
    pub fn used(&self) -> HashSet<String> {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        // read_metadata checked that every tensor lies inside the file.
        let base = 8 + self.header;
        &self.mmap[base + info.data_offsets.0..base + info.data_offsets.1]
    }

    /// The dtype `name` is stored in, or a missing-tensor error.
    pub fn dtype(&self, name: &str) -> Result<Dtype> {
        Ok(self.info(name, "a tensor")?.dtype)
    }

    /// The shape of `name`, or a missing-tensor error.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name, "a tensor")?.shape.clone())
    }

    /// Reads float tensor `name` as f32, checking it has exactly `shape` (f32, f16 or bf16 in
    /// the file); non-finite values are refused.
    pub fn floats(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let expected = format!("a float tensor of shape {shape:?}");
        let info = self.info(name, &expected)?;
        if info.shape != shape {
            return Err(Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected,
                found: format!("{:?} of shape {:?}", info.dtype, info.shape),
            }));
        }
        self.mark(name);
        let raw = self.bytes(info);
        let v: Vec<f32> = match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            d => {
                return Err(Error::Input(InputError::BadTensor {
                    tensor: name.to_string(),
                    expected: "dtype F32, F16 or BF16".into(),
                    found: format!("dtype {d:?}"),
                }));
            }
        };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected: "finite values".into(),
                found: format!("{} at flat index {i}", v[i]),
            }));
        }
        Ok(v)
    }

    /// Reads a one-dimensional U32 tensor of any length (an array of a sparse layout).
    pub(crate) fn words_any(&self, name: &str) -> Result<Vec<u32>> {
        let expected = "a one-dimensional U32 tensor";
        let info = self.info(name, expected)?;
        if info.dtype != Dtype::U32 || info.shape.len() != 1 {
            return Err(Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected: expected.into(),
                found: format!("{:?} of shape {:?}", info.dtype, info.shape),
            }));
        }
        self.mark(name);
        Ok(le_words(self.bytes(info)))
    }

    /// Reads a U32 tensor of `len` words (a part of a packed layout).
    fn words(&self, name: &str, len: usize) -> Result<Vec<u32>> {
        let expected = format!("U32 with {len} elements");
        let info = self.info(name, &expected)?;
        let count: usize = info.shape.iter().product();
        if info.dtype != Dtype::U32 || count != len {
            return Err(Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected,
                found: format!("{:?} of shape {:?}", info.dtype, info.shape),
            }));
        }
        self.mark(name);
        Ok(le_words(self.bytes(info)))
    }

    /// Reads the weight matrix `name` (`n × k`): a packed or sparse layout as stored, or a
    /// float tensor packed into `format` here.
    pub fn matrix(
        &self,
        name: &str,
        n: usize,
        k: usize,
        format: WeightFormat,
    ) -> Result<LayerWeights> {
        self.matrix_with(name, n, k, &mut quantizer(format))
    }

    /// Reads the weight matrix `name` (`n × k`): a packed or sparse layout as stored, or a
    /// float tensor turned into stored weights by `store`.
    pub fn matrix_with(
        &self,
        name: &str,
        n: usize,
        k: usize,
        store: &mut Store<'_>,
    ) -> Result<LayerWeights> {
        match self.packed.get(name) {
            Some(p) if sparse::is_sparse_name(&p.format) => {
                Ok(sparse::read(self, name, p, n, k)?.into())
            }
            Some(p) => Ok(self.packed_matrix(name, p, n, k)?.into()),
            None => store(name, &self.floats(name, &[n, k])?, n, k),
        }
    }

    fn packed_matrix(
        &self,
        name: &str,
        p: &PackedInfo,
        n: usize,
        k: usize,
    ) -> Result<PackedWeights> {
        let bad = |expected: String, found: String| {
            Error::Input(InputError::BadTensor {
                tensor: name.to_string(),
                expected,
                found,
            })
        };
        if (p.n, p.k) != (n, k) {
            return Err(bad(
                format!("a packed {n} × {k} matrix"),
                format!("described as {} × {}", p.n, p.k),
            ));
        }
        let format = WeightFormat::parse(&p.format)
            .map_err(|e| bad("a known packed format".into(), e.to_string()))?;
        let data = self.words(name, n * row_words(format, k))?;
        let groups = format.groups(k);
        let (scales, zeros) = match format {
            WeightFormat::Int8 => (self.words(&format!("{name}.scales"), n)?, Vec::new()),
            WeightFormat::F32 | WeightFormat::F16 => (Vec::new(), Vec::new()),
            _ => {
                let s = self.words(&format!("{name}.scales"), (n * groups).div_ceil(2))?;
                let z = match format {
                    WeightFormat::Int4 {
                        asymmetric: true, ..
                    } => self.words(&format!("{name}.zeros"), (n * groups).div_ceil(8))?,
                    f if f.has_half_zeros() => {
                        self.words(&format!("{name}.zeros"), (n * groups).div_ceil(2))?
                    }
                    _ => Vec::new(),
                };
                (s, z)
            }
        };
        let p = PackedWeights {
            format,
            n,
            k,
            data,
            scales,
            zeros,
        };
        if let Some(r) = p.non_finite_row() {
            return Err(bad(
                "finite weights and scales".into(),
                format!("a NaN or infinity in row {r}"),
            ));
        }
        Ok(p)
    }
}

/// Little-endian u32 words of `bytes`.
fn le_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `tensors` (float f32 tensors and packed matrices) and `metadata` to a safetensors
/// file that [`WeightFile`] reads back; atomically ([`crate::files::write_atomic`]), errors
/// naming `path`.
pub fn save(
    path: &Path,
    floats: &[(String, Vec<usize>, Vec<f32>)],
    packed: &[(String, LayerWeights)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    save_with_bytes(path, floats, packed, &[], metadata)
}

/// [`save`], with `bytes` (name, bytes) written as one-dimensional `U8` tensors (what
/// [`WeightFile::byte_tensor`] reads: a decoder's tokenizer, [`TOKENIZER_GGUF`]).
pub fn save_with_bytes(
    path: &Path,
    floats: &[(String, Vec<usize>, Vec<f32>)],
    packed: &[(String, LayerWeights)],
    bytes: &[(String, Vec<u8>)],
    mut metadata: HashMap<String, String>,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    // Sorted, so that packing the same model twice writes the same bytes.
    let mut table = std::collections::BTreeMap::new();
    let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = bytes
        .iter()
        .map(|(n, b)| (n.clone(), Dtype::U8, vec![b.len()], b.clone()))
        .collect();
    for (name, shape, v) in floats {
        blobs.push((
            name.clone(),
            Dtype::F32,
            shape.clone(),
            bytemuck::cast_slice(v).to_vec(),
        ));
    }
    let words = |v: &[u32]| bytemuck::cast_slice::<u32, u8>(v).to_vec();
    for (name, w) in packed {
        table.insert(
            name.clone(),
            PackedInfo {
                format: w.format_name(),
                n: w.n(),
                k: w.k(),
            },
        );
        let p = match w {
            LayerWeights::Dense(p) => p,
            LayerWeights::Sparse(s) => {
                for (part, v) in sparse::arrays(name, s) {
                    blobs.push((part, Dtype::U32, vec![v.len()], words(&v)));
                }
                continue;
            }
        };
        blobs.push((
            name.clone(),
            Dtype::U32,
            vec![p.n, p.row_words()],
            words(&p.data),
        ));
        if !p.scales.is_empty() {
            blobs.push((
                format!("{name}.scales"),
                Dtype::U32,
                vec![p.scales.len()],
                words(&p.scales),
            ));
        }
        if !p.zeros.is_empty() {
            blobs.push((
                format!("{name}.zeros"),
                Dtype::U32,
                vec![p.zeros.len()],
                words(&p.zeros),
            ));
        }
    }
    if !table.is_empty() {
        metadata.insert(
            PACKED_KEY.into(),
            serde_json::to_string(&table).map_err(|e| Error::config(e.to_string()))?,
        );
    }
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_>>()?;
    write::write_safetensors(path, views, metadata)
}
