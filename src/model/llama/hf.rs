//! Llama-family checkpoints in safetensors files: Hugging Face's (`config.json` beside
//! `model.safetensors`, or shards listed by `model.safetensors.index.json`; F32, F16 or BF16
//! tensors) and sparq's own packed files (`sparq pack`: the configuration in `sparq.config`,
//! linear weights packed dense or sparse). Both are read through [`SafetensorsSource`], one
//! memory-mapped tensor at a time; [`LlamaDecoder::open`] tells the kinds (and GGUF) apart.
//!
//! Float linear weights are packed into `DecoderOptions::format` when given; without one
//! each keeps its checkpoint's precision exactly: F16 tensors become f16 weights, F32 and
//! BF16 tensors f32 (f16 cannot hold every bf16 value: its range is far smaller). Weights a
//! sparq file stores packed or sparse are used as they are, whatever the format asked.

use super::source::LlamaSource;
use super::{DecoderOptions, LlamaConfig, LlamaDecoder};
use crate::error::{Error, InputError, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::Gpu;
use crate::model::GpuRef;
use crate::model::config::Architecture;
use crate::model::loader::{CONFIG_KEY, WeightFile};
use crate::weights::LayerWeights;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds of decoder checkpoint [`LlamaDecoder::open`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// A GGUF file (llama.cpp).
    Gguf,
    /// A Hugging Face checkpoint: a directory, or a `.safetensors` file with `config.json`
    /// beside it.
    HuggingFace,
    /// A file written by `sparq pack` (`sparq.config` in its metadata).
    Sparq,
}

/// What `path` holds, by content: GGUF's magic, a directory (Hugging Face), or a safetensors
/// file with or without `sparq.config`.
pub fn detect(path: &Path) -> Result<CheckpointKind> {
    if path.is_dir() {
        return Ok(CheckpointKind::HuggingFace);
    }
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut magic)
    });
    if let Err(e) = read {
        return Err(Error::config(format!(
            "cannot read the model {}: {e}",
            path.display()
        )));
    }
    if magic == crate::gguf::MAGIC {
        return Ok(CheckpointKind::Gguf);
    }
    let file = WeightFile::open(path)?;
    Ok(match file.metadata(CONFIG_KEY) {
        Some(_) => CheckpointKind::Sparq,
        None => CheckpointKind::HuggingFace,
    })
}

/// A Hugging Face checkpoint: its configuration and its weight files, opened.
pub struct HfCheckpoint {
    /// The parsed `config.json`.
    pub config: LlamaConfig,
    /// The weight files (one, or every shard).
    pub files: Vec<WeightFile>,
}

impl HfCheckpoint {
    /// Opens the checkpoint at `path`: a directory holding `config.json` and
    /// `model.safetensors` (or `model.safetensors.index.json` and its shards), or one
    /// `.safetensors` file with `config.json` beside it.
    pub fn open(path: &Path) -> Result<Self> {
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, Some(path.to_path_buf()))
        };
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", config_path.display())))?;
        let config = LlamaConfig::from_hf_config(&text)?;
        let paths = match weights {
            Some(p) => vec![p],
            None => weight_paths(&dir)?,
        };
        let files = paths
            .iter()
            .map(|p| WeightFile::open(p))
            .collect::<Result<_>>()?;
        Ok(HfCheckpoint { config, files })
    }
}

/// The weight files of the checkpoint in `dir`: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` names, each once, in the order first named.
fn weight_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|e| {
        Error::config(format!(
            "{} has neither model.safetensors nor a readable model.safetensors.index.json: {e}",
            dir.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(format!("{}: {e}", index.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(format!("{}: no \"weight_map\" object", index.display())))?;
    let mut out: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let name = file.as_str().ok_or_else(|| {
            Error::config(format!("{}: {tensor} maps to {file}", index.display()))
        })?;
        // Shards are plain names beside the index, never paths elsewhere.
        if name.contains(['/', '\\']) || name == ".." {
            return Err(Error::config(format!(
                "{}: shard name '{name}' is not a file name",
                index.display()
            )));
        }
        let p = dir.join(name);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::config(format!(
            "{}: empty weight_map",
            index.display()
        )));
    }
    Ok(out)
}

/// Tensors of one or more safetensors files, by name: float tensors packed as asked, packed
/// and sparse weights as stored (see the [module documentation](self)).
pub struct SafetensorsSource {
    files: Vec<WeightFile>,
    by_name: HashMap<String, usize>,
    format: Option<WeightFormat>,
}

impl SafetensorsSource {
    /// The tensors of `files` (shards: a name may live in one file only); float linear
    /// weights packed into `format`, or kept exact when `None`.
    pub fn new(files: Vec<WeightFile>, format: Option<WeightFormat>) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.names() {
                if let Some(j) = by_name.insert(name.clone(), i) {
                    return Err(Error::config(format!(
                        "tensor {name} is in both {} and {}",
                        files[j].path().display(),
                        f.path().display()
                    )));
                }
            }
        }
        Ok(SafetensorsSource {
            files,
            by_name,
            format,
        })
    }

    /// [`crate::model::loader::check_unused`] over every file: after a load, refuses tensors
    /// that look like the model's own but were not read.
    pub fn check_unused(&self) -> Result<()> {
        crate::model::loader::check_unused(&self.files.iter().collect::<Vec<_>>())
    }

    /// The file holding `name` (its packed parts included), or a missing-tensor error.
    pub fn file(&self, name: &str, expected: &str) -> Result<&WeightFile> {
        match self.by_name.get(name) {
            Some(&i) => Ok(&self.files[i]),
            None => Err(InputError::MissingTensor {
                tensor: name.to_string(),
                expected: expected.to_string(),
            }
            .into()),
        }
    }

    /// The weight matrix `name` (`n × k`) as [`WeightFile::matrix_with`] reads it, float
    /// tensors packed into this source's format (or their own precision).
    pub fn matrix(&self, name: &str, n: usize, k: usize) -> Result<LayerWeights> {
        let file = self.file(name, &format!("a {n} × {k} weight"))?;
        let format = match self.format {
            Some(f) => f,
            None if file.is_packed(name) => WeightFormat::F32,
            None => match file.dtype(name)? {
                Dtype::F16 => WeightFormat::F16,
                _ => WeightFormat::F32,
            },
        };
        file.matrix_with(name, n, k, &mut |_, w, n, k| {
            Ok(PackedWeights::quantize(w, n, k, format)?.into())
        })
    }
}

