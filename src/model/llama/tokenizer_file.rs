//! The tokenizer a packed decoder carries. `sparq pack` of a GGUF file (or of a packed file
//! that already carries one, or with `--tokenizer FILE.gguf`) stores the GGUF's `tokenizer.*`
//! metadata (tokens, types, merges, pre-tokenizer, BOS/EOS ids and flags, chat template) as a
//! metadata-only GGUF file in the byte tensor [`TOKENIZER_GGUF`], so that the packed file alone
//! tokenizes text exactly as its source did, wherever it is moved. [`decoder_codec`] finds a
//! decoder's tokenizer: the one named, else the one its file carries, else a GGUF file's own.

use super::gguf::text_codec;
use super::hf::{CheckpointKind, detect};
use super::{LlamaConfig, pack};
use crate::error::{Error, Result, TokenizerError};
use crate::gguf::Gguf;
use crate::model::compress::{Floats, Linears};
use crate::model::config::Architecture;
use crate::model::loader::{self, WeightFile};
use crate::model::text::TextCodec;
use std::collections::HashMap;
use std::path::Path;

pub use crate::model::loader::TOKENIZER_GGUF;

/// Largest tokenizer a packed file carries: 64 MiB (Llama 3's 128k tokens and 280k merges take
/// about 8 MB). Longer ones are refused when packing and when reading.
pub const MAX_TOKENIZER_BYTES: usize = 64 << 20;

/// The keys a carried tokenizer keeps: every `tokenizer.*` entry of the source.
const PREFIX: &str = "tokenizer.";

/// Where a carried tokenizer is, for messages: `FILE (tensor 'sparq.tokenizer.gguf')`.
fn inside(path: &Path) -> String {
    format!("{} (tensor '{TOKENIZER_GGUF}')", path.display())
}

/// The tokenizer of the GGUF file `gguf` as the bytes a packed file carries (its `tokenizer.*`
/// entries, a metadata-only GGUF file), checked to build a [`TextCodec`]; `None` when it has
/// no `tokenizer.*` entry.
pub fn tokenizer_gguf(gguf: &Gguf) -> Result<Option<Vec<u8>>> {
    let Some(bytes) = gguf.metadata_subset(PREFIX) else {
        return Ok(None);
    };
    if bytes.len() > MAX_TOKENIZER_BYTES {
        return Err(Error::invalid(format!(
            "the tokenizer of {} is {} bytes, over the {MAX_TOKENIZER_BYTES} a packed file \
             carries",
            gguf.source(),
            bytes.len()
        )));
    }
    text_codec(&Gguf::from_bytes(bytes.clone(), gguf.source())?)?;
    Ok(Some(bytes))
}

/// The [`TextCodec`] of a tokenizer GGUF's bytes; any failure (a corrupt file, a missing or
/// mistyped key) is a [`TokenizerError::Unreadable`] naming `file`.
fn codec_of(bytes: Vec<u8>, file: String) -> Result<TextCodec> {
    Gguf::from_bytes(bytes, &file)
        .and_then(|g| text_codec(&g))
        .map_err(|e| {
            TokenizerError::Unreadable {
                file,
                reason: e.to_string(),
            }
            .into()
        })
}

/// The tokenizer bytes the sparq file `file` carries (`None` when it carries none).
pub fn carried(file: &WeightFile) -> Result<Option<Vec<u8>>> {
    Ok(file
        .byte_tensor(TOKENIZER_GGUF, MAX_TOKENIZER_BYTES)?
        .map(<[u8]>::to_vec))
}

/// The [`TextCodec`] the sparq file `file` carries, `None` when it carries none; one that does
/// not read is a [`TokenizerError::Unreadable`] naming the file and the tensor.
pub fn carried_codec(file: &WeightFile) -> Result<Option<TextCodec>> {
    let bytes = carried(file).map_err(|e| TokenizerError::Unreadable {
        file: inside(file.path()),
        reason: e.to_string(),
    })?;
    bytes.map(|b| codec_of(b, inside(file.path()))).transpose()
}

/// The tokenizer of the GGUF file at `path` (`--tokenizer FILE.gguf`) as a packed file
/// carries it; a file with no `tokenizer.*` entry is refused, naming it.
fn named(path: &Path) -> Result<Vec<u8>> {
    tokenizer_gguf(&Gguf::open(path)?)?.ok_or_else(|| {
        TokenizerError::Unreadable {
            file: path.display().to_string(),
            reason: "it has no tokenizer.* metadata".into(),
        }
        .into()
    })
}

/// The text codec of the decoder at `model` (a GGUF, Hugging Face or sparq checkpoint), from
/// the first of: the GGUF file `explicit` names (`--tokenizer`), the tokenizer `model`'s file
/// carries ([`TOKENIZER_GGUF`]), `model` itself when it is a GGUF file. None of them is a
/// [`TokenizerError::NoDecoderTokenizer`] listing the places looked at.
pub fn decoder_codec(model: &Path, explicit: Option<&Path>) -> Result<TextCodec> {
    if let Some(p) = explicit {
        return text_codec(&Gguf::open(p)?);
    }
    let mut looked = vec!["--tokenizer (not given)".to_string()];
    match detect(model)? {
        CheckpointKind::Gguf => return text_codec(&Gguf::open(model)?),
        CheckpointKind::Sparq => {
            if let Some(c) = carried_codec(&WeightFile::open(model)?)? {
                return Ok(c);
            }
            looked.push(format!("{} (none carried)", inside(model)));
        }
        CheckpointKind::HuggingFace => looked.push(format!(
            "{} (a Hugging Face checkpoint: sparq reads tokenizers from GGUF files)",
            model.display()
        )),
    }
    looked.push(format!("{} (not a GGUF file)", model.display()));
    Err(TokenizerError::NoDecoderTokenizer { looked }.into())
}

/// The tokenizer `sparq pack` stores in the packed file of the decoder at `source`: the GGUF
/// file `explicit` names, else `source`'s own (a GGUF file's `tokenizer.*` metadata, or the
/// one a sparq file carries); `None` when there is none (a Hugging Face checkpoint without
/// `explicit`).
pub fn for_pack(source: &Path, explicit: Option<&Path>) -> Result<Option<Vec<u8>>> {
    if let Some(p) = explicit {
        return named(p).map(Some);
    }
    match detect(source)? {
        CheckpointKind::Gguf => tokenizer_gguf(&Gguf::open(source)?),
        CheckpointKind::Sparq => {
            let file = WeightFile::open(source)?;
            // Checked to read, so that a broken tokenizer is not copied on.
            carried_codec(&file)?;
            carried(&file)
        }
        CheckpointKind::HuggingFace => Ok(None),
    }
}

/// [`pack::write`], with `tokenizer` (from [`for_pack`]) carried in [`TOKENIZER_GGUF`].
pub fn write(
    path: &Path,
    config: &LlamaConfig,
    floats: &Floats,
    linears: &Linears,
    tokenizer: Option<Vec<u8>>,
) -> Result<()> {
    let Some(bytes) = tokenizer else {
        return pack::write(path, config, floats, linears);
    };
    let meta = HashMap::from([(
        loader::CONFIG_KEY.to_string(),
        Architecture::Llama(config.clone()).to_json(),
    )]);
    loader::save_with_bytes(
        path,
        floats,
        linears,
        &[(TOKENIZER_GGUF.to_string(), bytes)],
        meta,
    )
}
