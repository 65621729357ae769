//! The safetensors file [`super::save`] writes, streamed into [`crate::files::write_atomic`]
//! (the crate's own `serialize_to_file` leaves a 0600 file, not fsynced, and a full-size
//! temporary file after a kill; `serialize` would hold a second copy of the model in memory).

use crate::error::{Error, Result, file_error};
use safetensors::View;
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Writes `tensors` and `metadata` to `path` atomically, laid out as
/// `safetensors::serialize` lays them out.
pub(super) fn write_safetensors(
    path: &Path,
    mut tensors: Vec<(String, TensorView<'_>)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    // Widest dtype first, then by name: every tensor's data stays aligned to its element size
    // (the header is padded to 8 bytes), as the crate's own writer does.
    tensors.sort_by(|(ln, l), (rn, r)| r.dtype().cmp(&l.dtype()).then(ln.cmp(rn)));
    let mut offset = 0;
    let infos: Vec<(String, TensorInfo)> = tensors
        .iter()
        .map(|(name, t)| {
            let start = offset;
            offset += t.data_len();
            let info = TensorInfo {
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                data_offsets: (start, offset),
            };
            (name.clone(), info)
        })
        .collect();
    let json = |e: serde_json::Error| Error::safetensors(e.to_string());
    // The header lists the metadata sorted, then the tensors in file order: the same model
    // packs to the same bytes (`Metadata`'s own serialisation follows hash-map order).
    let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(sorted).map_err(json)?,
    );
    for (name, info) in &infos {
        header.insert(name.clone(), serde_json::to_value(info).map_err(json)?);
    }
    // The crate's own check of the offsets, shapes and sizes.
    Metadata::new(Some(metadata), infos)?;
    let mut header = serde_json::to_string(&header).map_err(json)?.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    crate::files::write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for (_, t) in &tensors {
            w.write_all(t.data())?;
        }
        Ok(())
    })
    .map_err(|source| file_error(path, source))
}

/// Refuses an `output` that is a file the model at `input` is read from, before any work:
/// writing it would replace the original (after symlinks and hard links, by
/// [`crate::files::same_file`]). For a model directory these are `model.safetensors`, its
/// `model-*.safetensors` shards and its JSON files; for a model file, the file and the JSON
/// files beside it (`config.json`, `tokenizer.json`).
pub fn check_output(input: &Path, output: &Path) -> Result<()> {
    let (dir, mut read) = if input.is_dir() {
        (input, Vec::new())
    } else {
        let parent = match input.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        (parent, vec![input.to_path_buf()])
    };
    let whole_dir = input.is_dir();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let weights = name == "model.safetensors"
                || (name.starts_with("model-") && name.ends_with(".safetensors"));
            if name.ends_with(".json") || (whole_dir && weights) {
                read.push(e.path());
            }
        }
    }
    match read.iter().find(|f| crate::files::same_file(f, output)) {
        Some(f) => Err(crate::error::InputError::OutputIsInput {
            output: output.display().to_string(),
            input: f.display().to_string(),
        }
        .into()),
        None => Ok(()),
    }
}
