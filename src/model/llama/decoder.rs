//! The Llama-family decoder on the device: its weights (Q/K/V and gate/up fused into one
//! linear layer each), one K and one V pool per layer of the paged KV cache, and the pass of
//! a step ([`CausalLm::step`]) recorded once per [`StepShape`] on the graph executor and
//! replayed with each call's tokens, positions and block tables.
//!
//! One step, for `T` token rows of any number of sequences:
//!
//! ```text
//! x = embed(tokens)
//! per layer:  h = rmsnorm(x) → qkv = h·Wqkv → kv_append (RoPE of Q and K, K/V into the pools)
//!             → paged attention → x' = x + att·Wo
//!             h = rmsnorm(x') → silu(h·Wgate) · h·Wup → x = x' + ·Wdown
//! logits = rmsnorm(x[rows asked for]) · Wlm   (the token embedding when tied)
//! ```

use super::LlamaConfig;
use super::LlamaWeights;
use super::gguf::tensor_names;
use super::source::{GgufSource, HostSource, LlamaSource};
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gguf::Gguf;
use crate::gpu::Gpu;
use crate::graph::{Executor, Pass, Slots, Step};
use crate::linear::{LinearLayer, LinearOptions};
use crate::model::GpuRef;
use crate::model::decode::{
    self, CacheUsage, CausalLm, Chunk, LogitRows, StepLayout, StepOutput, StepShape,
};
use crate::model::kv::{PagedCache, SeqId};
use crate::model::ops::{self, KvLayout, Norm, Rope};
use crate::model::sampling;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Plans kept at once (least recently used dropped first).
const MAX_PLANS: usize = 24;

/// How a decoder is loaded.
#[derive(Clone, Copy, Debug)]
pub struct DecoderOptions {
    /// Tokens the KV cache holds over all sequences (rounded up to whole blocks); `None`:
    /// the model's context.
    pub kv_tokens: Option<usize>,
    /// Tokens per KV cache block.
    pub block_size: usize,
    /// Format the linear weights are re-quantized to; `None` keeps the file's.
    pub format: Option<WeightFormat>,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            kv_tokens: None,
            block_size: 16,
            format: None,
        }
    }
}

struct Layer {
    attn_norm: Norm,
    qkv: LinearLayer,
    o: LinearLayer,
    ffn_norm: Norm,
    gate_up: LinearLayer,
    down: LinearLayer,
    k_pool: wgpu::Buffer,
    v_pool: wgpu::Buffer,
}

struct State {
    exec: Executor<StepShape>,
    cache: PagedCache,
}

/// A Llama-family decoder on a device.
pub struct LlamaDecoder<'g> {
    gpu: GpuRef<'g>,
    config: LlamaConfig,
    layers: Vec<Layer>,
    /// The token embedding, read by row gathers; `None` when tied to `lm_head`.
    embedding: Option<LinearLayer>,
    lm_head: LinearLayer,
    final_norm: Norm,
    rope: Rope,
    kv: KvLayout,
    weight_bytes: u64,
    state: Mutex<State>,
}

/// The linear layers of `layers` and then `lm_head`.
fn linears<'a>(
    layers: &'a [Layer],
    lm_head: &'a LinearLayer,
) -> impl Iterator<Item = &'a LinearLayer> {
    layers
        .iter()
        .flat_map(|l| [&l.qkv, &l.o, &l.gate_up, &l.down])
        .chain([lm_head])
}

/// A linear layer of the rows `parts` (name, rows) of `src`, with their biases when given.
fn linear(
    gpu: &Gpu,
    src: &dyn LlamaSource,
    parts: &[(String, usize)],
    biases: Option<&[String]>,
    k: usize,
) -> Result<LinearLayer> {
    let w = src.linear(parts, k)?;
    let bias = match biases {
        Some(names) => {
            let mut b = Vec::new();
            for (name, (_, rows)) in names.iter().zip(parts) {
                b.extend(src.floats(name, *rows)?);
            }
            Some(b)
        }
        None => None,
    };
    LinearLayer::new(gpu, &w, bias.as_deref(), LinearOptions::default())
}

