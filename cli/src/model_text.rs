//! How `run` and `embed` turn text into tokens: the tokenizer (`--tokenizer`, else the one a
//! packed file carries, else tokenizer.json beside it) and what happens to inputs longer than
//! the model reads (truncated with a note on standard error, or refused with `--no-truncate`).

use sparq::Result;
use sparq::formats::WeightFormat;
use sparq::model::config::Architecture;
use sparq::model::loader::WeightFile;
use sparq::model::{Batch, LoadOptions, Model};
use std::path::{Path, PathBuf};

/// The text options of `run` and `embed`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TextArgs {
    /// A tokenizer.json for text input, preferred to the one a packed file carries and to
    /// tokenizer.json beside the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Refuse a text longer than the model reads (an error naming it) instead of truncating
    /// it with a note on standard error.
    #[arg(long)]
    pub no_truncate: bool,
}

impl TextArgs {
    /// Load options with float weights in `format` and this tokenizer.
    pub fn options(&self, format: WeightFormat) -> LoadOptions {
        let options = LoadOptions::default().format(format);
        match &self.tokenizer {
            Some(path) => options.tokenizer(path),
            None => options,
        }
    }

    /// `batch` with its texts tokenised by `m` (once: the ids are what the pass runs), the
    /// truncated ones noted on standard error or, with `--no-truncate`, refused.
    pub fn encode(&self, m: &Model<'_>, batch: Batch) -> Result<Batch> {
        let Batch::Text(texts) = batch else {
            return Ok(batch);
        };
        let enc = m.encode_text(&texts, !self.no_truncate)?;
        if !enc.truncated.is_empty() {
            let rows: Vec<String> = enc.truncated.iter().take(8).map(usize::to_string).collect();
            let more = if enc.truncated.len() > 8 { ", ..." } else { "" };
            eprintln!(
                "note: {} of {} inputs truncated to {} tokens, the model's length (inputs {}{more}); \
                 --no-truncate refuses them instead",
                enc.truncated.len(),
                texts.len(),
                enc.max_tokens,
                rows.join(", "),
            );
        }
        Ok(enc.into_batch())
    }
}

/// The tokenizer text `sparq pack` puts in the packed file of an encoder (none for other
/// architectures, which read no text); a note when an encoder's file will carry none.
pub fn packed_tokenizer(
    file: &WeightFile,
    dir: &Path,
    arch: &Architecture,
    explicit: Option<&Path>,
) -> Result<Option<String>> {
    if !matches!(arch, Architecture::Bert(_)) {
        if explicit.is_some() {
            return Err(sparq::Error::invalid(
                "pack --tokenizer is for text encoders; this model reads no text",
            ));
        }
        return Ok(None);
    }
    let text = sparq::model::tokenizer_source::for_pack(file, dir, explicit)?;
    if text.is_none() {
        eprintln!(
            "note: no tokenizer found (--tokenizer, inside {}, {}): the packed file takes \
             token ids, or text with --tokenizer",
            file.path().display(),
            dir.join("tokenizer.json").display()
        );
    }
    Ok(text)
}
