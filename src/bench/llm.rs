//! `sparq llm-bench`: prefill and decode speed of a Llama-family decoder, per weight format,
//! batch size and context, with the bytes each decode step must move and how close it comes
//! to the streaming-read floor measured in the same run.
//!
//! Decode steps are timed over a cache that [`LlamaDecoder::assume_filled`] marks as holding
//! `context` positions without computing them: a step's time depends on how many keys it
//! reads, not on their values. Random-weight models of published shapes come from
//! [`RandomSource`], which tiles one quantized block of random rows, so that an 8B-parameter
//! model is built in seconds.

use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::median;
use crate::model::decode::{CausalLm, Chunk, LogitRows};
use crate::model::llama::source::LlamaSource;
use crate::model::llama::{LlamaConfig, LlamaDecoder, RopeLayout};
use crate::weights::LayerWeights;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

/// Rows of random weights quantized once and repeated down a matrix.
const TILE_ROWS: usize = 64;

/// A Llama-family shape by name: `smollm2` (SmolLM2-135M), `llama-1b` (Llama-3.2-1B),
/// `llama-8b` (Llama-3-8B), with plain RoPE.
pub fn shape(name: &str) -> Result<LlamaConfig> {
    let base = |vocab, hidden, layers, heads, kv, d, ff, theta, ctx, tied| LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: d,
        intermediate_size: ff,
        rms_norm_eps: 1e-5,
        rope_theta: theta,
        max_context: ctx,
        tie_word_embeddings: tied,
        attention_bias: false,
        rope_layout: RopeLayout::HalfSplit,
    };
    Ok(match name {
        "smollm2" => base(49152, 576, 30, 9, 3, 64, 1536, 1e5, 8192, true),
        "llama-1b" => base(128256, 2048, 16, 32, 8, 64, 8192, 5e5, 8192, true),
        "llama-8b" => base(128256, 4096, 32, 32, 8, 128, 14336, 5e5, 8192, false),
        _ => {
            return Err(Error::invalid(format!(
                "unknown model shape '{name}' (smollm2, llama-1b, llama-8b)"
            )));
        }
    })
}

/// Random weights in one format: norm scales 1, biases 0, every matrix a random block of
/// `TILE_ROWS` rows quantized once and repeated (speed does not depend on the values, and
/// the activations stay finite).
pub struct RandomSource {
    format: WeightFormat,
    seed: u64,
}

impl RandomSource {
    /// Random weights in `format`, from `seed`.
    pub fn new(format: WeightFormat, seed: u64) -> Self {
        RandomSource { format, seed }
    }
}

impl LlamaSource for RandomSource {
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let v = if name.contains("norm") { 1.0 } else { 0.0 };
        Ok(vec![v; len])
    }

    fn linear(&self, parts: &[(String, usize)], k: usize) -> Result<LayerWeights> {
        let n: usize = parts.iter().map(|p| p.1).sum();
        let rows = n.min(TILE_ROWS);
        let mut rng = StdRng::seed_from_u64(self.seed ^ (n as u64) << 20 ^ k as u64);
        let scale = 1.0 / (k as f32).sqrt();
        let w: Vec<f32> = (0..rows * k)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        let tile = PackedWeights::quantize(&w, rows, k, self.format)?;
        let tail = tile.rows(0, n % rows);
        let mut parts: Vec<&PackedWeights> = vec![&tile; n / rows];
        if !n.is_multiple_of(rows) {
            parts.push(&tail);
        }
        Ok(PackedWeights::concat_rows(&parts)?.into())
    }
}

/// A decoder of the shape `name` ([`shape`]) with random weights in `format`, on a device it
/// shares: what a benchmark serves when no checkpoint of the shape is at hand (it has no
/// tokenizer; its output is noise).
pub fn random_decoder(
    name: &str,
    format: WeightFormat,
    gpu: std::sync::Arc<crate::Gpu>,
    options: crate::model::llama::DecoderOptions,
) -> Result<LlamaDecoder<'static>> {
    LlamaDecoder::from_source_shared(gpu, shape(name)?, &RandomSource::new(format, 1), options)
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct LlmBenchConfig {
    /// Prompt length of the prefill measurement.
    pub prompt: usize,
    /// Sequences per decode step.
    pub batches: Vec<usize>,
    /// Cached positions each sequence holds during the decode steps.
    pub contexts: Vec<usize>,
    /// Timed runs per case (after warm-up runs).
    pub iters: usize,
}