impl<'g> LlamaDecoder<'g> {
    /// Loads the GGUF file at `path` onto `gpu`.
    pub fn from_gguf(
        path: impl AsRef<Path>,
        gpu: &'g Gpu,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::load(path.as_ref(), GpuRef::Borrowed(gpu), options)
    }
}

impl<'g> LlamaDecoder<'g> {
    /// The decoder of `config` with f32 host tensors (Hugging Face names: a safetensors
    /// checkpoint, a test's random model) packed into `format`.
    pub fn from_host(
        gpu: &'g Gpu,
        config: LlamaConfig,
        weights: &LlamaWeights,
        format: WeightFormat,
        options: DecoderOptions,
    ) -> Result<Self> {
        let src = HostSource::new(weights, format);
        Self::new(GpuRef::Borrowed(gpu), config, &src, options)
    }
}

impl<'g> LlamaDecoder<'g> {
    /// The decoder of `config` with the weights of any [`LlamaSource`] (e.g. the random
    /// weights of a benchmark).
    pub fn from_source(
        gpu: &'g Gpu,
        config: LlamaConfig,
        src: &dyn LlamaSource,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::new(GpuRef::Borrowed(gpu), config, src, options)
    }
}

impl LlamaDecoder<'static> {
    /// [`LlamaDecoder::from_source`] on a device the decoder shares ownership of.
    pub fn from_source_shared(
        gpu: Arc<Gpu>,
        config: LlamaConfig,
        src: &dyn LlamaSource,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::new(GpuRef::Shared(gpu), config, src, options)
    }

    /// [`LlamaDecoder::from_gguf`] on a device the decoder shares ownership of (so that it can
    /// move to another thread with it, as a server's worker does).
    pub fn from_gguf_shared(
        path: impl AsRef<Path>,
        gpu: Arc<Gpu>,
        options: DecoderOptions,
    ) -> Result<Self> {
        Self::load(path.as_ref(), GpuRef::Shared(gpu), options)
    }
}

impl<'g> LlamaDecoder<'g> {
    fn load(path: &Path, gpu_ref: GpuRef<'g>, options: DecoderOptions) -> Result<Self> {
        let file = Gguf::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let src = GgufSource::new(
            &file,
            tensor_names(&config).into_iter().map(|(g, h)| (h, g)),
            options.format,
        );
        Self::new(gpu_ref, config, &src, options)
    }

