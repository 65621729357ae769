//! The CPU reference decoder of the Llama family: f32 weights, every activation and sum in
//! f64, one token at a time or a whole chunk at once over a [`KvCache`]. It is the oracle the
//! GPU decoder's logits, greedy tokens and perplexity are checked against, so it is written
//! for clarity, not speed.
//!
//! RoPE frequencies are computed in f64 (`theta^(-2i/d)`); Hugging Face and llama.cpp compute
//! them in f32, which moves angles by about `position · 1e-7` radians: far below the error
//! bounds of an f32/f16 GPU decoder, but not bit-equal to either.

use super::weights::{LlamaLinear, LlamaNames};
use super::{LlamaConfig, RopeLayout};
use crate::error::{Error, InputError, Result};
use crate::model::config::Activation;
use crate::model::reference::activate;
use std::collections::HashMap;

/// Weights as plain host tensors: name → (shape, row-major f32 values). Whatever reads a file
/// (GGUF, safetensors) dequantizes into this.
pub type LlamaWeights = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// What [`Reference::observe`] calls with the inputs of each linear layer: the layer, the
/// site, and the input rows (one per token).
pub type Observer<'a> = dyn FnMut(usize, LlamaLinear, &[Vec<f64>]) + 'a;

/// RMSNorm of `x` scaled by `w`: `w · x / sqrt(mean(x²) + eps)`.
pub fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * inv * g as f64).collect()
}

/// Rotates one head `x` (`head_dim` components) to position `pos`: pair `i` (of
/// `head_dim / 2`) turns by `pos · theta^(-2i / head_dim)` radians; `layout` says which two
/// components form pair `i`.
pub fn rope(x: &mut [f64], pos: usize, theta: f64, layout: RopeLayout) {
    let d = x.len();
    let half = d / 2;
    for i in 0..half {
        let angle = pos as f64 * theta.powf(-2.0 * i as f64 / d as f64);
        let (sin, cos) = angle.sin_cos();
        let (a, b) = match layout {
            RopeLayout::HalfSplit => (i, i + half),
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        };
        let (xa, xb) = (x[a], x[b]);
        x[a] = xa * cos - xb * sin;
        x[b] = xb * cos + xa * sin;
    }
}

/// `ln softmax(logits)`, stable for large logits.
pub fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    logits.iter().map(|v| v - lse).collect()
}

/// Keys and values of every layer for the positions decoded so far (after RoPE), appended
/// as tokens are decoded.
#[derive(Clone, Debug)]
pub struct KvCache {
    width: usize,
    len: usize,
    keys: Vec<Vec<f64>>,
    values: Vec<Vec<f64>>,
}

