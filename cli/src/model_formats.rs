//! Requested, stored and used weight formats of `run`, `embed` and `model-bench`, reported
//! the same way everywhere. `--format` sets the format float weights are quantized to when a
//! model loads; packed and sparse weights run as stored. A `--format` that a file's weights
//! cannot take (a packed file asked for another format) is refused rather than noted: the
//! results and timings would otherwise be read as those of the format asked for, and the fix
//! (drop `--format`, or pack again) is one flag away.

use sparq::formats::WeightFormat;
use sparq::model::loader::WeightFile;
use sparq::{Error, Result};
use std::path::{Path, PathBuf};

/// The formats of one run: what was asked for, what the file stores, what the layers use.
#[derive(Clone, Debug)]
pub struct Formats {
    /// `--format` as given (`None`: the default, f32 for float weights).
    pub requested: Option<WeightFormat>,
    /// The packed formats of the file; empty for float weights.
    pub stored: Vec<String>,
    /// The formats the linear layers run, sorted, each once.
    pub used: Vec<String>,
}

impl Formats {
    /// The format float weights load as.
    pub fn load_format(requested: Option<&str>) -> Result<WeightFormat> {
        requested.map_or(Ok(WeightFormat::F32), WeightFormat::parse)
    }

    /// The formats of `model` loaded with `requested`, from its file alone (no device): the
    /// stored packed formats where it has any, else the requested one. A `--format` that does
    /// not apply is an error.
    pub fn of_file(model: &Path, requested: Option<&str>) -> Result<Self> {
        let format = Self::load_format(requested)?;
        let stored = WeightFile::open(&weights_path(model))?.packed_formats();
        let used = match stored.is_empty() {
            true => vec![format.name()],
            false => stored.clone(),
        };
        Self::checked(model, requested, stored, used)
    }

    /// The formats of a loaded model: `used` as [`sparq::model::Model::layer_formats`]
    /// reports them.
    pub fn of_model(model: &Path, requested: Option<&str>, used: Vec<String>) -> Result<Self> {
        let stored = WeightFile::open(&weights_path(model))?.packed_formats();
        Self::checked(model, requested, stored, used)
    }

    fn checked(
        model: &Path,
        requested: Option<&str>,
        stored: Vec<String>,
        used: Vec<String>,
    ) -> Result<Self> {
        let requested = requested.map(WeightFormat::parse).transpose()?;
        if let Some(r) = requested
            && !used.contains(&r.name())
        {
            return Err(Error::invalid(format!(
                "--format {}: {} stores its linear weights packed as {}, which run as stored; \
                 drop --format, or pack the float model again with --format {}",
                r.name(),
                model.display(),
                stored.join(", "),
                r.name()
            )));
        }
        Ok(Formats {
            requested,
            stored,
            used,
        })
    }

    /// The used formats, comma-separated (`run`'s JSON field `format`).
    pub fn used_name(&self) -> String {
        self.used.join(",")
    }

    /// The JSON fields of `run`'s output: `format` (used), `format_requested` (`null` for the
    /// default) and `format_stored` (`float` for float weights).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.used_name(),
            "format_requested": self.requested.map(|f| f.name()),
            "format_stored": self.stored_name(),
        })
    }

    fn stored_name(&self) -> String {
        match self.stored.is_empty() {
            true => "float".into(),
            false => self.stored.join(","),
        }
    }

    /// The [`Formats::note`] on standard error, for a packed file (whose formats are not the
    /// requested one); a float file runs as requested, and its output stays quiet.
    pub fn note_if_packed(&self) {
        if !self.stored.is_empty() {
            eprintln!("{}", self.note());
        }
    }

    /// One line for standard error.
    pub fn note(&self) -> String {
        let requested = self.requested.map_or("default f32".into(), |f| f.name());
        format!(
            "weights: {} (stored {}, requested {requested})",
            self.used_name(),
            self.stored_name()
        )
    }
}

/// The weights file of a model path (a directory's `model.safetensors`).
fn weights_path(model: &Path) -> PathBuf {
    match model.is_dir() {
        true => model.join("model.safetensors"),
        false => model.to_path_buf(),
    }
}
