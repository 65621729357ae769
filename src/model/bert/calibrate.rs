//! Calibration for GPTQ rounding ([`crate::formats::gptq`]) and SparseGPT pruning
//! ([`crate::prune::calibrated`]): the inputs every linear weight of a BERT encoder sees on a
//! set of sentences, summed into one [`Hessian`] per weight. They come from the host reference
//! forward pass ([`reference::bert_observed`]) with the float weights, so calibrating needs no
//! GPU; the sentences are spread over the machine's cores.

use super::{BertNames, host_weights};
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::formats::gptq::Hessian;
use crate::model::config::BertConfig;
use crate::model::loader::WeightFile;
use crate::model::reference::{self, LinearSite};
use std::collections::HashMap;
use std::path::Path;

/// The built-in calibration text: 64 everyday English sentences (none of them in the tests'
/// fixtures), one per line.
pub const DEFAULT_TEXT: &str = include_str!("calibration.txt");

/// Calibration sentences: the lines of `path` that are not blank, or [`DEFAULT_TEXT`]'s for
/// `None`.
pub fn texts(path: Option<&Path>) -> Result<Vec<String>> {
    let text = match path {
        Some(p) => crate::error::read_text(p)?,
        None => DEFAULT_TEXT.to_string(),
    };
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(Error::invalid("the calibration text has no sentences"));
    }
    Ok(lines)
}

/// Token ids and types of `texts` by the model's `tokenizer.json` at `path` (truncated to the
/// model's longest sequence, as [`crate::model::Model`] does).
pub fn tokenize(
    path: &Path,
    c: &BertConfig,
    texts: &[String],
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    crate::model::encode(&crate::model::load_tokenizer(path, c)?, texts)
}

/// Steps of [`bert_hessians`] over `sequences`: each layer of each sequence with tokens.
pub fn steps(c: &BertConfig, sequences: &[(Vec<u32>, Vec<u32>)]) -> usize {
    let with_tokens = sequences.iter().filter(|(ids, _)| !ids.is_empty()).count();
    with_tokens * c.num_hidden_layers
}

/// One [`Hessian`] per linear weight of the BERT encoder in `file`, keyed by the tensor name
/// `sparq pack` stores it under, summed over the tokens of `sequences` (token ids and types).
/// Calls `progress(done, total, label)` as each of the [`steps`] (a layer of a sequence)
/// starts, and `(total, total, "done")` at the end.
pub fn bert_hessians(
    file: &WeightFile,
    c: &BertConfig,
    sequences: &[(Vec<u32>, Vec<u32>)],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<HashMap<String, Hessian>> {
    if sequences.iter().all(|(ids, _)| ids.is_empty()) {
        return Err(Error::invalid("no calibration tokens"));
    }
    c.validate()?;
    let weights = host_weights(file, c, WeightFormat::F32)?;
    let layers = c.num_hidden_layers;
    let width = |site| match site {
        LinearSite::FfnOut => c.intermediate_size,
        _ => c.hidden_size,
    };
    let empty = || -> Vec<Hessian> {
        (0..layers)
            .flat_map(|_| LinearSite::ALL.map(|s| Hessian::new(width(s))))
            .collect()
    };
    // Each thread sums its share of the sentences; four threads at most, as each holds a full
    // set of sums (about 70 MB for a 384-wide, 6-layer encoder).
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get().min(4));
    let share = sequences.len().div_ceil(threads).max(1);
    let total = steps(c, sequences);
    // The threads say which (sequence, layer) starts; this thread tells `progress`, which
    // need not be `Send`.
    let (started, heard) = std::sync::mpsc::channel::<(usize, usize)>();
    let partial: Vec<Vec<Hessian>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sequences
            .chunks(share)
            .enumerate()
            .map(|(p, part)| {
                let weights = &weights;
                let started = started.clone();
                scope.spawn(move || {
                    let mut sums = empty();
                    for (i, (ids, types)) in part.iter().enumerate() {
                        if ids.is_empty() {
                            continue;
                        }
                        let seq = p * share + i;
                        reference::bert_observed(c, weights, ids, types, &mut |l, site, x| {
                            if site == LinearSite::Qkv {
                                // Nobody listening only means the progress goes unseen.
                                let _ = started.send((seq, l));
                            }
                            sums[l * 4 + site as usize].add(x)
                        });
                    }
                    sums
                })
            })
            .collect();
        drop(started);
        for (done, (seq, l)) in heard.iter().enumerate() {
            let label = format!("sentence {} of {}, layer {l}", seq + 1, sequences.len());
            progress(done.min(total), total, &label);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("calibration thread"))
            .collect()
    });
    progress(total, total, "done");
    let mut total = empty();
    for sums in &partial {
        for (t, s) in total.iter_mut().zip(sums) {
            t.merge(s);
        }
    }
    let names = BertNames::detect(file);
    let mut out = HashMap::new();
    for (i, h) in total.into_iter().enumerate() {
        let (l, site) = (i / 4, LinearSite::ALL[i % 4]);
        out.insert(names.linear(l, site).weight(), h);
    }
    Ok(out)
}