impl KvCache {
    /// An empty cache for a model of configuration `c`.
    pub fn new(c: &LlamaConfig) -> Self {
        KvCache {
            width: c.kv_width(),
            len: 0,
            keys: vec![Vec::new(); c.num_layers],
            values: vec![Vec::new(); c.num_layers],
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position (a new sequence).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps the first `len` positions (no-op when it holds fewer): rewinds to a shared
    /// prefix, e.g. to re-decode from a point.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        let n = self.len * self.width;
        for kv in self.keys.iter_mut().chain(self.values.iter_mut()) {
            kv.truncate(n);
        }
    }
}

/// One linear layer: `y = W x (+ b)`, `W` row-major `n × k`.
#[derive(Clone, Debug)]
struct Linear {
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    k: usize,
}

impl Linear {
    fn apply(&self, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        product(&self.w, self.b.as_deref(), self.k, xs)
    }
}

/// `W x (+ b)` for each row `x` of `xs`, `W` row-major with `k` columns. Each weight row is
/// widened once and used for every token of the chunk, so a prompt reads the weights once,
/// not once per token (the reference must stay usable on real models).
fn product(w: &[f32], b: Option<&[f32]>, k: usize, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = w.len() / k;
    let mut out = vec![vec![0.0; n]; xs.len()];
    let mut wide = vec![0.0f64; k];
    for (r, row) in w.chunks(k).enumerate() {
        wide.iter_mut().zip(row).for_each(|(a, &v)| *a = v as f64);
        let bias = b.map_or(0.0, |b| b[r] as f64);
        for (x, o) in xs.iter().zip(out.iter_mut()) {
            o[r] = wide.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + bias;
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// Indexed like [`LlamaLinear::ALL`].
    linears: Vec<Linear>,
}

impl Layer {
    fn linear(&self, site: LlamaLinear) -> &Linear {
        // `ALL` lists the variants in declaration order.
        &self.linears[site as usize]
    }
}

/// The reference decoder: a validated configuration and its weights.
#[derive(Clone, Debug)]
pub struct Reference {
    config: LlamaConfig,
    embedding: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    /// `None` when the logits reuse the embedding.
    lm_head: Option<Vec<f32>>,
}

impl Reference {
    /// Checks `config` and takes the tensors it needs from `weights` (Hugging Face names,
    /// see [`LlamaNames`]); a missing tensor or one of the wrong shape is an error. Tensors
    /// it does not need are ignored.
    pub fn new(config: LlamaConfig, mut weights: LlamaWeights) -> Result<Self> {
        config.validate()?;
        let names = LlamaNames::default();
        let mut take = |name: String, shape: &[usize]| -> Result<Vec<f32>> {
            let expected = format!("f32 {shape:?}");
            let Some((found, data)) = weights.remove(&name) else {
                return Err(InputError::MissingTensor {
                    tensor: name,
                    expected,
                }
                .into());
            };
            let elements = found.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if found != shape || elements != Some(data.len()) {
                return Err(InputError::BadTensor {
                    tensor: name,
                    expected,
                    found: format!("{found:?} with {} values", data.len()),
                }
                .into());
            }
            Ok(data)
        };
        let (vocab, h) = (config.vocab_size, config.hidden_size);
        let embedding = take(names.embedding(), &[vocab, h])?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let attn_norm = take(names.norm(l, 0), &[h])?;
            let ffn_norm = take(names.norm(l, 1), &[h])?;
            let mut linears = Vec::with_capacity(LlamaLinear::ALL.len());
            for site in LlamaLinear::ALL {
                let (n, k) = site.shape(&config);
                let scope = names.linear(l, site);
                let w = take(scope.weight(), &[n, k])?;
                let b = if site.has_bias(&config) {
                    Some(take(scope.bias(), &[n])?)
                } else {
                    None
                };
                linears.push(Linear { w, b, k });
            }
            layers.push(Layer {
                attn_norm,
                ffn_norm,
                linears,
            });
        }
        let final_norm = take(names.final_norm(), &[h])?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(take(names.lm_head(), &[vocab, h])?)
        };
        Ok(Reference {
            config,
            embedding,
            layers,
            final_norm,
            lm_head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// Decodes `tokens` after the positions already in `cache` (appending theirs) and returns
    /// the logits of the last token.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f64>> {
        let mut all = self.run(tokens, cache, false, None)?;
        all.pop()
            .ok_or_else(|| Error::invariant("a non-empty chunk gave no logits"))
    }

    /// As [`Reference::forward`], with the logits of every token of `tokens` (row `i`
    /// predicts the token after `tokens[i]`).
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<Vec<f64>>> {
        self.run(tokens, cache, true, None)
    }

    /// Prefills `tokens` from an empty context, showing `observer` the inputs of every
    /// linear layer (layer, site, one row per token) as they are computed: the calibration
    /// inputs of GPTQ and SparseGPT.
    pub fn observe(&self, tokens: &[u32], observer: &mut Observer<'_>) -> Result<()> {
        self.run(tokens, &mut self.new_cache(), false, Some(observer))
            .map(|_| ())
    }

    /// Perplexity of `tokens` from an empty context: `exp` of the mean negative
    /// log-likelihood of tokens `1..` given those before them.
    pub fn perplexity(&self, tokens: &[u32]) -> Result<f64> {
        if tokens.len() < 2 {
            return Err(Error::invalid(
                "perplexity needs at least two tokens (one to predict)",
            ));
        }
        let logits = self.forward_all(tokens, &mut self.new_cache())?;
        let nll: f64 = logits
            .iter()
            .zip(&tokens[1..])
            .map(|(row, &t)| -log_softmax(row)[t as usize])
            .sum();
        Ok((nll / (tokens.len() - 1) as f64).exp())
    }

    fn check(&self, tokens: &[u32], cache: &KvCache) -> Result<()> {
        let c = &self.config;
        if cache.keys.len() != c.num_layers || cache.width != c.kv_width() {
            return Err(Error::invalid(format!(
                "KV cache of {} layers × {} is not for this model ({} layers × {})",
                cache.keys.len(),
                cache.width,
                c.num_layers,
                c.kv_width()
            )));
        }
        if tokens.is_empty() {
            return Err(Error::invalid("no tokens to decode"));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::invalid(format!(
                "token {t} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        if cache.len + tokens.len() > c.max_context {
            return Err(Error::invalid(format!(
                "{} cached + {} new tokens exceed the context of {}",
                cache.len,
                tokens.len(),
                c.max_context
            )));
        }
        Ok(())
    }

    /// The whole chunk goes through each layer before the next (as a GPU prefill does), so
    /// comparing against token-by-token decoding tests the cache and the causal mask.
    fn run(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        mut observer: Option<&mut Observer<'_>>,
    ) -> Result<Vec<Vec<f64>>> {
        let mut seen = |l: usize, sites: &[LlamaLinear], x: &[Vec<f64>]| {
            if let Some(o) = observer.as_mut() {
                sites.iter().for_each(|&s| o(l, s, x));
            }
        };
        self.check(tokens, cache)?;
        let c = &self.config;
        let (h, d) = (c.hidden_size, c.head_dim);
        let base = cache.len;
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                let row = &self.embedding[t as usize * h..(t as usize + 1) * h];
                row.iter().map(|&v| v as f64).collect()
            })
            .collect();
        for (l, layer) in self.layers.iter().enumerate() {
            let a: Vec<Vec<f64>> = x
                .iter()
                .map(|xi| rms_norm(xi, &layer.attn_norm, c.rms_norm_eps))
                .collect();
            seen(l, &[LlamaLinear::Q, LlamaLinear::K, LlamaLinear::V], &a);
            let mut q = layer.linear(LlamaLinear::Q).apply(&a);
            let mut k = layer.linear(LlamaLinear::K).apply(&a);
            let v = layer.linear(LlamaLinear::V).apply(&a);
            for (i, (qi, ki)) in q.iter_mut().zip(&mut k).enumerate() {
                for head in qi.chunks_mut(d).chain(ki.chunks_mut(d)) {
                    rope(head, base + i, c.rope_theta, c.rope_layout);
                }
            }
            k.iter().for_each(|ki| cache.keys[l].extend(ki));
            v.iter().for_each(|vi| cache.values[l].extend(vi));
            let att: Vec<Vec<f64>> = q
                .iter()
                .enumerate()
                .map(|(i, qi)| self.attend(qi, &cache.keys[l], &cache.values[l], base + i + 1))
                .collect();
            seen(l, &[LlamaLinear::O], &att);
            let o = layer.linear(LlamaLinear::O).apply(&att);
            add(&mut x, &o);
            let f: Vec<Vec<f64>> = x
                .iter()
                .map(|xi| rms_norm(xi, &layer.ffn_norm, c.rms_norm_eps))
                .collect();
            seen(l, &[LlamaLinear::Gate, LlamaLinear::Up], &f);
            let gate = layer.linear(LlamaLinear::Gate).apply(&f);
            let up = layer.linear(LlamaLinear::Up).apply(&f);
            let act: Vec<Vec<f64>> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| {
                    g.iter()
                        .zip(u)
                        .map(|(&g, u)| activate(Activation::Silu, g) * u)
                        .collect()
                })
                .collect();
            seen(l, &[LlamaLinear::Down], &act);
            let down = layer.linear(LlamaLinear::Down).apply(&act);
            add(&mut x, &down);
        }
        cache.len = base + tokens.len();
        let first = if all { 0 } else { tokens.len() - 1 };
        let head = self.lm_head.as_deref().unwrap_or(&self.embedding);
        let n: Vec<Vec<f64>> = x[first..]
            .iter()
            .map(|xi| rms_norm(xi, &self.final_norm, c.rms_norm_eps))
            .collect();
        Ok(product(head, None, h, &n))
    }

    /// Causal grouped-query attention of one token's queries `q` over the first `positions`
    /// cached keys and values: query head `j` reads key/value head `j / group_size`.
    fn attend(&self, q: &[f64], keys: &[f64], values: &[f64], positions: usize) -> Vec<f64> {
        let c = &self.config;
        let (d, w, group) = (c.head_dim, c.kv_width(), c.group_size());
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0; c.q_width()];
        for (j, (qh, oh)) in q.chunks(d).zip(out.chunks_mut(d)).enumerate() {
            let off = j / group * d;
            let scores: Vec<f64> = (0..positions)
                .map(|t| {
                    let k = &keys[t * w + off..t * w + off + d];
                    qh.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (t, p) in e.iter().enumerate() {
                let v = &values[t * w + off..t * w + off + d];
                oh.iter_mut().zip(v).for_each(|(o, v)| *o += p / sum * v);
            }
        }
        out
    }
}

/// `x += y`, row by row (a residual).
fn add(x: &mut [Vec<f64>], y: &[Vec<f64>]) {
    for (xi, yi) in x.iter_mut().zip(y) {
        xi.iter_mut().zip(yi).for_each(|(a, b)| *a += b);
    }
}
