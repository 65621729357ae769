//! Requested, stored and used weight formats of `run`, `embed` and `model-bench`, reported
//! the same way everywhere. `--format` sets the format float weights are quantized to when a
//! model loads; packed and sparse weights run as stored. A `--format` that a file's weights
//! cannot take (a packed file asked for another format) is refused rather than noted: the
//! results and timings would otherwise be read as those of the format asked for, and the fix
//! (drop `--format`, or pack again) is one flag away.
//!
//! Beside them, the precision the linear layers' kernels read activations in, as the layers
//! report it after a pass ([`sparq::model::Model::activation_precisions`]): int4/int8 weights
//! run int8-quantized activations in one device's GEMVs (`SPARQ_Q8=0` turns that off) but f32
//! in the batch-invariant tiled GEMM of `--adapters`, which is why the two differ slightly.

use sparq::formats::WeightFormat;
use sparq::matmul::ActivationPrecision;
use sparq::model::loader::WeightFile;
use sparq::{Error, Result};
use std::path::Path;

/// The formats of one run: what was asked for, what the file stores, what the layers use.
#[derive(Clone, Debug)]
pub struct Formats {
    /// `--format` as given (`None`: the default, f32 for float weights).
    pub requested: Option<WeightFormat>,
    /// The packed formats of the file; empty for float weights.
    pub stored: Vec<String>,
    /// The formats the linear layers run, sorted, each once.
    pub used: Vec<String>,
    /// The precisions the layers' kernels read activations in (empty until a pass ran).
    pub activations: Vec<ActivationPrecision>,
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
        let stored = WeightFile::open(&sparq::model::locate(model)?.0)?.packed_formats();
        let used = match stored.is_empty() {
            true => vec![format.name()],
            false => stored.clone(),
        };
        Self::checked(model, requested, stored, used)
    }

    /// These formats with `used` as the loaded model's layers report them
    /// ([`sparq::model::Model::layer_formats`]).
    pub fn with_used(mut self, used: Vec<String>) -> Self {
        self.used = used;
        self
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
            activations: Vec::new(),
        })
    }

    /// These formats with the activation precisions a pass used (from the model's layers).
    pub fn with_activations(mut self, activations: Vec<ActivationPrecision>) -> Self {
        self.activations = activations;
        self
    }

    /// The activation precisions, comma-separated (`int8`, `f32`, `f32,int8`); `None` before a
    /// pass.
    pub fn activations_name(&self) -> Option<String> {
        let names: Vec<&str> = self.activations.iter().map(|p| p.name()).collect();
        (!names.is_empty()).then(|| names.join(","))
    }

    /// The used formats, comma-separated (`run`'s JSON field `format`).
    pub fn used_name(&self) -> String {
        self.used.join(",")
    }

    /// The JSON fields of `run`'s output: `format` (used), `format_requested` (`null` for the
    /// default), `format_stored` (`float` for float weights) and `activations` (the precision
    /// the linear kernels read activations in, `null` before a pass).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.used_name(),
            "format_requested": self.requested.map(|f| f.name()),
            "format_stored": self.stored_name(),
            "activations": self.activations_name(),
        })
    }

    fn stored_name(&self) -> String {
        match self.stored.is_empty() {
            true => "float".into(),
            false => self.stored.join(","),
        }
    }

    /// The [`Formats::note`] on standard error, for a packed file (whose formats are not the
    /// requested one) or activations that were not all read as f32; a float file run in f32
    /// runs as requested, and its output stays quiet.
    pub fn note_if_packed(&self) {
        let exact = self
            .activations
            .iter()
            .all(|&p| p == ActivationPrecision::F32);
        if !self.stored.is_empty() || !exact {
            eprintln!("{}", self.note());
        }
    }

    /// One line for standard error.
    pub fn note(&self) -> String {
        let requested = self.requested.map_or("default f32".into(), |f| f.name());
        let activations = match self.activations_name() {
            Some(a) if a.contains("int8") => format!(
                "; activations {a} (int8-quantized in the integer GEMVs; SPARQ_Q8=0 keeps f32)"
            ),
            Some(a) => format!("; activations {a}"),
            None => String::new(),
        };
        format!(
            "weights: {} (stored {}, requested {requested}){activations}",
            self.used_name(),
            self.stored_name()
        )
    }
}

/// The activation precisions every replica of `cluster` read activations in, each once.
pub fn cluster_activations(
    cluster: &mut sparq::schedule::Cluster<sparq::schedule::ModelReplica>,
) -> Vec<ActivationPrecision> {
    let set: std::collections::BTreeSet<ActivationPrecision> = (0..cluster.len())
        .flat_map(|i| cluster.replica_mut(i).model().activation_precisions())
        .collect();
    set.into_iter().collect()
}
