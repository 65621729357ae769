//! Students and their files: which student a teacher gets (`StudentSpec`), the labelled
//! feature rows a classifier is distilled on (`Dataset::from_json`), and the trained student
//! written as a self-describing model file that `sparq run` loads and `sparq pack` packs.

use super::mlp::{Dataset, Layer, Student};
use crate::error::{Error, Result};
use crate::model::config::{Architecture, MlpConfig};
use crate::model::loader::{self, WeightFile};
use crate::model::shrink::drop_neurons;
use crate::prune::{PruneMethod, prune};
use std::collections::HashMap;
use std::path::Path;

/// The shape of a student relative to its teacher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StudentSpec {
    /// This many of an encoder teacher's layers, evenly spaced from the first (every other
    /// layer of six for three, as DistilBERT), then trained.
    Layers(usize),
    /// The teacher with this fraction of every hidden layer's neurons cut (by the L2 norm of
    /// their input weights, as `sparq pack --prune neurons:S`), then trained.
    Neurons(f64),
    /// The teacher's shape with every weight matrix pruned by `method` (2:4 or magnitude),
    /// the pruned weights kept at zero while the others train.
    Prune(PruneMethod),
}

/// The student specs `sparq distill --student` takes, for messages.
pub const STUDENT_SPECS: &str = "layers:N (encoders: N of the teacher's layers), neurons:S (S, the fraction of hidden neurons cut, in (0, 1)), \
     prune:2:4 or prune:magnitude:S (S, the fraction of weights pruned, in (0, 1))";

