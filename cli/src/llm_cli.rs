//! The decoder subcommands of `sparq`: `generate`, `chat`, `perplexity` and `llm-bench`.

use crate::device_args::DeviceArgs;
use crate::out::{out, outln};
use clap::Subcommand;
use sparq::bench::llm::{self, LlmBenchConfig};
use sparq::formats::WeightFormat;
use sparq::gguf::Gguf;
use sparq::gpu::AdapterSelector;
use sparq::model::generate::{GenerateParams, Generated, Generator};
use sparq::model::llama::hf::{CheckpointKind, HfCheckpoint, detect, sparq_config};
use sparq::model::llama::{DecoderOptions, LlamaConfig, LlamaDecoder};
use sparq::model::loader::WeightFile;
use sparq::model::sampling::SamplingParams;
use sparq::model::text::{ChatMessage, TextCodec};
use sparq::{Error, Gpu, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct DecoderArgs {
    /// A Llama-family model: a GGUF file (or a directory holding `model.gguf`), a Hugging Face
    /// checkpoint directory, or a file from `sparq pack`.
    model: PathBuf,
    /// A GGUF file whose tokenizer to use; by default the one a packed file carries (`sparq
    /// pack` of a GGUF file stores it), else a GGUF model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Re-quantize the linear weights to this format (f16, int8, int8g32, int4, ternary,
    /// binarym, ...); the file's own formats (losslessly mapped) by default.
    #[arg(long)]
    format: Option<String>,
    /// Tokens the KV cache holds (the model's context by default).
    #[arg(long)]
    kv_tokens: Option<usize>,
}

#[derive(Subcommand)]
pub enum LlmCommand {
    /// Generate text from a prompt with a decoder, streaming it to standard output.
    Generate {
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        decoder: DecoderArgs,
        /// The prompt.
        prompt: String,
        /// Tokens to generate at most.
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling: keep the most likely tokens up to this probability.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Keep only the K most likely tokens (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Penalty on tokens already seen (1: off).
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        /// Seed of the sampler (the same seed gives the same text).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop where this text appears (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Wrap the prompt as a user message in the model's chat template.
        #[arg(long)]
        chat: bool,
    },
    /// An interactive chat in the terminal, with the model's chat template.
    Chat {
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        decoder: DecoderArgs,
        /// A system message first.
        #[arg(long)]
        system: Option<String>,
        /// Tokens per reply at most.
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Seed of the sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Prefill and decode speed of decoders: a GGUF model and random-weight models of
    /// published shapes, per weight format, batch size and context (GPU timestamps).
    LlmBench {
        #[command(flatten)]
        device: DeviceArgs,
        /// A GGUF model (SmolLM2 from the set-up when present).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Random-weight models of these shapes too: smollm2, llama-1b, llama-8b.
        #[arg(long, value_delimiter = ',')]
        shapes: Vec<String>,
        /// Weight formats: `stored` (the GGUF's own, lossless) and any sparq format.
        #[arg(long, value_delimiter = ',', default_value = "stored,f16,int8,int4")]
        formats: Vec<String>,
        /// Sequences per decode step.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
        batch: Vec<usize>,
        /// Cached positions per sequence during decode.
        #[arg(long, value_delimiter = ',', default_value = "512,4096")]
        context: Vec<usize>,
        /// Prompt tokens of the prefill.
        #[arg(long, default_value_t = 512)]
        prompt: usize,
        /// Timed steps per case.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// A tiny run (batch 1 and 2, context 64, prompt 32) that finishes in seconds on CPU.
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        out: crate::report_cli::OutputArgs,
    },
    /// Perplexity of a text file under a decoder, in windows of --context tokens.
    Perplexity {
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        decoder: DecoderArgs,
        /// The text file.
        file: PathBuf,
        /// Tokens per window.
        #[arg(long, default_value_t = 512)]
        context: usize,
        /// Score only the first N tokens of the file.
        #[arg(long)]
        max_tokens_scored: Option<usize>,
        #[command(flatten)]
        out: crate::report_cli::OutputArgs,
    },
}

/// `sparq llm-bench`: each model in each format, one table.
fn llm_bench(
    selector: &AdapterSelector,
    model: Option<PathBuf>,
    shapes: &[String],
    formats: &[String],
    cfg: &LlmBenchConfig,
    quick: bool,
    out: &crate::report_cli::OutputArgs,
) -> Result<()> {
    let gpu = Gpu::new(selector)?;
    if gpu.caps.is_cpu() && cfg.contexts.iter().any(|&c| c > 64) {
        eprintln!(
            "sparq: {} is a CPU adapter: this takes long; --quick measures a small case",
            gpu.caps.name
        );
    }
    let model = match model {
        Some(m) => Some(model_path(&m)?),
        None => Some(PathBuf::from(DEFAULT_GGUF)).filter(|p| p.is_file()),
    };
    if model.is_none() && shapes.is_empty() {
        return Err(Error::config(format!(
            "no model: {DEFAULT_GGUF} is absent (run scripts/setup.sh), and no --shapes"
        )));
    }
    let ceiling = sparq::bench::stream_read_gbps(&gpu, 1 << 30, 20)?;
    let ceiling_text = sparq::report::num::rate(ceiling * 1e9, "B/s");
    eprintln!(
        "sparq: {} streaming-read ceiling {ceiling_text}",
        gpu.caps.name
    );
    // Each sequence rounds up to whole blocks: the longest case's blocks, per sequence.
    let block = DecoderOptions::default().block_size;
    let per_seq = (cfg.contexts.iter().max().copied().unwrap_or(0) + cfg.iters + 8)
        .max(cfg.prompt)
        .next_multiple_of(block);
    let kv_tokens = cfg.batches.iter().max().copied().unwrap_or(1) * per_seq;
    let options = DecoderOptions {
        kv_tokens: Some(kv_tokens),
        ..DecoderOptions::default()
    };
    // Every step counted before the first: loading or building each model, and its cases.
    let file_context = model.as_deref().map(max_context).transpose()?;
    let shape_steps = shapes.iter().try_fold(0, |n, s| {
        Ok::<_, Error>(n + 1 + llm::steps(cfg, llm::shape(s)?.max_context))
    })?;
    let total: usize = formats
        .iter()
        .map(|f| {
            file_context.map_or(0, |c| 1 + llm::steps(cfg, c))
                + if f == "stored" { 0 } else { shape_steps }
        })
        .sum();
    let bar = crate::progress::Bar::new("llm-bench", total);
    let mut done = 0;
    let mut rows = Vec::new();
    let mut measure = |lm: &LlamaDecoder, name: &str, done: &mut usize| -> Result<()> {
        let base = *done;
        rows.extend(llm::run(lm, name, cfg, ceiling, |d, _, l| {
            bar.update(base + d, total, l)
        })?);
        *done += llm::steps(cfg, lm.config().max_context);
        Ok(())
    };
    for f in formats {
        let stored = f == "stored";
        let format = (!stored).then(|| WeightFormat::parse(f)).transpose()?;
        if let Some(path) = &model {
            let name = path
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned());
            bar.update(done, total, &format!("loading {name} ({f})"));
            done += 1;
            let lm = LlamaDecoder::open(path, &gpu, DecoderOptions { format, ..options })?;
            measure(&lm, &name, &mut done)?;
        }
        let Some(format) = format else { continue };
        for s in shapes {
            bar.update(
                done,
                total,
                &format!("building random {s} in {}", format.name()),
            );
            done += 1;
            let config = llm::shape(s)?;
            let src = llm::RandomSource::new(format, 1);
            let lm = LlamaDecoder::from_source(&gpu, config, &src, options)?;
            measure(&lm, s, &mut done)?;
        }
    }
    bar.finish();
    let settings = serde_json::json!({
        "model": model,
        "shapes": shapes,
        "formats": formats,
        "batch": cfg.batches,
        "context": cfg.contexts,
        "prompt": cfg.prompt,
        "iters": cfg.iters,
        "quick": quick,
    });
    let env = sparq::report::Envelope::new("llm-bench", &gpu.caps, settings, &rows)?
        .with_summary(serde_json::json!({ "ceiling_gbps": ceiling }))?;
    out.emit(&env, || {
        format!(
            "{} ({ceiling_text} streaming-read ceiling)\n\n{}",
            gpu.caps.name,
            llm::table(&rows)
        )
    })
}

/// The context of the decoder checkpoint at `path`, from its header or configuration alone
/// (no weights are read): what `llm-bench` counts its cases by before loading it.
fn max_context(path: &Path) -> Result<usize> {
    let config = match detect(path)? {
        CheckpointKind::Gguf => LlamaConfig::from_gguf(&Gguf::open(path)?)?,
        CheckpointKind::HuggingFace => HfCheckpoint::open(path)?.config,
        CheckpointKind::Sparq => sparq_config(&WeightFile::open(path)?)?,
    };
    Ok(config.max_context)
}

/// Where the set-up puts SmolLM2.
const DEFAULT_GGUF: &str = "models/SmolLM2-135M-Instruct/model.gguf";

/// The file or directory a model argument names: a directory's `model.gguf` where it has one.
fn model_path(model: &Path) -> Result<PathBuf> {
    let gguf = model.join("model.gguf");
    let p = if model.is_dir() && gguf.is_file() {
        gguf
    } else {
        model.to_path_buf()
    };
    if !p.exists() {
        return Err(Error::config(format!("{} does not exist", p.display())));
    }
    Ok(p)
}

/// The text codec of a model: the GGUF file `--tokenizer` names, else the one a packed file
/// carries, else a GGUF model's own.
fn model_codec(path: &Path, args: &DecoderArgs) -> Result<TextCodec> {
    let explicit = args.tokenizer.as_deref().map(model_path).transpose()?;
    sparq::model::llama::tokenizer_file::decoder_codec(path, explicit.as_deref())
}

fn options(args: &DecoderArgs) -> Result<DecoderOptions> {
    Ok(DecoderOptions {
        kv_tokens: args.kv_tokens,
        format: args
            .format
            .as_deref()
            .map(WeightFormat::parse)
            .transpose()?,
        ..DecoderOptions::default()
    })
}

/// Streams a generation to standard output; returns its summary.
fn stream(
    lm: &LlamaDecoder,
    codec: &TextCodec,
    prompt: &[u32],
    params: &GenerateParams,
) -> Result<Generated> {
    let done = Generator::new(lm, Some(codec)).generate(prompt, params, |p| out!("{}", p.text))?;
    outln!();
    Ok(done)
}

fn report(done: &Generated) {
    let n = done.tokens.len();
    eprintln!(
        "sparq: {} prompt tokens in {:.1} ms, {n} generated in {:.1} ms ({:.1} tokens/s), \
         finish: {:?}",
        done.prompt_tokens,
        done.prefill_seconds * 1e3,
        done.decode_seconds * 1e3,
        n.saturating_sub(1) as f64 / done.decode_seconds.max(1e-9),
        done.finish
    );
}

pub fn run(cmd: LlmCommand) -> Result<()> {
    match cmd {
        LlmCommand::LlmBench {
            model,
            shapes,
            formats,
            batch,
            context,
            prompt,
            iters,
            quick,
            out,
            device,
        } => {
            let selector = &device.selector();
            let cfg = match quick {
                true => LlmBenchConfig {
                    prompt: 32,
                    batches: vec![1, 2],
                    contexts: vec![64],
                    iters: 2,
                },
                false => LlmBenchConfig {
                    prompt,
                    batches: batch,
                    contexts: context,
                    iters,
                },
            };
            llm_bench(selector, model, &shapes, &formats, &cfg, quick, &out)
        }
        LlmCommand::Generate {
            decoder,
            prompt,
            max_tokens,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            seed,
            stop,
            chat,
            device,
        } => {
            let selector = &device.selector();
            let path = model_path(&decoder.model)?;
            let gpu = Gpu::new(selector)?;
            let lm = LlamaDecoder::open(&path, &gpu, options(&decoder)?)?;
            let codec = model_codec(&path, &decoder)?;
            let ids = match chat {
                true => codec.encode_chat(&[ChatMessage::new("user", prompt)], true)?,
                false => codec.encode(&prompt, false)?,
            };
            let params = GenerateParams {
                max_tokens,
                sampling: SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    repetition_penalty,
                    seed,
                },
                stop,
                eos: Vec::new(),
            };
            report(&stream(&lm, &codec, &ids, &params)?);
            Ok(())
        }
        LlmCommand::Chat {
            decoder,
            system,
            max_tokens,
            temperature,
            seed,
            device,
        } => {
            let selector = &device.selector();
            let path = model_path(&decoder.model)?;
            let gpu = Gpu::new(selector)?;
            let lm = LlamaDecoder::open(&path, &gpu, options(&decoder)?)?;
            let codec = model_codec(&path, &decoder)?;
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(ChatMessage::new("system", s));
            }
            eprintln!("sparq chat: type a message, an empty line or end of input to quit");
            let mut line = String::new();
            let mut turn = 0u64;
            loop {
                eprint!("> ");
                line.clear();
                if std::io::stdin().read_line(&mut line).map_err(Error::from)? == 0 {
                    break;
                }
                let text = line.trim_end_matches(['\n', '\r']);
                if text.is_empty() {
                    break;
                }
                messages.push(ChatMessage::new("user", text));
                let ids = codec.encode_chat(&messages, true)?;
                let room = lm.config().max_context.saturating_sub(ids.len());
                if room == 0 {
                    return Err(Error::invalid("the conversation fills the model's context"));
                }
                let params = GenerateParams {
                    max_tokens: max_tokens.min(room),
                    sampling: SamplingParams {
                        temperature,
                        seed: seed.wrapping_add(turn),
                        ..SamplingParams::default()
                    },
                    ..GenerateParams::default()
                };
                let done = stream(&lm, &codec, &ids, &params)?;
                messages.push(ChatMessage::new("assistant", done.text));
                turn += 1;
            }
            Ok(())
        }
        LlmCommand::Perplexity {
            decoder,
            file,
            context,
            max_tokens_scored,
            out,
            device,
        } => {
            let selector = &device.selector();
            let path = model_path(&decoder.model)?;
            let text = sparq::error::read_text(&file)?;
            let gpu = Gpu::new(selector)?;
            let lm = LlamaDecoder::open(&path, &gpu, options(&decoder)?)?;
            let mut ids = model_codec(&path, &decoder)?.encode(&text, false)?;
            if let Some(n) = max_tokens_scored {
                ids.truncate(n);
            }
            let bar = crate::progress::Bar::new("perplexity", ids.len());
            let p = sparq::model::perplexity::perplexity(&lm, &ids, context, |done, total| {
                bar.update(done, total, "tokens scored")
            })?;
            bar.finish();
            let formats = lm.formats().join(",");
            let row = serde_json::json!({
                "model": path.display().to_string(),
                "formats": formats,
                "file": file.display().to_string(),
                "context": context,
                "perplexity": p.perplexity,
                "nll": p.nll,
                "predicted": p.predicted,
                "windows": p.windows,
                "gpu_seconds": p.gpu_seconds,
            });
            let settings = serde_json::json!({
                "model": path,
                "file": file,
                "context": context,
                "max_tokens_scored": max_tokens_scored,
                "format": decoder.format,
            });
            let env = sparq::report::Envelope::new("perplexity", &gpu.caps, settings, [&row])?;
            out.emit(&env, || {
                format!(
                    "perplexity {:.4} over {} predicted tokens in {} windows of {context} \
                     ({formats}; GPU {})",
                    p.perplexity,
                    p.predicted,
                    p.windows,
                    sparq::report::num::time_us(p.gpu_seconds * 1e6)
                )
            })
        }
    }
}