impl Default for LlmBenchConfig {
    fn default() -> Self {
        LlmBenchConfig {
            prompt: 512,
            batches: vec![1, 8, 32, 64],
            contexts: vec![512, 4096],
            iters: 20,
        }
    }
}

/// One measured case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LlmRow {
    /// The model (`smollm2`, `llama-8b`, a file name).
    pub model: String,
    /// Formats of its linear layers.
    pub format: String,
    /// `prefill` or `decode`.
    pub phase: &'static str,
    /// Sequences in the step.
    pub batch: usize,
    /// Prompt tokens (prefill) or cached positions per sequence (decode).
    pub context: usize,
    /// Median GPU time of one step (timestamp queries), µs.
    pub gpu_us: f64,
    /// Sample standard deviation of the steps' GPU times, µs.
    pub gpu_us_stddev: f64,
    /// Median host time of one step outside the GPU wait, µs.
    pub host_us: f64,
    /// Median wall time of one step, µs.
    pub wall_us: f64,
    /// Tokens per second of GPU time.
    pub tokens_per_s: f64,
    /// Bytes one step must read: weights (once) and the keys and values of every sequence.
    pub bytes: u64,
    /// Achieved GB/s over the GPU time.
    pub gbps: f64,
    /// Achieved TFLOP/s of the linear layers (2 · parameters · tokens) over the GPU time.
    pub tflops: f64,
    /// Time the bytes take at the streaming-read ceiling over the GPU time, percent.
    pub floor_pct: f64,
}

/// Times `step` `iters` times after 3 warm-up runs: median (GPU, host, wall) seconds and the
/// GPU times' sample standard deviation.
fn time(
    iters: usize,
    mut step: impl FnMut() -> Result<(f64, f64)>,
) -> Result<(f64, f64, f64, f64)> {
    for _ in 0..3 {
        step()?;
    }
    let (mut gpu, mut host, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        let started = Instant::now();
        let (g, h) = step()?;
        wall.push(started.elapsed().as_secs_f64());
        gpu.push(g);
        host.push(h);
    }
    Ok((
        median(&gpu),
        median(&host),
        median(&wall),
        crate::report::stddev(&gpu),
    ))
}

/// Cases [`run`] measures under `cfg` on a model of context `max_context`: the prefill, and
/// each decode (context, batch) whose steps fit the context.
pub fn steps(cfg: &LlmBenchConfig, max_context: usize) -> usize {
    let contexts = cfg
        .contexts
        .iter()
        .filter(|&&context| fits(cfg, context, max_context))
        .count();
    1 + contexts * cfg.batches.len()
}

/// Whether the decode steps at `context` (warm-ups and timed) fit a model of `max_context`.
fn fits(cfg: &LlmBenchConfig, context: usize, max_context: usize) -> bool {
    context + cfg.iters + 4 <= max_context
}

