//! The model subcommands of `sparq`: `run`, `embed`, `pack` and `model-bench`.

use crate::device_args::DeviceArgs;
use crate::model_formats::Formats;
use crate::model_text::TextArgs;
use crate::out::outln;
use crate::report_cli::OutputArgs;
use clap::Subcommand;
use sparq::formats::WeightFormat;
use sparq::gpu::AdapterSelector;
use sparq::model::calibrate;
use sparq::model::compress::{self, Compression, SparseStorage};
use sparq::model::config::Architecture;
use sparq::model::loader::{self, WeightFile};
use sparq::model::shrink;
use sparq::model::{Batch, Model, Output};
use sparq::{Error, Gpu, Result};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Run a model on a JSON input file and print JSON results.
    ///
    /// Input: {"texts": ["..."]}, {"ids": [[101, ...]], "types": [[0, ...]]} or
    /// {"features": [[...], ...]}. Output: the JSON envelope (docs/output.md), one row per
    /// input: its embeddings or logits (and probabilities and predicted class of a classifier).
    Run {
        #[command(flatten)]
        device: DeviceArgs,
        /// Model directory (model.safetensors, config.json, tokenizer.json) or .safetensors file.
        model: PathBuf,
        /// Format of the linear weights stored as floats (f32 by default): f32, f16, int8,
        /// int8g32, int4 (= int4g32), int4g64, int4g32a, int4g32m, binary, binarym, ternary,
        /// ternary16, ...; a packed file runs as stored, and another format is refused.
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        text: TextArgs,
        /// JSON input file (`-` for standard input).
        #[arg(long)]
        input: PathBuf,
        /// Write the JSON here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Spread the texts over several devices: `all`, or adapter selectors such as `0,1`
        /// (`0,0`: two devices on adapter 0); a split report goes to standard error.
        #[arg(long)]
        adapters: Option<String>,
        /// Inputs per forward pass at most (a larger batch runs as several passes, sorted by
        /// length); by default as many as the device takes.
        #[arg(long)]
        batch_size: Option<NonZeroUsize>,
    },
    /// Embed sentences with an encoder and print one JSON array per sentence.
    Embed {
        #[command(flatten)]
        device: DeviceArgs,
        /// Model directory or .safetensors file.
        model: PathBuf,
        /// The sentences.
        #[arg(required = true)]
        sentences: Vec<String>,
        /// Format of the linear weights stored as floats (f32 by default); a packed file
        /// runs as stored, and another format is refused.
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        text: TextArgs,
        /// Spread the texts over several devices: `all`, or adapter selectors such as `0,1`
        /// (`0,0`: two devices on adapter 0); a split report goes to standard error.
        #[arg(long)]
        adapters: Option<String>,
        /// Inputs per forward pass at most (a larger batch runs as several passes, sorted by
        /// length); by default as many as the device takes.
        #[arg(long)]
        batch_size: Option<NonZeroUsize>,
        /// Print the cosine similarity of every pair of sentences, as a table, instead of
        /// the vectors.
        #[arg(long)]
        similarity: bool,
    },
    /// Write a compressed, self-describing model file: linear weights packed in FORMAT,
    /// the architecture in the metadata.
    Pack {
        /// Model directory or .safetensors file (float weights); or a decoder: a GGUF file,
        /// a Hugging Face Llama/Qwen2 directory, or a sparq decoder file.
        model: PathBuf,
        /// Target format of the linear weights (of their values when pruned): f16, int8,
        /// int8g32, int4g{32,64,128}[a|m], binaryg{32,64,128}[m] (`binary` = g128), ternaryg{64,
        /// 128,256} (`ternary` = g128), ternary16g{80,160,320} (`ternary16` = g160). Binary and
        /// ternary weights stay dense (no --prune).
        #[arg(long)]
        format: String,
        /// Prune every linear weight and store it sparse: `2:4` (2:4 format), `magnitude:S`,
        /// `random:S` or `global:S` (one threshold over all layers) (CSR, f32 or f16 values),
        /// or `blocks:RxC:S` (BSR), S the fraction pruned; or `neurons:S`: drop that fraction
        /// of every FFN's (MLP's) hidden neurons, a smaller dense model.
        #[arg(long)]
        prune: Option<String>,
        /// Calibrate on the sentences of FILE (one per line; `builtin`, or no value, for 64
        /// built-in sentences): dense int4, binary and ternary weights are rounded by GPTQ,
        /// and `--prune 2:4` or `magnitude:S` (then S of every row) prunes by SparseGPT,
        /// keeping the layers' outputs closer. Text models (BERT with tokenizer.json; decoders with their GGUF
        /// tokenizer or tokenizer.json).
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "builtin")]
        calibrate: Option<PathBuf>,
        /// The tokenizer the packed file carries, instead of the source's own: a tokenizer.json
        /// for an encoder (the source's own: the one inside a packed source, else
        /// tokenizer.json beside it), a GGUF file for a decoder (the source's own: a GGUF
        /// file's, or the one inside a packed source).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Output .safetensors file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Time whole forward passes of an encoder (GPU timestamps), optionally beside PyTorch.
    ModelBench {
        #[command(flatten)]
        device: DeviceArgs,
        /// Model directory or .safetensors file.
        model: PathBuf,
        /// Weight formats, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "f32,f16,int8,int4")]
        formats: Vec<String>,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        batch: Vec<usize>,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Timed forward passes per case; also bounds the untimed warm-up passes (at most 3)
        /// and the passes of each dispatch alone (at most 5), so a small value makes a quick
        /// run on a slow adapter.
        #[arg(long, default_value_t = 100, value_parser = crate::rows_arg)]
        iters: usize,
        /// PyTorch timings (JSON from benches/torch_minilm.py) to compare with.
        #[arg(long)]
        torch: Option<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
        /// Also draw sequences/s per batch size, a line per format (and PyTorch), as SVG here.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Run {
            model,
            format,
            text: text_args,
            input,
            output,
            adapters,
            batch_size,
            device,
        } => {
            let selector = &device.selector();
            if let Some(p) = &output {
                loader::check_output(&model, p)?;
            }
            if let Some(adapters) = adapters {
                let text = read_input(&input)?;
                let Batch::Text(texts) = Batch::from_json(&text)? else {
                    return Err(Error::invalid(
                        "--adapters takes text input: {\"texts\": [...]}",
                    ));
                };
                let (formats, rows) = embed_on_cluster(
                    &model,
                    format.as_deref(),
                    &text_args,
                    &adapters,
                    &texts,
                    batch_size,
                )?;
                let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                let settings = run_settings(&model, format.as_deref(), &input, Some(&adapters));
                let json =
                    result_envelope(&formats, &rows, None, serde_json::Value::Null, settings)?;
                return write_result(output.as_deref(), &json);
            }
            let gpu = Gpu::new(selector)?;
            let (m, formats) = load_quiet(&model, &gpu, format.as_deref(), &text_args, batch_size)?;
            let text = read_input(&input)?;
            let batch = text_args.encode(&m, Batch::from_json(&text)?)?;
            let out = m.forward(&batch)?;
            let formats = formats.with_activations(m.activation_precisions());
            formats.note_if_packed();
            let settings = run_settings(&model, format.as_deref(), &input, None);
            let json = output_json(&formats, &out, &gpu, settings)?;
            write_result(output.as_deref(), &json)
        }
        ModelCommand::Embed {
            model,
            sentences,
            format,
            text: text_args,
            adapters,
            batch_size,
            similarity,
            device,
        } => {
            let selector = &device.selector();
            let rows = match adapters {
                Some(adapters) => {
                    let (_, rows) = embed_on_cluster(
                        &model,
                        format.as_deref(),
                        &text_args,
                        &adapters,
                        &sentences,
                        batch_size,
                    )?;
                    rows
                }
                None => {
                    let gpu = Gpu::new(selector)?;
                    let (m, formats) =
                        load_quiet(&model, &gpu, format.as_deref(), &text_args, batch_size)?;
                    let out = m.forward(&text_args.encode(&m, Batch::text(&sentences))?)?;
                    formats
                        .with_activations(m.activation_precisions())
                        .note_if_packed();
                    out.to_vecs()
                }
            };
            if similarity {
                let matrix = sparq::model::cosine_matrix(rows.iter().map(Vec::as_slice));
                outln!("{}", crate::similarity::table(&sentences, &matrix));
                return Ok(());
            }
            for row in &rows {
                outln!("{}", serde_json::to_string(row).expect("floats serialise"));
            }
            Ok(())
        }
        ModelCommand::Pack {
            model,
            format,
            prune,
            calibrate,
            tokenizer,
            output,
        } => {
            let format = WeightFormat::parse(&format)?;
            // `neurons:S` shrinks the model (structured); the other specs prune into sparse formats.
            let neurons = match prune.as_deref().and_then(|p| p.strip_prefix("neurons:")) {
                Some(f) => Some(f.parse::<f64>().map_err(|_| {
                    Error::invalid(format!(
                        "pruning 'neurons:{f}' is not {}",
                        compress::prune_specs()
                    ))
                })?),
                None => None,
            };
            let sparse = match neurons {
                Some(_) => None,
                None => prune.as_deref().map(SparseStorage::parse).transpose()?,
            };
            let calibrate = calibrate.map(|p| (p.as_os_str() != "builtin").then_some(p));
            let compression = Compression { format, sparse };
            // Refused before any work: a file the runtime cannot load, or one over the input.
            compression.check()?;
            loader::check_output(&model, &output)?;
            pack(
                &model,
                compression,
                neurons,
                calibrate,
                tokenizer.as_deref(),
                &output,
            )
        }
        ModelCommand::ModelBench {
            model,
            formats,
            batch,
            seq,
            iters,
            torch,
            out,
            plot,
            device,
        } => model_bench(
            &device.selector(),
            &model,
            &formats,
            &batch,
            seq,
            iters,
            torch.as_deref(),
            &out,
            plot.as_deref(),
        ),
    }
}