impl LlamaSource for SafetensorsSource {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.file(name, &format!("{len} float values"))?
            .floats(name, &[len])
    }

    fn linear(&self, parts: &[(String, usize)], k: usize) -> Result<LayerWeights> {
        let stored = parts
            .iter()
            .map(|(name, rows)| self.matrix(name, *rows, k))
            .collect::<Result<Vec<_>>>()?;
        LayerWeights::concat_rows(stored)
    }
}

/// The decoder configuration a sparq file carries.
pub fn sparq_config(file: &WeightFile) -> Result<LlamaConfig> {
    let json = file.metadata(CONFIG_KEY).ok_or_else(|| {
        Error::config(format!(
            "{} has no '{CONFIG_KEY}' metadata: not a file of sparq pack",
            file.path().display()
        ))
    })?;
    match Architecture::from_sparq_json(json)? {
        Architecture::Llama(c) => Ok(c),
        _ => Err(Error::config(format!(
            "{} holds an encoder, not a decoder: load it with model::Model",
            file.path().display()
        ))),
    }
}

impl<'g> LlamaDecoder<'g> {
    /// Loads the Hugging Face checkpoint at `path` (see [`HfCheckpoint::open`]) onto `gpu`.
    pub fn from_hf(path: impl AsRef<Path>, gpu: &'g Gpu, options: DecoderOptions) -> Result<Self> {
        Self::load_hf(path.as_ref(), GpuRef::Borrowed(gpu), options)
    }

    /// Loads a file written by `sparq pack` onto `gpu`.
    pub fn from_sparq(
        path: impl AsRef<Path>,
        gpu: &'g Gpu,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::load_sparq(path.as_ref(), GpuRef::Borrowed(gpu), options)
    }

    /// Loads a GGUF file, a Hugging Face checkpoint or a sparq file, told apart by content
    /// ([`detect`]).
    pub fn open(path: impl AsRef<Path>, gpu: &'g Gpu, options: DecoderOptions) -> Result<Self> {
        let path = path.as_ref();
        match detect(path)? {
            CheckpointKind::Gguf => Self::from_gguf(path, gpu, options),
            CheckpointKind::HuggingFace => Self::from_hf(path, gpu, options),
            CheckpointKind::Sparq => Self::from_sparq(path, gpu, options),
        }
    }

    fn load_hf(path: &Path, gpu: GpuRef<'g>, options: DecoderOptions) -> Result<Self> {
        let hf = HfCheckpoint::open(path)?;
        let src = SafetensorsSource::new(hf.files, options.format)?;
        let decoder = Self::new(gpu, hf.config, &src, options)?;
        src.check_unused()?;
        Ok(decoder)
    }

    fn load_sparq(path: &Path, gpu: GpuRef<'g>, options: DecoderOptions) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let config = sparq_config(&file)?;
        let src = SafetensorsSource::new(vec![file], options.format)?;
        let decoder = Self::new(gpu, config, &src, options)?;
        src.check_unused()?;
        Ok(decoder)
    }
}

impl LlamaDecoder<'static> {
    /// [`LlamaDecoder::from_hf`] on a device the decoder shares ownership of.
    pub fn from_hf_shared(
        path: impl AsRef<Path>,
        gpu: Arc<Gpu>,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::load_hf(path.as_ref(), GpuRef::Shared(gpu), options)
    }

    /// [`LlamaDecoder::from_sparq`] on a device the decoder shares ownership of.
    pub fn from_sparq_shared(
        path: impl AsRef<Path>,
        gpu: Arc<Gpu>,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::load_sparq(path.as_ref(), GpuRef::Shared(gpu), options)
    }

    /// [`LlamaDecoder::open`] on a device the decoder shares ownership of.
    pub fn open_shared(
        path: impl AsRef<Path>,
        gpu: Arc<Gpu>,
        options: DecoderOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        match detect(path)? {
            CheckpointKind::Gguf => Self::from_gguf_shared(path, gpu, options),
            CheckpointKind::HuggingFace => Self::from_hf_shared(path, gpu, options),
            CheckpointKind::Sparq => Self::from_sparq_shared(path, gpu, options),
        }
    }
}
