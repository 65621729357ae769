//! Where an encoder's tokenizer comes from, in order of preference: a path the caller names
//! ([`super::LoadOptions::tokenizer`], `--tokenizer`), the tokenizer a packed file carries in
//! its metadata ([`TOKENIZER_KEY`], written by `sparq pack`), and `tokenizer.json` beside the
//! weights. A packed file then runs text alone, wherever it is moved.
//!
//! The tokenizer travels as a metadata string rather than a u8 tensor: `tokenizer.json` is
//! text, metadata needs no dtype or shape, and [`super::loader::check_unused`] (which looks at
//! every tensor a model leaves unread) has nothing new to learn. Its size is bounded by
//! [`MAX_EMBEDDED_BYTES`], far below the safetensors header bound (100 MB) that readers check.

use super::loader::WeightFile;
use crate::error::{Error, InputError, Result, TokenizerError};
use std::path::Path;
use std::str::FromStr;
use tokenizers::Tokenizer;

/// Metadata key of the tokenizer (the text of a `tokenizer.json`) a packed file carries.
pub const TOKENIZER_KEY: &str = "sparq.tokenizer";

/// Largest tokenizer `sparq pack` puts in a file's metadata: 32 MiB (large vocabularies are
/// about 10 MB), which keeps the whole header well under the 100 MB safetensors readers allow.
pub const MAX_EMBEDDED_BYTES: usize = 32 << 20;

/// A tokenizer parsed from `text`, or [`TokenizerError::Unreadable`] naming `file`.
fn parse(text: &str, file: String) -> Result<Tokenizer> {
    Tokenizer::from_str(text).map_err(|e| {
        TokenizerError::Unreadable {
            file,
            reason: e.to_string(),
        }
        .into()
    })
}

/// The text of the tokenizer file at `path` (a missing file is named), checked to parse.
fn read(path: &Path) -> Result<(String, Tokenizer)> {
    let text = std::fs::read_to_string(path).map_err(|e| InputError::File {
        path: path.display().to_string(),
        source: std::sync::Arc::new(e),
    })?;
    let tok = parse(&text, path.display().to_string())?;
    Ok((text, tok))
}

/// Where in `file` its tokenizer is, for messages.
fn inside(file: &WeightFile) -> String {
    format!("{} (metadata '{TOKENIZER_KEY}')", file.path().display())
}

/// The tokenizer text of `file` (weights) with its companions in `dir`: the one `explicit`
/// names, else the one inside the file, else `dir/tokenizer.json`; each checked to parse.
/// `Err(looked)` when there is none: the places tried, for [`TokenizerError::NotFound`].
fn locate(
    file: &WeightFile,
    dir: &Path,
    explicit: Option<&Path>,
) -> Result<std::result::Result<(String, Tokenizer), Vec<String>>> {
    if let Some(p) = explicit {
        return read(p).map(Ok);
    }
    if let Some(text) = file.metadata(TOKENIZER_KEY) {
        let tok = parse(text, inside(file))?;
        return Ok(Ok((text.to_string(), tok)));
    }
    let beside = dir.join("tokenizer.json");
    if beside.is_file() {
        return read(&beside).map(Ok);
    }
    Ok(Err(vec![
        "--tokenizer (not given)".into(),
        format!("{} (none inside)", inside(file)),
        format!("{} (no such file)", beside.display()),
    ]))
}

/// The tokenizer a model loads, or the [`TokenizerError::NotFound`] its text input would
/// meet (the model still loads: token ids need no tokenizer).
pub(crate) fn find(
    file: &WeightFile,
    dir: &Path,
    explicit: Option<&Path>,
) -> Result<std::result::Result<Tokenizer, Error>> {
    Ok(match locate(file, dir, explicit)? {
        Ok((_, tok)) => Ok(tok),
        Err(looked) => Err(TokenizerError::NotFound { looked }.into()),
    })
}

/// The tokenizer text `sparq pack` writes into the packed file of `file`: as [`find`] picks
/// it, refused over [`MAX_EMBEDDED_BYTES`]; `None` when there is none.
pub fn for_pack(file: &WeightFile, dir: &Path, explicit: Option<&Path>) -> Result<Option<String>> {
    let Ok((text, _)) = locate(file, dir, explicit)? else {
        return Ok(None);
    };
    if text.len() > MAX_EMBEDDED_BYTES {
        return Err(Error::invalid(format!(
            "the tokenizer is {} bytes, over the {MAX_EMBEDDED_BYTES} bytes a packed file \
             carries: pack without it (omit --tokenizer, or move tokenizer.json away) and pass \
             --tokenizer when running",
            text.len()
        )));
    }
    Ok(Some(text))
}