/// The model at `path` with float weights in `format` (f32 by default), at most
/// `batch_size` inputs per pass, its formats checked (a `--format` a packed file cannot take
/// is an error) and, for a packed file, noted on standard error.
fn load<'g>(
    path: &Path,
    gpu: &'g Gpu,
    format: Option<&str>,
    text: &TextArgs,
    batch_size: Option<NonZeroUsize>,
) -> Result<(Model<'g>, Formats)> {
    let (m, formats) = load_quiet(path, gpu, format, text, batch_size)?;
    formats.note_if_packed();
    Ok((m, formats))
}

/// [`load`] without the note: `run` and `embed` print it after the pass, with the precision
/// the layers read activations in.
fn load_quiet<'g>(
    path: &Path,
    gpu: &'g Gpu,
    format: Option<&str>,
    text: &TextArgs,
    batch_size: Option<NonZeroUsize>,
) -> Result<(Model<'g>, Formats)> {
    let options = text
        .options(Formats::load_format(format)?)
        .max_batch(batch_size.map_or(0, NonZeroUsize::get));
    // The file's header alone says whether `--format` applies: refused before any upload.
    let formats = Formats::of_file(path, format)?;
    let m = Model::load_with(path, gpu, options)?;
    let formats = formats.with_used(m.layer_formats());
    Ok((m, formats))
}