    /// The decoder of `config` with the weights of `src` on the device of `gpu_ref`.
    pub(crate) fn new(
        gpu_ref: GpuRef<'g>,
        config: LlamaConfig,
        src: &dyn LlamaSource,
        options: DecoderOptions,
    ) -> Result<Self> {
        config.validate()?;
        let gpu: &Gpu = &gpu_ref;
        let c = &config;
        let names = super::LlamaNames::default();
        if options.block_size == 0 || options.block_size > 256 {
            return Err(Error::invalid(format!(
                "KV cache block size {} is outside 1..=256",
                options.block_size
            )));
        }
        let kv_tokens = options.kv_tokens.unwrap_or(c.max_context).max(1);
        // One block more than the tokens need: block 0 takes the padding rows.
        let blocks = kv_tokens.div_ceil(options.block_size) + 1;
        let kv = KvLayout {
            block_size: options.block_size,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            blocks,
        };
        let (h, q, kvw, ff) = (
            c.hidden_size,
            c.q_width(),
            c.kv_width(),
            c.intermediate_size,
        );
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            use super::LlamaLinear as L;
            let w = |site: L| names.linear(l, site).weight();
            let b = |site: L| names.linear(l, site).bias();
            let qkv_parts = [(w(L::Q), q), (w(L::K), kvw), (w(L::V), kvw)];
            let qkv_bias = c.attention_bias.then(|| [b(L::Q), b(L::K), b(L::V)]);
            let pool = |what: &str| gpu.storage(&format!("kv {what} layer {l}"), kv.pool_bytes());
            layers.push(Layer {
                attn_norm: Norm::rms(gpu, &src.floats(&names.norm(l, 0), h)?, c.rms_norm_eps)?,
                qkv: linear(gpu, src, &qkv_parts, qkv_bias.as_ref().map(|b| &b[..]), h)?,
                o: linear(gpu, src, &[(w(L::O), h)], None, q)?,
                ffn_norm: Norm::rms(gpu, &src.floats(&names.norm(l, 1), h)?, c.rms_norm_eps)?,
                gate_up: linear(gpu, src, &[(w(L::Gate), ff), (w(L::Up), ff)], None, h)?,
                down: linear(gpu, src, &[(w(L::Down), h)], None, ff)?,
                k_pool: pool("k")?,
                v_pool: pool("v")?,
            });
        }
        let lm_head = if c.tie_word_embeddings {
            linear(gpu, src, &[(names.embedding(), c.vocab_size)], None, h)?
        } else {
            linear(gpu, src, &[(names.lm_head(), c.vocab_size)], None, h)?
        };
        let embedding = match c.tie_word_embeddings {
            true => None,
            false => Some(LinearLayer::new(
                gpu,
                &src.embedding(&names.embedding(), c.vocab_size, h)?,
                None,
                LinearOptions::default(),
            )?),
        };
        let final_norm = Norm::rms(gpu, &src.floats(&names.final_norm(), h)?, c.rms_norm_eps)?;
        let rope = Rope::new(gpu, c.head_dim, c.rope_theta, c.rope_layout)?;
        let weight_bytes = linears(&layers, &lm_head)
            .map(LinearLayer::weight_bytes)
            .sum();
        gpu.check()?;
        Ok(LlamaDecoder {
            gpu: gpu_ref,
            config,
            layers,
            embedding,
            lm_head,
            final_norm,
            rope,
            kv,
            weight_bytes,
            state: Mutex::new(State {
                exec: Executor::new(MAX_PLANS),
                cache: PagedCache::new(options.block_size, blocks)?,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of linear weights one step reads (every layer and the logits).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of keys and values one cached position takes over all layers.
    pub fn kv_bytes_per_token(&self) -> u64 {
        (2 * self.config.num_layers * self.config.kv_width() * 2) as u64
    }

    /// Every linear layer a step multiplies by, in order.
    fn linears(&self) -> impl Iterator<Item = &LinearLayer> {
        linears(&self.layers, &self.lm_head)
    }

    /// Formats of the linear layers, each once.
    pub fn formats(&self) -> Vec<String> {
        let mut f: Vec<String> = self.linears().map(LinearLayer::format_name).collect();
        f.sort();
        f.dedup();
        f
    }

    /// Blocks of the KV cache free now, and in all.
    pub fn cache_blocks(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.cache.free_blocks(), st.cache.capacity_blocks())
    }

    /// Marks `len` positions of the empty sequence `seq` as cached without computing them,
    /// and reserves blocks for `extra` more: for benchmarks, whose step times depend on how
    /// many keys a step reads, not on their values (the positions hold whatever the pool
    /// held).
    pub fn assume_filled(&self, seq: SeqId, len: usize, extra: usize) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.cache.len(seq)? != 0 || len + extra > self.config.max_context {
            return Err(Error::invalid(format!(
                "assume_filled needs an empty sequence and {len} + {extra} positions within \
                 the context of {}",
                self.config.max_context
            )));
        }
        st.cache.reserve(seq, len + extra)?;
        st.cache.advance(seq, len)
    }

    /// The pass of one step of `shape` over `slots`.
    fn plan(&self, gpu: &Gpu, slots: &mut Slots, shape: StepShape) -> Result<Pass> {
        let c = &self.config;
        let t = shape.rows;
        let (h, q, kvw, ff) = (
            c.hidden_size,
            c.q_width(),
            c.kv_width(),
            c.intermediate_size,
        );
        let tokens = slots.buffer(gpu, "step tokens", (t * 4) as u64)?;
        let rows = slots.buffer(gpu, "step rows", (t * 8) as u64)?;
        let tables = slots.buffer(
            gpu,
            "step tables",
            (shape.seqs * shape.table_stride * 4) as u64,
        )?;
        let logit_ids = slots.buffer(gpu, "step logit rows", (shape.logit_rows * 4) as u64)?;
        let x = slots.tensor(gpu, "x", t, h)?;
        let x2 = slots.tensor(gpu, "x2", t, h)?;
        let hn = slots.tensor(gpu, "normed", t, h)?;
        let qkv = slots.tensor(gpu, "qkv", t, q + 2 * kvw)?;
        let qr = slots.tensor(gpu, "q", t, q)?;
        let att = slots.tensor(gpu, "attention", t, q)?;
        let o = slots.tensor(gpu, "projected", t, h)?;
        let gu = slots.tensor(gpu, "gate_up", t, 2 * ff)?;
        let act = slots.tensor(gpu, "swiglu", t, ff)?;
        let picked = slots.tensor(gpu, "picked", shape.logit_rows, h)?;
        let picked_n = slots.tensor(gpu, "picked normed", shape.logit_rows, h)?;
        let logits = slots.tensor(gpu, "logits", shape.logit_rows, c.vocab_size)?;
        let scratch_bytes =
            ops::paged_scratch_bytes(t, c.num_heads, c.head_dim, shape.context).max(16);
        let att_scratch = slots.buffer(gpu, "attention partials", scratch_bytes)?;
        let mut d = Vec::new();
        d.extend(
            self.embedding
                .as_ref()
                .unwrap_or(&self.lm_head)
                .plan_gather(gpu, &tokens, &x)?,
        );
        // The residual stream alternates between `x` and `x2`: each norm also writes the sum
        // of the stream and the projection before it (one pass instead of an add and a norm).
        for (l, layer) in self.layers.iter().enumerate() {
            match l {
                0 => d.push(layer.attn_norm.plan(gpu, &x, None, &hn)?),
                _ => d.push(layer.attn_norm.plan_sum(gpu, &x2, &o, &x, &hn)?),
            }
            d.extend(layer.qkv.plan(gpu, &hn, &qkv)?);
            d.push(ops::kv_append(
                gpu,
                &qkv,
                &rows,
                &tables,
                shape.table_stride,
                c.num_heads,
                &self.kv,
                &self.rope,
                &qr,
                &layer.k_pool,
                &layer.v_pool,
            )?);
            d.extend(ops::paged_attention(
                gpu,
                &qr,
                &rows,
                &tables,
                shape.table_stride,
                &self.kv,
                c.num_heads,
                shape.context,
                &layer.k_pool,
                &layer.v_pool,
                Some(&att_scratch),
                &att,
            )?);
            d.extend(layer.o.plan(gpu, &att, &o)?);
            d.push(layer.ffn_norm.plan_sum(gpu, &x, &o, &x2, &hn)?);
            d.extend(layer.gate_up.plan(gpu, &hn, &gu)?);
            d.push(ops::swiglu(gpu, &gu, &act)?);
            d.extend(layer.down.plan(gpu, &act, &o)?);
        }
        d.push(ops::elementwise(gpu, None, &x2, Some(&o), &x)?);
        d.push(ops::select_rows(gpu, &x, &logit_ids, &picked)?);
        d.push(self.final_norm.plan(gpu, &picked, None, &picked_n)?);
        d.extend(self.lm_head.plan(gpu, &picked_n, &logits)?);
        let output = if shape.argmax {
            let best = slots.tensor(gpu, "argmax", shape.logit_rows, 1)?;
            d.push(ops::argmax_rows(gpu, &logits, &best)?);
            best
        } else {
            logits
        };
        Ok(Pass {
            steps: vec![Step::Compute(d)],
            inputs: vec![tokens, rows, tables, logit_ids],
            outputs: vec![output],
        })
    }
}

impl CausalLm for LlamaDecoder<'_> {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn max_context(&self) -> usize {
        self.config.max_context
    }