/// Measures `lm` (named `model`) under `cfg`, judging bytes against `ceiling_gbps`; calls
/// `progress(done, total, label)` before each of the [`steps`] cases and `(total, total,
/// "done")` at the end.
pub fn run(
    lm: &LlamaDecoder,
    model: &str,
    cfg: &LlmBenchConfig,
    ceiling_gbps: f64,
    mut report: impl FnMut(usize, usize, &str),
) -> Result<Vec<LlmRow>> {
    let c = lm.config().clone();
    let total = steps(cfg, c.max_context);
    let mut done = 0;
    let mut progress = |label: &str| {
        report(done.min(total), total, label);
        done += 1;
    };
    let params = matmul_params(&c);
    let format = lm.formats().join(",");
    let mut rng = StdRng::seed_from_u64(7);
    let mut token = move || rng.random_range(0..c.vocab_size as u32);
    let mut rows = Vec::new();
    let row =
        |phase, batch, context, (gpu, host, wall, sd): (f64, f64, f64, f64), tokens, bytes: u64| {
            let gbps = bytes as f64 / gpu.max(1e-12) / 1e9;
            LlmRow {
                model: model.to_string(),
                format: format.clone(),
                phase,
                batch,
                context,
                gpu_us: gpu * 1e6,
                gpu_us_stddev: sd * 1e6,
                host_us: host * 1e6,
                wall_us: wall * 1e6,
                tokens_per_s: tokens as f64 / gpu.max(1e-12),
                bytes,
                gbps,
                tflops: 2.0 * params as f64 * tokens as f64 / gpu.max(1e-12) / 1e12,
                floor_pct: 100.0 * gbps / ceiling_gbps,
            }
        };
    // Prefill: one prompt from an empty cache, the last token's argmax read back.
    progress(&format!("{model} {format} prefill {}", cfg.prompt));
    let prompt: Vec<u32> = (0..cfg.prompt).map(|_| token()).collect();
    let t = time(cfg.iters, || {
        let seq = lm.open();
        let out = lm.step(&[Chunk {
            seq,
            tokens: &prompt,
            logits: LogitRows::LastArgmax,
        }]);
        lm.close(seq);
        let out = out?;
        Ok((out.gpu_seconds.unwrap_or(0.0), out.host_seconds))
    })?;
    rows.push(row(
        "prefill",
        1,
        cfg.prompt,
        t,
        cfg.prompt,
        lm.weight_bytes(),
    ));
    for &context in &cfg.contexts {
        for &batch in &cfg.batches {
            // Room for the warm-up and timed steps after the context.
            let steps = cfg.iters + 4;
            if !fits(cfg, context, c.max_context) {
                continue;
            }
            progress(&format!(
                "{model} {format} decode batch {batch} context {context}"
            ));
            let seqs: Vec<_> = (0..batch).map(|_| lm.open()).collect();
            let filled = seqs
                .iter()
                .try_for_each(|&s| lm.assume_filled(s, context, steps));
            let measured = filled.and_then(|_| {
                time(cfg.iters, || {
                    let next: Vec<[u32; 1]> = seqs.iter().map(|_| [token()]).collect();
                    let chunks: Vec<Chunk> = seqs
                        .iter()
                        .zip(&next)
                        .map(|(&seq, t)| Chunk {
                            seq,
                            tokens: t,
                            logits: LogitRows::LastArgmax,
                        })
                        .collect();
                    let out = lm.step(&chunks)?;
                    Ok((out.gpu_seconds.unwrap_or(0.0), out.host_seconds))
                })
            });
            for s in seqs {
                lm.close(s);
            }
            let kv = batch as u64 * (context as u64 + 1) * lm.kv_bytes_per_token();
            rows.push(row(
                "decode",
                batch,
                context,
                measured?,
                batch,
                lm.weight_bytes() + kv,
            ));
        }
    }
    report(total, total, "done");
    Ok(rows)
}

/// Weights of the linear layers one token multiplies by (every layer and the logits).
pub fn matmul_params(c: &LlamaConfig) -> u64 {
    let (h, q, kv, ff) = (
        c.hidden_size,
        c.q_width(),
        c.kv_width(),
        c.intermediate_size,
    );
    let layer = (q + 2 * kv) * h + q * h + 3 * ff * h;
    (c.num_layers * layer + c.vocab_size * h) as u64
}

/// The rows as a Markdown table, numbers to 3 significant digits with SI prefixes.
pub fn table(rows: &[LlmRow]) -> String {
    use crate::report::{Align::*, Table, num};
    let mut t = Table::new(&[
        ("model", Left),
        ("formats", Left),
        ("phase", Left),
        ("batch", Right),
        ("context", Right),
        ("GPU time/step (median ± sd)", Right),
        ("host", Right),
        ("wall", Right),
        ("tokens/s", Right),
        ("bytes/step", Right),
        ("read", Right),
        ("FLOP/s", Right),
        ("% of floor", Right),
    ]);
    for r in rows {
        t.push([
            r.model.clone(),
            r.format.clone(),
            r.phase.to_string(),
            r.batch.to_string(),
            r.context.to_string(),
            num::time_us_pm(r.gpu_us, r.gpu_us_stddev),
            num::time_us(r.host_us),
            num::time_us(r.wall_us),
            num::rate(r.tokens_per_s, "tok/s"),
            num::si(r.bytes as f64, "B"),
            num::rate(r.gbps * 1e9, "B/s"),
            num::rate(r.tflops * 1e12, "FLOP/s"),
            num::pct(r.floor_pct),
        ]);
    }
    t.markdown()
}
