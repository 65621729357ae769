//! The decoder subcommands of `sparq`: `generate` and `perplexity`.

use clap::Subcommand;
use sparq::formats::WeightFormat;
use sparq::gguf::Gguf;
use sparq::gpu::AdapterSelector;
use sparq::model::generate::{GenerateParams, Generator};
use sparq::model::llama::{DecoderOptions, LlamaDecoder};
use sparq::model::sampling::SamplingParams;
use sparq::{Error, Gpu, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct DecoderArgs {
    /// A GGUF file (Llama family), or a directory holding `model.gguf`.
    model: PathBuf,
    /// Re-quantize the linear weights to this format (f16, int8, int8g32, int4, ...); the
    /// file's own formats (losslessly mapped) by default.
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
    },
    /// Perplexity of a text file under a decoder, in windows of --context tokens.
    Perplexity {
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The GGUF file of a model argument.
fn gguf_path(model: &Path) -> Result<PathBuf> {
    let p = if model.is_dir() {
        model.join("model.gguf")
    } else {
        model.to_path_buf()
    };
    if !p.is_file() {
        return Err(Error::config(format!("{} is not a GGUF file", p.display())));
    }
    Ok(p)
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

fn tokenizer(path: &Path) -> Result<(tokenizers::Tokenizer, Vec<u32>)> {
    let file = Gguf::open(path)?;
    let tok = sparq::model::llama::gguf::tokenizer(&file)?;
    let mut eos = Vec::new();
    if file.get("tokenizer.ggml.eos_token_id").is_some() {
        eos.push(file.get_uint("tokenizer.ggml.eos_token_id")? as u32);
    }
    Ok((tok, eos))
}

fn encode(tok: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| Error::invalid(format!("tokenizing: {e}")))?
        .get_ids()
        .to_vec())
}

pub fn run(selector: &AdapterSelector, cmd: LlmCommand) -> Result<()> {
    match cmd {
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
        } => {
            let path = gguf_path(&decoder.model)?;
            let gpu = Gpu::new(selector)?;
            let lm = LlamaDecoder::from_gguf(&path, &gpu, options(&decoder)?)?;
            let (tok, eos) = tokenizer(&path)?;
            let ids = encode(&tok, &prompt)?;
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
                eos,
            };
            let mut out = std::io::stdout().lock();
            let done = Generator::new(&lm, Some(&tok)).generate(&ids, &params, |p| {
                // A closed pipe ends the output, not the run.
                let _ = out.write_all(p.text.as_bytes()).and_then(|_| out.flush());
            })?;
            let _ = writeln!(out);
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
            Ok(())
        }
        LlmCommand::Perplexity {
            decoder,
            file,
            context,
            max_tokens_scored,
            json,
        } => {
            let path = gguf_path(&decoder.model)?;
            let text = sparq::error::read_text(&file)?;
            let gpu = Gpu::new(selector)?;
            let lm = LlamaDecoder::from_gguf(&path, &gpu, options(&decoder)?)?;
            let (tok, _) = tokenizer(&path)?;
            let mut ids = encode(&tok, &text)?;
            if let Some(n) = max_tokens_scored {
                ids.truncate(n);
            }
            let bar = indicatif::ProgressBar::new(ids.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} tokens [{elapsed}, {eta} left]",
                )
                .expect("a fixed template parses"),
            );
            let p = sparq::model::perplexity::perplexity(&lm, &ids, context, |done, _| {
                bar.set_position(done as u64)
            })?;
            bar.finish_and_clear();
            let formats = lm.formats().join(",");
            if json {
                let j = serde_json::json!({
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
                println!("{j}");
            } else {
                println!(
                    "perplexity {:.4} over {} predicted tokens in {} windows of {context} \
                     ({formats}; GPU {:.2} s)",
                    p.perplexity, p.predicted, p.windows, p.gpu_seconds
                );
            }
            Ok(())
        }
    }
}
