//! `sparq pack` for decoders: every tensor of a Llama-family checkpoint (GGUF, Hugging Face,
//! or a sparq file again) written to one self-describing sparq safetensors file, with the
//! configuration as `{"architecture": "llama", ...}` in `sparq.config` and the Hugging Face
//! tensor names. Linear weights are stored as [`Compression`] says, Q/K/V and gate/up one
//! tensor each (the decoder fuses them on load); the token embedding (and `lm_head`) stay
//! dense, as the row gather reads them; norms and biases are f32.
//!
//! A GGUF input is dequantized and stored in the asked format (its Q/K rows keep llama.cpp's
//! order, which the written configuration's `rope_layout` records); weights a sparq input
//! already holds packed or sparse are kept as they are.
//!
//! [`LlamaConfig`] is also the [`Family`] of [`Architecture::Llama`], so the encoder tools'
//! [`crate::model::compress::pack_model`] packs a sparq decoder file too; its `load` (an
//! encoder [`Network`]) refuses with an error naming [`LlamaDecoder`](super::LlamaDecoder).

use super::gguf::tensor_names;
use super::hf::{self, CheckpointKind, HfCheckpoint, SafetensorsSource};
use super::{LlamaConfig, LlamaNames, LlamaWeights, Reference};
use crate::error::{Error, InputError, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gguf::Gguf;
use crate::gpu::Gpu;
use crate::model::LoadOptions;
use crate::model::compress::{self, Compression, Floats, Linears, PackReport};
use crate::model::config::Architecture;
use crate::model::loader::{self, Store, WeightFile};
use crate::model::network::{Family, Network, NeuronCuts};
use crate::weights::LayerWeights;
use std::collections::HashMap;
use std::path::Path;

/// What packing reads a checkpoint through.
pub trait PackInput {
    /// The f32 values of the vector tensor `name` (`len` values).
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>>;
    /// The weight matrix `name` (`n × k`): as stored when packed, else its floats through
    /// `store`.
    fn matrix(&self, name: &str, n: usize, k: usize, store: &mut Store<'_>)
    -> Result<LayerWeights>;
}

impl PackInput for WeightFile {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        WeightFile::floats(self, name, &[len])
    }

    fn matrix(
        &self,
        name: &str,
        n: usize,
        k: usize,
        store: &mut Store<'_>,
    ) -> Result<LayerWeights> {
        self.matrix_with(name, n, k, store)
    }
}

impl PackInput for SafetensorsSource {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.file(name, &format!("{len} float values"))?
            .floats(name, &[len])
    }

    fn matrix(
        &self,
        name: &str,
        n: usize,
        k: usize,
        store: &mut Store<'_>,
    ) -> Result<LayerWeights> {
        self.file(name, &format!("a {n} × {k} weight"))?
            .matrix_with(name, n, k, store)
    }
}

/// A GGUF file's tensors by Hugging Face name, dequantized to f32 (the target format is
/// the user's, so the file's own quantization is undone first).
struct GgufInput<'a> {
    file: &'a Gguf,
    by_hf: HashMap<String, String>,
}

impl GgufInput<'_> {
    fn values(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let g = self
            .by_hf
            .get(name)
            .ok_or_else(|| InputError::MissingTensor {
                tensor: name.to_string(),
                expected: format!("{len} values"),
            })?;
        let v = self.file.dequantize(g)?;
        if v.len() != len {
            return Err(InputError::BadTensor {
                tensor: g.clone(),
                expected: format!("{len} values"),
                found: format!("{} values", v.len()),
            }
            .into());
        }
        Ok(v)
    }
}

impl PackInput for GgufInput<'_> {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.values(name, len)
    }

    fn matrix(
        &self,
        name: &str,
        n: usize,
        k: usize,
        store: &mut Store<'_>,
    ) -> Result<LayerWeights> {
        store(name, &self.values(name, n * k)?, n, k)
    }
}

/// Every tensor `c` needs from `input`: vectors as f32, matrices through `store`.
pub fn pack_tensors(
    input: &dyn PackInput,
    c: &LlamaConfig,
    store: &mut Store<'_>,
) -> Result<(Floats, Linears)> {
    let (mut floats, mut linears) = (Vec::new(), Vec::new());
    for (name, shape) in LlamaNames::default().tensors(c) {
        match shape[..] {
            [n, k] => {
                let w = input.matrix(&name, n, k, store)?;
                linears.push((name, w));
            }
            [len] => {
                let v = input.floats(&name, len)?;
                floats.push((name, shape, v));
            }
            _ => return Err(Error::invariant(format!("{name}: shape {shape:?}"))),
        }
    }
    Ok((floats, linears))
}