/// The input file (or stdin for `-`), read up to one byte past the input limit (which
/// `Batch::from_json` refuses), so that a huge file is never read whole.
fn read_input(input: &Path) -> Result<String> {
    use std::io::Read;
    let limit = sparq::model::prefix::MAX_INPUT_BYTES;
    let named = |e: std::io::Error| {
        Error::from(sparq::InputError::File {
            path: input.display().to_string(),
            source: std::sync::Arc::new(e),
        })
    };
    let mut bytes = Vec::new();
    // The whole file's size where known, for the message; what was read otherwise.
    let mut size = 0;
    if input.as_os_str() == "-" {
        std::io::stdin()
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)?;
    } else {
        let file = std::fs::File::open(input).map_err(named)?;
        size = file.metadata().map_or(0, |m| m.len() as usize);
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(named)?;
    }
    let size = size.max(bytes.len());
    sparq::model::prefix::check_input_bytes(&format!("{}", input.display()), size)?;
    String::from_utf8(bytes)
        .map_err(|e| named(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Embeds `texts` with one replica of the model per device of `adapters`, split by measured
/// throughput (`sparq::schedule::Cluster`); prints where the rows and the time went to stderr.
fn embed_on_cluster(
    model: &Path,
    format: Option<&str>,
    text: &TextArgs,
    adapters: &str,
    texts: &[String],
    batch_size: Option<NonZeroUsize>,
) -> Result<(Formats, Vec<Vec<f32>>)> {
    use sparq::schedule::{Cluster, ModelReplica};
    if text.no_truncate {
        return Err(Error::invalid(
            "--no-truncate is not available with --adapters (each device tokenises its share)",
        ));
    }
    let formats = Formats::of_file(model, format)?;
    let options = text.options(Formats::load_format(format)?);
    let sample = &texts[..texts.len().min(8)];
    let rows_per_pass = batch_size.map_or(32, NonZeroUsize::get);
    let mut cluster = Cluster::open(
        adapters,
        |g| ModelReplica::load(model, g, options.clone(), rows_per_pass),
        sample,
    )?;
    let out = cluster.run(texts)?;
    eprintln!("{}", out.report.markdown());
    let formats = formats.with_activations(crate::model_formats::cluster_activations(&mut cluster));
    formats.note_if_packed();
    Ok((formats, out.outputs))
}

/// `run`'s result: the envelope (docs/output.md) of `out` on `gpu`, one row object per input
/// row, with the formats of `formats`.
fn output_json(
    formats: &Formats,
    out: &Output,
    gpu: &Gpu,
    settings: serde_json::Value,
) -> Result<sparq::report::Envelope> {
    let rows: Vec<&[f32]> = (0..out.rows).map(|i| out.row(i)).collect();
    result_envelope(
        formats,
        &rows,
        out.probabilities.as_deref(),
        serde_json::to_value(&gpu.caps).unwrap_or_default(),
        settings,
    )
}

/// The envelope of `run`'s result rows: each row keeps the keys of the result before the
/// envelope (the formats of [`Formats::json`], `cols`, and `embeddings`, or `logits`,
/// `probabilities` and `predictions` of a classifier, each now that row's own), with its
/// index as `row`; f32s at their shortest round-trip precision.
fn result_envelope(
    formats: &Formats,
    rows: &[&[f32]],
    probabilities: Option<&[f32]>,
    adapter: serde_json::Value,
    settings: serde_json::Value,
) -> Result<sparq::report::Envelope> {
    use sparq::report::num::f32_json;
    let cols = rows.first().map_or(0, |r| r.len());
    let format_fields = formats.json();
    let objects: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut j = serde_json::json!({ "row": i });
            if let (Some(o), Some(f)) = (j.as_object_mut(), format_fields.as_object()) {
                o.extend(f.clone());
            }
            j["cols"] = r.len().into();
            match probabilities {
                None => j["embeddings"] = f32_json(r),
                Some(p) => {
                    j["logits"] = f32_json(r);
                    j["probabilities"] = f32_json(&p[i * cols..(i + 1) * cols]);
                    j["predictions"] = (0..r.len())
                        .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                        .unwrap_or(0)
                        .into();
                }
            }
            j
        })
        .collect();
    sparq::report::Envelope::new("run", adapter, settings, objects)
}