    fn open(&self) -> SeqId {
        self.state.lock().unwrap().cache.open()
    }

    fn close(&self, seq: SeqId) {
        self.state.lock().unwrap().cache.close(seq)
    }

    fn len(&self, seq: SeqId) -> Result<usize> {
        self.state.lock().unwrap().cache.len(seq)
    }

    fn truncate(&self, seq: SeqId, len: usize) -> Result<()> {
        self.state.lock().unwrap().cache.truncate(seq, len)
    }

    fn cache_usage(&self) -> CacheUsage {
        let st = self.state.lock().unwrap();
        CacheUsage {
            block_size: st.cache.block_size(),
            free_blocks: st.cache.free_blocks(),
            total_blocks: st.cache.capacity_blocks(),
        }
    }

    fn blocks_needed(&self, seq: SeqId, extra: usize) -> Result<usize> {
        self.state.lock().unwrap().cache.blocks_needed(seq, extra)
    }

    fn step(&self, chunks: &[Chunk<'_>]) -> Result<StepOutput> {
        let started = Instant::now();
        let gpu: &Gpu = &self.gpu;
        gpu.check()?;
        let (vocab, max_context) = (self.config.vocab_size, self.config.max_context);
        let mut st = self.state.lock().unwrap();
        let State { exec, cache } = &mut *st;
        decode::check(chunks, cache, vocab, max_context)?;
        let wants: Vec<(SeqId, usize)> = chunks.iter().map(|c| (c.seq, c.tokens.len())).collect();
        cache.reserve_all(&wants)?;
        let layout = StepLayout::new(chunks, cache, vocab, max_context)?;
        let shape = layout.shape;
        exec.prepare(gpu, &shape, |gpu, slots| self.plan(gpu, slots, shape))?;
        let inputs: [&[u8]; 4] = [
            bytemuck::cast_slice(&layout.tokens),
            bytemuck::cast_slice(&layout.rows),
            bytemuck::cast_slice(&layout.tables),
            bytemuck::cast_slice(&layout.logit_ids),
        ];
        let submitted = exec.submit(gpu, &shape, &inputs)?;
        let to_submit = started.elapsed().as_secs_f64();
        // A decode step is followed by one of the same shape: record it while the GPU works
        // (off the critical path while the GPU takes longer than the recording).
        if chunks.iter().all(|c| c.tokens.len() == 1) {
            exec.prerecord(gpu, &shape)?;
        }
        let (readout, reader) = submitted.read(gpu)?;
        exec.recycle(reader);
        for c in chunks {
            cache.advance(c.seq, c.tokens.len())?;
        }
        let mut rows = readout.tensors.into_iter().next().unwrap_or_default();
        let real = layout.real_logits();
        let (mut logits, mut argmax) = (Vec::new(), Vec::new());
        if shape.argmax {
            argmax = rows[..real].iter().map(|v| v.to_bits()).collect();
        } else {
            rows.truncate(real * vocab);
            let mut at = rows.chunks(vocab);
            for (c, &n) in chunks.iter().zip(&layout.logits_per_chunk) {
                for row in at.by_ref().take(n) {
                    match c.logits {
                        LogitRows::LastArgmax => argmax.push(sampling::argmax(row)?),
                        _ => logits.push(row.to_vec()),
                    }
                }
            }
        }
        Ok(StepOutput {
            logits,
            argmax,
            gpu_seconds: readout.gpu_seconds,
            host_seconds: to_submit + readout.copy_seconds,
        })
    }
}