/// Packs the decoder checkpoint at `path` (GGUF, Hugging Face, or sparq: [`hf::detect`])
/// as `c` says: its configuration, the tensors to write, and what packing did. With
/// `calibration` (token sequences, [`super::calibrate::tokenize`]), the linear weights are
/// stored by [`Compression::store_calibrated`] on the inputs the reference decoder gives
/// them over those tokens (GPTQ for dense int4, SparseGPT for 2:4 and `magnitude:S`), and
/// `progress` hears the calibration's steps as [`super::calibrate::hessians`] reports them
/// (it is not called without `calibration`).
pub fn pack(
    path: &Path,
    c: &Compression,
    calibration: Option<&[Vec<u32>]>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<(LlamaConfig, Floats, Linears, PackReport)> {
    if calibration.is_some() {
        c.check_calibrated()?;
    }
    let mut run = |config: LlamaConfig, input: &dyn PackInput| {
        let hessians = match calibration {
            Some(seqs) => {
                let reference = reference(input, &config)?;
                Some(super::calibrate::hessians(&reference, seqs, &mut progress)?.0)
            }
            None => None,
        };
        let arch = Architecture::Llama(config.clone());
        let (floats, linears, report) =
            compress::pack_with(&arch, c, hessians.as_ref(), |store| {
                pack_tensors(input, &config, store)
            })?;
        Ok((config, floats, linears, report))
    };
    match hf::detect(path)? {
        CheckpointKind::Gguf => {
            let file = Gguf::open(path)?;
            let config = LlamaConfig::from_gguf(&file)?;
            let by_hf = tensor_names(&config)
                .into_iter()
                .map(|(g, h)| (h, g))
                .collect();
            run(config, &GgufInput { file: &file, by_hf })
        }
        CheckpointKind::HuggingFace => {
            let ck = HfCheckpoint::open(path)?;
            let src = SafetensorsSource::new(ck.files, None)?;
            let packed = run(ck.config, &src)?;
            src.check_unused()?;
            Ok(packed)
        }
        CheckpointKind::Sparq => {
            let file = WeightFile::open(path)?;
            let config = hf::sparq_config(&file)?;
            let packed = run(config, &file)?;
            file.check_unused()?;
            Ok(packed)
        }
    }
}

/// The reference decoder on the f32 values of every tensor of `input` (packed weights
/// decoded): what calibration runs.
pub fn reference(input: &dyn PackInput, c: &LlamaConfig) -> Result<Reference> {
    let mut weights = LlamaWeights::new();
    for (name, shape) in LlamaNames::default().tensors(c) {
        let v = match shape[..] {
            [n, k] => input
                .matrix(&name, n, k, &mut |_, w, n, k| {
                    Ok(PackedWeights::quantize(w, n, k, WeightFormat::F32)?.into())
                })?
                .dequantize(),
            _ => input.floats(&name, shape.iter().product())?,
        };
        weights.insert(name, (shape, v));
    }
    Reference::new(c.clone(), weights)
}

/// Whether `path` holds a decoder `sparq pack` should take through [`pack`]: a GGUF file, a
/// Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` checkpoint, or a sparq decoder file.
pub fn is_decoder(path: &Path) -> bool {
    match hf::detect(path) {
        Ok(CheckpointKind::Gguf) => true,
        Ok(CheckpointKind::HuggingFace) => {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            std::fs::read_to_string(dir.join("config.json"))
                .is_ok_and(|t| LlamaConfig::from_hf_config(&t).is_ok())
        }
        Ok(CheckpointKind::Sparq) => WeightFile::open(path)
            .and_then(|f| hf::sparq_config(&f))
            .is_ok(),
        Err(_) => false,
    }
}

/// Writes a packed decoder to `path` atomically ([`loader::save`]): a failed or interrupted
/// pack leaves the old file or none, never a partial one.
pub fn write(path: &Path, config: &LlamaConfig, floats: &Floats, linears: &Linears) -> Result<()> {
    let meta = HashMap::from([(
        loader::CONFIG_KEY.to_string(),
        Architecture::Llama(config.clone()).to_json(),
    )]);
    loader::save(path, floats, linears, meta)
}

impl Family for LlamaConfig {
    fn validate(&self) -> Result<()> {
        LlamaConfig::validate(self)
    }

    fn load(
        &self,
        _gpu: &Gpu,
        file: &WeightFile,
        _dir: &Path,
        _options: LoadOptions,
    ) -> Result<Box<dyn Network>> {
        Err(Error::config(format!(
            "{} is a Llama-family decoder, not an encoder: load it with \
             model::llama::LlamaDecoder::open (or from_sparq)",
            file.path().display()
        )))
    }

    fn pack(&self, file: &WeightFile, store: &mut Store<'_>) -> Result<(Floats, Linears)> {
        pack_tensors(file, self, store)
    }

    fn dense_only(&self, name: &str) -> bool {
        let names = LlamaNames::default();
        name == names.embedding() || name == names.lm_head()
    }

    fn neuron_cuts(&self, _file: &WeightFile, _sparsity: f64) -> Result<NeuronCuts> {
        Err(Error::invalid(
            "neurons:S pruning is for encoders and MLPs, not Llama-family decoders",
        ))
    }
}