impl StudentSpec {
    /// Parses `neurons:0.5`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::config(format!("student '{s}': expected {STUDENT_SPECS}"));
        match s.split_once(':') {
            Some(("layers", n)) => match n.parse() {
                Ok(n) if n > 0 => Ok(StudentSpec::Layers(n)),
                _ => Err(bad()),
            },
            Some(("neurons", f)) => {
                let f: f64 = f.parse().map_err(|_| bad())?;
                if !(f > 0.0 && f < 1.0) {
                    return Err(bad());
                }
                Ok(StudentSpec::Neurons(f))
            }
            Some(("prune", "2:4")) => Ok(StudentSpec::Prune(PruneMethod::NOfM { n: 2, m: 4 })),
            Some(("prune", rest)) => match rest.split_once(':') {
                Some(("magnitude", f)) => {
                    let sparsity: f64 = f.parse().map_err(|_| bad())?;
                    if !(sparsity > 0.0 && sparsity < 1.0) {
                        return Err(bad());
                    }
                    Ok(StudentSpec::Prune(PruneMethod::Magnitude { sparsity }))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// A classifier teacher of an MLP file, and its layers.
pub fn mlp_teacher(file: &WeightFile) -> Result<(Architecture, MlpConfig, Vec<Layer>)> {
    let arch = match file.metadata(loader::CONFIG_KEY) {
        Some(json) => Architecture::from_sparq_json(json)?,
        None => {
            return Err(Error::config(format!(
                "{}: no '{}' metadata; distillation takes MLP classifier files for now",
                file.path().display(),
                loader::CONFIG_KEY
            )));
        }
    };
    let Architecture::Mlp(config) = &arch else {
        return Err(Error::config(format!(
            "{}: distillation of this architecture is not built yet (MLP classifiers only)",
            file.path().display()
        )));
    };
    let config = config.clone();
    let layers = layers_of(&config, |name, shape| file.floats(name, shape))?;
    Ok((arch, config, layers))
}

/// The `(weight, bias)` layers of `config`, each read by `tensor(name, shape)`.
fn layers_of(
    config: &MlpConfig,
    mut tensor: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
) -> Result<Vec<Layer>> {
    config
        .sizes
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            Ok((
                tensor(&format!("layers.{i}.weight"), &[w[1], w[0]])?,
                tensor(&format!("layers.{i}.bias"), &[w[1]])?,
            ))
        })
        .collect()
}

/// The untrained student of `spec` for the teacher in `file` (architecture `arch`).
pub fn mlp_student(file: &WeightFile, arch: &Architecture, spec: StudentSpec) -> Result<Student> {
    match spec {
        StudentSpec::Layers(_) => Err(Error::config(
            "a student of fewer layers is for encoders; an MLP student takes neurons:S or prune:…",
        )),
        StudentSpec::Neurons(fraction) => {
            let (student, floats, _) = drop_neurons(file, arch, fraction)?;
            let Architecture::Mlp(config) = student else {
                return Err(Error::invalid(
                    "cutting an MLP's neurons gave another architecture",
                ));
            };
            let layers = layers_of(&config, |name, shape| {
                floats
                    .iter()
                    .find(|f| f.0 == name && f.1 == shape)
                    .map(|f| f.2.clone())
                    .ok_or_else(|| {
                        Error::invalid(format!("the cut student has no {name} {shape:?}"))
                    })
            })?;
            Ok(Student {
                config,
                layers,
                masks: None,
            })
        }
        StudentSpec::Prune(method) => {
            let (_, config, layers) = mlp_teacher(file)?;
            let mut masks = Vec::new();
            for (i, (w, _)) in layers.iter().enumerate() {
                let (k, n) = (config.sizes[i], config.sizes[i + 1]);
                let pruned = prune(w, n, k, method)?;
                // A weight the pruning kept; one that was zero already stays pruned.
                masks.push(pruned.w.iter().map(|&v| (v != 0.0) as u8 as f32).collect());
            }
            Ok(Student {
                config,
                layers,
                masks: Some(masks),
            })
        }
    }
}

/// Writes a trained MLP (`config`, `layers`) as a model file, atomically.
pub fn save_mlp(path: &Path, config: &MlpConfig, layers: &[Layer]) -> Result<()> {
    let mut floats = Vec::new();
    for (i, (w, b)) in layers.iter().enumerate() {
        let (k, n) = (config.sizes[i], config.sizes[i + 1]);
        floats.push((format!("layers.{i}.weight"), vec![n, k], w.clone()));
        floats.push((format!("layers.{i}.bias"), vec![n], b.clone()));
    }
    let arch = Architecture::Mlp(config.clone());
    let meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    loader::save(path, &floats, &[], meta)
}

impl Dataset {
    /// Parses `{"features": [[...], ...], "labels": [...]}` (`sparq run`'s feature input
    /// with a class a row) for a classifier of `inputs` features and `classes` classes;
    /// `what` names the source in messages.
    pub fn from_json(text: &str, inputs: usize, classes: usize, what: &str) -> Result<Self> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            features: Vec<Vec<f32>>,
            labels: Vec<u32>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            Error::config(format!(
                "{what}: expected {{\"features\": [[...]], \"labels\": [...]}}: {e}"
            ))
        })?;
        if raw.features.len() != raw.labels.len() || raw.features.is_empty() {
            return Err(Error::config(format!(
                "{what}: {} feature rows and {} labels",
                raw.features.len(),
                raw.labels.len()
            )));
        }
        let mut x = Vec::with_capacity(raw.features.len() * inputs);
        for (i, row) in raw.features.iter().enumerate() {
            if row.len() != inputs {
                return Err(Error::config(format!(
                    "{what}: row {i} has {} features, the model takes {inputs}",
                    row.len()
                )));
            }
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                return Err(Error::config(format!("{what}: row {i} holds {v}")));
            }
            x.extend_from_slice(row);
        }
        if let Some((i, l)) = raw
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(Error::config(format!(
                "{what}: label {l} of row {i} is not one of the model's {classes} classes"
            )));
        }
        Ok(Dataset {
            x,
            labels: raw.labels,
        })
    }

    /// The rows split into training and held-out sets: `held_out` (a fraction in (0, 1)) of
    /// them, chosen by a shuffle seeded with `seed`, held out.
    pub fn split(&self, held_out: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let rows = self.rows();
        let held = (rows as f64 * held_out).round() as usize;
        if !(held_out > 0.0 && held_out < 1.0) || held == 0 || held == rows {
            return Err(Error::config(format!(
                "holding out {held_out} of {rows} rows leaves no training or no held-out rows"
            )));
        }
        let inputs = self.x.len() / rows;
        let mut order: Vec<usize> = (0..rows).collect();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
        let take = |ids: &[usize]| Dataset {
            x: ids
                .iter()
                .flat_map(|&r| self.x[r * inputs..(r + 1) * inputs].iter().copied())
                .collect(),
            labels: ids.iter().map(|&r| self.labels[r]).collect(),
        };
        Ok((take(&order[held..]), take(&order[..held])))
    }
}
