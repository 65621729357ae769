//! Tensors of a weights file that the model did not read. A file whose configuration or
//! packed table disagrees with its tensors loads "successfully" but answers wrongly (a 2:4
//! layer relabelled as a dense format ignores its positions; a config with fewer layers than
//! the file skips the last ones), so after a load every tensor left unread is looked at: one
//! that looks like the model's own is an error naming it, any other a warning.

use super::{PACKED_KEY, PackedInfo, WeightFile, sparse};
use crate::error::{Error, InputError, Result};
use crate::formats::WeightFormat;
use safetensors::tensor::Dtype;
use std::collections::HashSet;

/// Suffixes of the tensors that hold the parts of a packed or sparse layout beside its
/// values (`NAME.scales`, ...).
const PARTS: [&str; 6] = [
    ".scales",
    ".zeros",
    ".row_ptr",
    ".col_idx",
    ".block_col",
    ".meta",
];

/// Most names a warning about unused tensors lists.
const LISTED: usize = 8;

/// `name` with every numeric segment (a layer or head index) replaced by `*`.
fn pattern(name: &str) -> String {
    name.split('.')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Checks the tensors of `files` (one model's files, shards included) that nothing read since
/// they were opened: an error ([`InputError::UnusedTensor`]) for the first that looks like the
/// model's own (a part of a tensor that was read, an entry of the packed table, or a tensor
/// whose name with numeric segments wildcarded is that of one that was read, as a layer the
/// configuration does not count); a warning naming the others (a pooler the encoder does not
/// run, say).
pub fn check_unused(files: &[&WeightFile]) -> Result<()> {
    check_unused_except(files, &|_| false)
}

/// [`check_unused`], where the tensors `expected` names (what a checkpoint is known to carry
/// besides the model, such as the pooler of a Hugging Face BERT) are only logged at debug
/// level instead of warned about; the errors are the same.
pub fn check_unused_except(files: &[&WeightFile], expected: &dyn Fn(&str) -> bool) -> Result<()> {
    let used: HashSet<String> = files.iter().flat_map(|f| f.used()).collect();
    let patterns: HashSet<String> = used.iter().map(|u| pattern(u)).collect();
    let mut others = Vec::new();
    for f in files {
        for name in f.names() {
            if used.contains(&name) || super::raw::CARRIED.contains(&name.as_str()) {
                continue;
            }
            let unused = |reason: String| {
                Err(Error::Input(InputError::UnusedTensor {
                    tensor: name.clone(),
                    reason,
                }))
            };
            if let Some((base, suffix)) = PARTS
                .iter()
                .find_map(|s| Some((name.strip_suffix(s)?, *s)))
                .filter(|(base, _)| used.contains(*base))
            {
                return unused(format!(
                    "'{base}' was read without its part '{suffix}': the layout the file's \
                     table gives '{base}' is not the one it was stored in"
                ));
            }
            if f.is_packed(&name) {
                return unused(format!("it is an entry of the '{PACKED_KEY}' table"));
            }
            let p = pattern(&name);
            if p != name && patterns.contains(&p) {
                let like = used.iter().find(|u| pattern(u) == p).cloned();
                return unused(format!(
                    "it is one more of '{}' (the configuration counts fewer layers or parts \
                     than the file holds)",
                    like.unwrap_or(p)
                ));
            }
            if expected(&name) {
                log::debug!("{}: tensor {name} is not used", f.path().display());
            } else {
                others.push(name);
            }
        }
    }
    if !others.is_empty() {
        let more = others.len().saturating_sub(LISTED);
        others.truncate(LISTED);
        log::warn!(
            "{}: {} tensor(s) the model does not use: {}{}",
            files
                .first()
                .map_or_else(String::new, |f| f.path().display().to_string()),
            others.len() + more,
            others.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

impl WeightFile {
    /// [`check_unused`] of this one file.
    pub fn check_unused(&self) -> Result<()> {
        check_unused(&[self])
    }

    /// Checks every entry of the packed table against the tensors of the file: a known
    /// format, a non-empty shape, its values tensor present (of `n × row words` for a dense
    /// format), and no part tensor of another layout beside it (a 2:4 `NAME.meta` under a
    /// dense format, say), which would mean the table mislabels the layout.
    pub(super) fn check_packed_table(&self) -> Result<()> {
        let mut entries: Vec<(&String, &PackedInfo)> = self.packed.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (name, p) in entries {
            let bad = |expected: String, found: String| {
                Err(Error::Input(InputError::BadTensor {
                    tensor: name.clone(),
                    expected,
                    found,
                }))
            };
            let parts = match sparse::parts(&p.format) {
                Some(parts) => parts,
                None => match WeightFormat::parse(&p.format) {
                    Ok(format) => dense_parts(format),
                    Err(_) => {
                        return bad(
                            format!("a known packed format in '{PACKED_KEY}'"),
                            format!("format '{}'", p.format),
                        );
                    }
                },
            };
            if p.n == 0 || p.k == 0 {
                return bad(
                    "a non-empty matrix".into(),
                    format!("described as {} × {}", p.n, p.k),
                );
            }
            // Before the shapes: a mislabelled layout is what a wrong shape would mean.
            if let Some(extra) = PARTS
                .iter()
                .find(|s| !parts.contains(s) && self.contains(&format!("{name}{s}")))
            {
                return bad(
                    format!("the tensors of format '{}'", p.format),
                    format!(
                        "stored with a '{name}{extra}' tensor, which that format does not have \
                         (the table mislabels its layout)"
                    ),
                );
            }
            let Some(info) = self.meta.info(name) else {
                return Err(Error::Input(InputError::MissingTensor {
                    tensor: name.clone(),
                    expected: format!("the values of its '{PACKED_KEY}' entry ({})", p.format),
                }));
            };
            if let Ok(format) = WeightFormat::parse(&p.format)
                && sparse::parts(&p.format).is_none()
            {
                let rw = p.k.div_ceil(format.block_k()).checked_mul(4);
                if info.dtype != Dtype::U32
                    || rw.map(|rw| vec![p.n, rw]) != Some(info.shape.clone())
                {
                    return bad(
                        format!(
                            "U32 of shape [{}, {}] for a {} × {} {} matrix",
                            p.n,
                            rw.map_or_else(|| "?".into(), |r| r.to_string()),
                            p.n,
                            p.k,
                            p.format
                        ),
                        format!("{:?} of shape {:?}", info.dtype, info.shape),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The suffixes of the tensors a dense packed format stores.
fn dense_parts(format: WeightFormat) -> Vec<&'static str> {
    match format {
        WeightFormat::F32 | WeightFormat::F16 => vec![""],
        WeightFormat::Int8
        | WeightFormat::Int8G32
        | WeightFormat::Int4 {
            asymmetric: false, ..
        } => {
            vec!["", ".scales"]
        }
        WeightFormat::Int4 { .. } | WeightFormat::Int4Min { .. } => vec!["", ".scales", ".zeros"],
        f if f.has_half_zeros() => vec!["", ".scales", ".zeros"],
        _ => vec!["", ".scales"],
    }
}