/// The options of `run` that change its result.
fn run_settings(
    model: &Path,
    format: Option<&str>,
    input: &Path,
    adapters: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "format": format,
        "input": input,
        "adapters": adapters,
    })
}

/// `run`'s envelope on one line, to `output` or standard output.
fn write_result(output: Option<&Path>, env: &sparq::report::Envelope) -> Result<()> {
    let line = serde_json::to_string(env).expect("JSON values serialize");
    match output {
        Some(p) => sparq::error::write_file(p, line + "\n"),
        None => {
            outln!("{line}");
            Ok(())
        }
    }
}

/// `sparq pack`; `calibrate`: `Some(None)` for the built-in calibration text.
fn pack(
    path: &Path,
    compression: Compression,
    neurons: Option<f64>,
    calibrate: Option<Option<PathBuf>>,
    tokenizer: Option<&Path>,
    output: &Path,
) -> Result<()> {
    if sparq::model::llama::pack::is_decoder(path) {
        return pack_decoder(path, compression, neurons, calibrate, tokenizer, output);
    }
    let (weights, dir) = if path.is_dir() {
        (path.join("model.safetensors"), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    };
    let file = WeightFile::open(&weights)?;
    let arch = match file.metadata(loader::CONFIG_KEY) {
        Some(j) => Architecture::from_sparq_json(j)?,
        None => Architecture::from_hf_dir(&dir)?,
    };
    let tokenizer = crate::model_text::packed_tokenizer(&file, &dir, &arch, tokenizer)?;
    let (file, arch, shrunk) = match neurons {
        None => (file, arch, None),
        Some(s) => {
            // The smaller float model goes through a file of its own, then packs as any other;
            // in a private directory (a random name) that is removed however pack ends.
            let (arch, tensors, cut) = shrink::drop_neurons(&file, &arch, s)?;
            let tmp = tempfile::Builder::new().prefix("sparq-shrunk-").tempdir()?;
            let shrunk = tmp.path().join("model.safetensors");
            let meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
            loader::save(&shrunk, &tensors, &[], meta)?;
            eprintln!(
                "dropped {:.0} % of the hidden neurons ({:.1} % of the weights of the layers \
                 around them, ‖W − Ŵ‖/‖W‖ {:.4}): {}",
                100.0 * s,
                100.0 * cut.sparsity,
                cut.relative_error,
                arch.to_json()
            );
            (WeightFile::open(&shrunk)?, arch, Some(tmp))
        }
    };
    let hessians = match &calibrate {
        None => None,
        Some(text) => {
            compression.check_calibrated()?;
            let start = std::time::Instant::now();
            let texts = calibrate::texts(text.as_deref())?;
            let bar = crate::progress::Bar::new("calibrating", 0);
            let (h, tokens) = arch
                .family()
                .calibrate(&file, &dir, &texts, &mut |d, t, l| bar.update(d, t, l))?;
            bar.finish();
            eprintln!(
                "calibrated on {} sentences ({tokens} tokens) in {:.1} s",
                texts.len(),
                start.elapsed().as_secs_f64()
            );
            Some(h)
        }
    };
    let packed = compress::pack_model(&file, &arch, &compression, hessians.as_ref());
    drop(shrunk);
    let (floats, packed, report) = packed?;
    let mut meta = HashMap::from([(loader::CONFIG_KEY.to_string(), arch.to_json())]);
    if let Some(t) = tokenizer {
        meta.insert(sparq::model::tokenizer_source::TOKENIZER_KEY.into(), t);
    }
    loader::save(output, &floats, &packed, meta)?;
    eprintln!(
        "wrote {} ({:.1} MB): {} linear weights as {}; {:.1} % of their weights zero after \
         pruning; relative weight error ‖W − Ŵ‖/‖W‖ {:.4} (pruning and quantization)",
        output.display(),
        std::fs::metadata(output)?.len() as f64 / 1e6,
        report.layers,
        report.formats.join(", "),
        100.0 * report.zeros as f64 / report.len.max(1) as f64,
        report.relative_error,
    );
    if report.kept > 0 {
        eprintln!(
            "{} of them were already packed in the input and are kept as they were",
            report.kept
        );
    }
    Ok(())
}

/// `sparq pack` of a Llama-family decoder (GGUF, Hugging Face or sparq file).
fn pack_decoder(
    path: &Path,
    compression: Compression,
    neurons: Option<f64>,
    calibrate: Option<Option<PathBuf>>,
    tokenizer: Option<&Path>,
    output: &Path,
) -> Result<()> {
    use sparq::model::llama::{pack, tokenizer_file};
    if neurons.is_some() {
        return Err(Error::invalid(
            "--prune neurons:S is for encoders and MLPs, not decoders",
        ));
    }
    let tokens = match &calibrate {
        None => None,
        Some(text) => {
            compression.check_calibrated()?;
            let texts = calibrate::texts(text.as_deref())?;
            Some(sparq::model::llama::calibrate::tokenize(path, &texts)?)
        }
    };
    // Before the long part: a --tokenizer that does not read fails at once.
    let carried = tokenizer_file::for_pack(path, tokenizer)?;
    let start = std::time::Instant::now();
    // Calibration counts its steps (the library gives the total); packing alone does not.
    let bar = match &tokens {
        Some(_) => crate::progress::Bar::new("calibrating", 0),
        None => crate::progress::Bar::spinner("packing"),
    };
    let (config, floats, linears, report) =
        pack::pack(path, &compression, tokens.as_deref(), |d, t, l| {
            bar.update(d, t, if d < t { l } else { "packing" })
        })?;
    bar.finish();
    if let Some(t) = &tokens {
        eprintln!(
            "calibrated on {} texts ({} tokens) and packed in {:.1} s",
            t.len(),
            t.iter().map(Vec::len).sum::<usize>(),
            start.elapsed().as_secs_f64()
        );
    }
    let carries = carried.is_some();
    tokenizer_file::write(output, &config, &floats, &linears, carried)?;
    if !carries {
        eprintln!(
            "note: {} carries no tokenizer ({} is not a GGUF file and no --tokenizer \
             FILE.gguf was given): generate, chat and perplexity will need --tokenizer",
            output.display(),
            path.display()
        );
    }
    eprintln!(
        "wrote {} ({:.1} MB): a {}-layer decoder, {} linear weights as {}; {:.1} % of their \
         weights zero after pruning; relative weight error ‖W − Ŵ‖/‖W‖ {:.4}",
        output.display(),
        std::fs::metadata(output)?.len() as f64 / 1e6,
        config.num_layers,
        report.layers,
        report.formats.join(", "),
        100.0 * report.zeros as f64 / report.len.max(1) as f64,
        report.relative_error,
    );
    if report.kept > 0 {
        eprintln!(
            "{} of them were already packed in the input and are kept as they were",
            report.kept
        );
    }
    Ok(())
}

/// `e` with `flags` (the options whose values were too large) before the buffer it names.
fn naming_flags(e: Error, flags: &str) -> Error {
    use sparq::InputError::{HostMemory, Overflow, TooLarge};
    match e {
        Error::Input(TooLarge {
            what,
            bytes,
            limit_name,
            limit,
        }) => TooLarge {
            what: format!("{flags}: {what}"),
            bytes,
            limit_name,
            limit,
        }
        .into(),
        Error::Input(Overflow { what }) => Overflow {
            what: format!("{flags}: {what}"),
        }
        .into(),
        Error::Input(HostMemory {
            what,
            bytes,
            limit,
            source_of_limit,
        }) => HostMemory {
            what: format!("{flags}: {what}"),
            bytes,
            limit,
            source_of_limit,
        }
        .into(),
        Error::Input(sparq::InputError::Shape(m)) => Error::shape(format!("{flags}: {m}")),
        other => other,
    }
}

#[derive(serde::Deserialize)]
struct TorchRow {
    dtype: String,
    batch: usize,
    seq: usize,
    us: f64,
}

#[allow(clippy::too_many_arguments)]
fn model_bench(
    selector: &AdapterSelector,
    path: &Path,
    formats: &[String],
    batches: &[usize],
    seq: usize,
    iters: usize,
    torch: Option<&Path>,
    out: &OutputArgs,
    plot: Option<&Path>,
) -> Result<()> {
    let gpu = Gpu::new(selector)?;
    let torch_file = torch.map(Path::to_path_buf);
    let torch: Vec<TorchRow> = match torch {
        Some(p) => {
            let v: serde_json::Value = serde_json::from_str(&sparq::error::read_text(p)?)
                .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?;
            serde_json::from_value(v["rows"].clone())
                .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?
        }
        None => Vec::new(),
    };
    let find = |dtype: &str, b: usize| {
        torch
            .iter()
            .find(|t| t.dtype == dtype && t.batch == b && t.seq == seq)
            .map(|t| t.us)
    };
    eprintln!(
        "model benchmark on {} ({})",
        gpu.caps.name, gpu.caps.backend
    );
    let mut all = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A packed or sparse file runs as stored whatever the requested format: once.
    let stored = Formats::of_file(path, None)?;
    let formats: Vec<Option<&str>> = match stored.stored.is_empty() {
        true => formats.iter().map(|f| Some(f.as_str())).collect(),
        false => {
            eprintln!(
                "{} stores packed weights ({}): timed once as stored, --formats not applied",
                path.display(),
                stored.used_name()
            );
            vec![None]
        }
    };
    let per_format = 2 * batches.len();
    let total = formats.len() * per_format;
    let bar = crate::progress::Bar::new("model-bench", total);
    for (i, f) in formats.iter().copied().enumerate() {
        let name = f.unwrap_or("stored");
        bar.update(i * per_format, total, &format!("loading {name}"));
        let (m, _) = load(path, &gpu, f, &TextArgs::default(), None)?;
        // A packed or sparse file runs as stored whatever the requested format: once.
        if !seen.insert(m.layer_formats()) {
            continue;
        }
        let rows = sparq::model::bench::run(&m, &gpu, batches, seq, iters, |d, _, l| {
            bar.update(i * per_format + d, total, &format!("{name} {l}"))
        })
        .map_err(|e| naming_flags(e, "--batch/--seq"))?;
        for mut row in rows {
            row.torch_fp32_us = find("fp32", row.batch);
            row.torch_fp16_us = find("fp16", row.batch);
            all.push(row);
        }
    }
    bar.finish();
    for r in &all {
        let top: Vec<String> = r
            .by_kernel
            .iter()
            .take(6)
            .map(|(l, n, us)| format!("{l} ×{n} {}", sparq::report::num::time_us(*us)))
            .collect();
        eprintln!("{} b={}: {}", r.format, r.batch, top.join(" | "));
    }
    let settings = serde_json::json!({
        "model": path,
        "formats": formats,
        "batch": batches,
        "seq": seq,
        "iters": iters,
        "torch": torch_file,
    });
    let env = sparq::report::Envelope::new("model-bench", &gpu.caps, settings, &all)?;
    if let Some(p) = plot {
        crate::plot::write(p, &crate::plot::model::svg(&gpu.caps.name, &all)?)?;
    }
    out.emit(&env, || sparq::model::bench::markdown(&all))
}
