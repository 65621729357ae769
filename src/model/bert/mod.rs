//! A BERT-style encoder (post-LayerNorm transformer) on the GPU, from Hugging Face tensor
//! names (with or without the `bert.` prefix), to pooled, optionally normalised sentence
//! vectors. Q, K and V are fused into one `3H × H` linear layer so that each layer runs
//! eight dispatches: QKV, attention, output projection, add+LayerNorm, FFN in, activation,
//! FFN out, add+LayerNorm.

use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::Gpu;
use crate::matmul::{KernelChoice, LayerWeights};
use crate::model::Plan;
use crate::model::arena::Arena;
use crate::model::config::{Activation, BertConfig};
use crate::model::dense::Dense;
use crate::model::loader::{Store, WeightFile, quantizer};
use crate::model::ops::{self, Norm, Table};
use crate::model::reference::{BertLayerWeights, BertWeights};

struct Layer {
    qkv: Dense,
    out: Dense,
    ln1: Norm,
    ffn_in: Dense,
    ffn_out: Dense,
    ln2: Norm,
}

/// The encoder's parameters on the device.
pub struct Bert {
    /// Its configuration.
    pub config: BertConfig,
    act: Activation,
    /// Whether a row's result must not depend on the batch around it (a forced kernel, as
    /// the data-parallel scheduler asks): attention then keeps one layout whatever the
    /// batch, since its key split (chosen by grid size) changes the summation order.
    batch_independent: bool,
    word: Table,
    pos: Table,
    types: Table,
    emb_ln: Norm,
    layers: Vec<Layer>,
}

/// Tensor names of a BERT checkpoint.
pub struct Names {
    prefix: String,
}

impl Names {
    /// Detects the prefix (`bert.` or none) from the word embeddings' name.
    pub fn detect(file: &WeightFile) -> Self {
        let prefix = if !file.contains("embeddings.word_embeddings.weight")
            && file.contains("bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        Names {
            prefix: prefix.into(),
        }
    }

    /// Full name of `rest`.
    pub fn get(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Full name of `rest` in layer `l`.
    pub fn layer(&self, l: usize, rest: &str) -> String {
        format!("{}encoder.layer.{l}.{rest}", self.prefix)
    }

    /// The fused QKV weight of layer `l` (only in files sparq wrote).
    pub fn qkv(&self, l: usize) -> String {
        self.layer(l, "attention.self.qkv.weight")
    }
}

/// Reads the fused `3H × H` QKV weight and bias of layer `l`: as stored, or the three float
/// matrices stacked and stored through `store`.
pub fn qkv_weights(
    file: &WeightFile,
    names: &Names,
    l: usize,
    h: usize,
    store: &mut Store<'_>,
) -> Result<(LayerWeights, Vec<f32>)> {
    let fused = names.qkv(l);
    let bias_name = names.layer(l, "attention.self.qkv.bias");
    if file.contains(&fused) {
        let w = file.matrix_with(&fused, 3 * h, h, store)?;
        return Ok((w, file.floats(&bias_name, &[3 * h])?));
    }
    let mut w = Vec::with_capacity(3 * h * h);
    let mut b = Vec::with_capacity(3 * h);
    for part in ["query", "key", "value"] {
        w.extend(file.floats(
            &names.layer(l, &format!("attention.self.{part}.weight")),
            &[h, h],
        )?);
        b.extend(file.floats(
            &names.layer(l, &format!("attention.self.{part}.bias")),
            &[h],
        )?);
    }
    Ok((store(&fused, &w, 3 * h, h)?, b))
}

fn norm(gpu: &Gpu, file: &WeightFile, name: &str, h: usize, eps: f64) -> Result<Norm> {
    // Old checkpoints call LayerNorm's parameters gamma and beta.
    let (g, b) =
        if file.contains(&format!("{name}.weight")) || !file.contains(&format!("{name}.gamma")) {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
    Norm::layer(
        gpu,
        &file.floats(&format!("{name}.{g}"), &[h])?,
        &file.floats(&format!("{name}.{b}"), &[h])?,
        eps,
    )
}

fn dense(
    gpu: &Gpu,
    file: &WeightFile,
    name: &str,
    n: usize,
    k: usize,
    (format, kernel): (WeightFormat, KernelChoice),
) -> Result<Dense> {
    let w = file.matrix(&format!("{name}.weight"), n, k, format)?;
    let b = file.floats(&format!("{name}.bias"), &[n])?;
    Dense::new(gpu, &w, Some(&b), kernel)
}

impl Bert {
    /// Uploads the encoder of `file`, linear weights in `format` (packed tensors as stored),
    /// planned with `kernel`.
    pub fn load(
        gpu: &Gpu,
        file: &WeightFile,
        config: BertConfig,
        format: WeightFormat,
        kernel: KernelChoice,
    ) -> Result<Self> {
        config.validate()?;
        let names = Names::detect(file);
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let table = |rest: &str, rows: usize| -> Result<Table> {
            let name = names.get(rest);
            Table::new(gpu, &name, &file.floats(&name, &[rows, h])?, rows, h)
        };
        let word = table("embeddings.word_embeddings.weight", config.vocab_size)?;
        let pos = table(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings,
        )?;
        let types = table(
            "embeddings.token_type_embeddings.weight",
            config.type_vocab_size,
        )?;
        let emb_ln = norm(gpu, file, &names.get("embeddings.LayerNorm"), h, eps)?;
        let act = config.activation()?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let (qkv_w, qkv_b) = qkv_weights(file, &names, l, h, &mut quantizer(format))?;
            let mut ffn_in = dense(
                gpu,
                file,
                &names.layer(l, "intermediate.dense"),
                i,
                h,
                (format, kernel),
            )?;
            ffn_in.fuse_activation(act);
            layers.push(Layer {
                qkv: Dense::new(gpu, &qkv_w, Some(&qkv_b), kernel)?,
                out: dense(
                    gpu,
                    file,
                    &names.layer(l, "attention.output.dense"),
                    h,
                    h,
                    (format, kernel),
                )?,
                ln1: norm(
                    gpu,
                    file,
                    &names.layer(l, "attention.output.LayerNorm"),
                    h,
                    eps,
                )?,
                ffn_in,
                ffn_out: dense(
                    gpu,
                    file,
                    &names.layer(l, "output.dense"),
                    h,
                    i,
                    (format, kernel),
                )?,
                ln2: norm(gpu, file, &names.layer(l, "output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert {
            act,
            batch_independent: matches!(kernel, KernelChoice::Force(_)),
            config,
            word,
            pos,
            types,
            emb_ln,
            layers,
        })
    }

    /// Bytes of parameters on the device.
    pub fn weight_bytes(&self) -> u64 {
        let tables = [&self.word, &self.pos, &self.types]
            .iter()
            .map(|t| (t.rows * t.cols * 4) as u64)
            .sum::<u64>();
        tables
            + self
                .layers
                .iter()
                .map(|l| {
                    l.qkv.weight_bytes()
                        + l.out.weight_bytes()
                        + l.ffn_in.weight_bytes()
                        + l.ffn_out.weight_bytes()
                })
                .sum::<u64>()
    }

    /// Every linear layer, in order.
    pub fn linear_layers(&self) -> Vec<&Dense> {
        self.layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.out, &l.ffn_in, &l.ffn_out])
            .collect()
    }

    /// Checks token ids and types against the vocabulary and sequence lengths.
    pub fn check_tokens(&self, ids: &[Vec<u32>], types: Option<&[Vec<u32>]>) -> Result<()> {
        let c = &self.config;
        if ids.is_empty() {
            return Err(Error::Invalid("empty batch".into()));
        }
        if let Some(t) = types
            && t.len() != ids.len()
        {
            return Err(Error::Shape(format!(
                "{} sequences of token ids but {} of token types",
                ids.len(),
                t.len()
            )));
        }
        for (s, seq) in ids.iter().enumerate() {
            if seq.is_empty() {
                return Err(Error::Invalid(format!("sequence {s} is empty")));
            }
            if seq.len() > c.max_position_embeddings {
                return Err(Error::Shape(format!(
                    "sequence {s} has {} tokens, the model takes at most {}",
                    seq.len(),
                    c.max_position_embeddings
                )));
            }
            if let Some(&id) = seq.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(Error::Invalid(format!(
                    "sequence {s}: token id {id} is outside the vocabulary of {}",
                    c.vocab_size
                )));
            }
            if let Some(t) = types {
                if t[s].len() != seq.len() {
                    return Err(Error::Shape(format!(
                        "sequence {s}: {} token types for {} tokens",
                        t[s].len(),
                        seq.len()
                    )));
                }
                if let Some(&ty) = t[s].iter().find(|&&ty| ty as usize >= c.type_vocab_size) {
                    return Err(Error::Invalid(format!(
                        "sequence {s}: token type {ty} is outside the {} types",
                        c.type_vocab_size
                    )));
                }
            }
        }
        Ok(())
    }

    /// Plans a forward pass of `batch` sequences padded to `seq` tokens.
    pub fn plan(&self, gpu: &Gpu, arena: &mut Arena, batch: usize, seq: usize) -> Result<Plan> {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let rows = batch * seq;
        let tokens = arena.buffer(gpu, "tokens", (rows * 16) as u64)?;
        let x = arena.tensor(gpu, "hidden", rows, h)?;
        let a = arena.tensor(gpu, "hidden_mid", rows, h)?;
        let qkv = arena.tensor(gpu, "qkv", rows, 3 * h)?;
        let ctx = arena.tensor(gpu, "context", rows, h)?;
        let proj = arena.tensor(gpu, "projection", rows, h)?;
        let f1 = arena.tensor(gpu, "ffn", rows, i)?;
        let f2 = arena.tensor(gpu, "ffn_act", rows, i)?;
        let out = arena.tensor(gpu, "pooled", batch, h)?;
        let scratch_bytes = self
            .layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.out, &l.ffn_in, &l.ffn_out])
            .map(|d| d.scratch_bytes(rows))
            .max()
            .unwrap_or(0);
        let scratch = match scratch_bytes {
            0 => None,
            b => Some(arena.buffer(gpu, "dense_weights", b)?),
        };
        let s = scratch.as_ref();
        let mut d = vec![
            ops::embed(
                gpu,
                &tokens,
                &self.word,
                Some(&self.pos),
                Some(&self.types),
                &proj,
            )?,
            self.emb_ln.plan(gpu, &proj, None, &x)?,
        ];
        let heads = self.config.num_attention_heads;
        for l in &self.layers {
            d.extend(l.qkv.plan_in(gpu, &x, &qkv, s)?);
            d.push(if self.batch_independent {
                let layout = ops::AttentionLayout { split: 1, qpi: 1 };
                ops::attention_with(gpu, &qkv, &tokens, seq, heads, &ctx, layout)?
            } else {
                ops::attention(gpu, &qkv, &tokens, seq, heads, &ctx)?
            });
            d.extend(l.out.plan_in(gpu, &ctx, &proj, s)?);
            d.push(l.ln1.plan(gpu, &proj, Some(&x), &a)?);
            if l.ffn_in.activates() {
                d.extend(l.ffn_in.plan_in(gpu, &a, &f2, s)?);
            } else {
                d.extend(l.ffn_in.plan_in(gpu, &a, &f1, s)?);
                d.push(ops::elementwise(gpu, Some(self.act), &f1, None, &f2)?);
            }
            d.extend(l.ffn_out.plan_in(gpu, &f2, &proj, s)?);
            d.push(l.ln2.plan(gpu, &proj, Some(&a), &x)?);
        }
        d.push(ops::pool(
            gpu,
            &x,
            Some(&tokens),
            seq,
            self.config.pooling,
            self.config.normalize,
            &out,
        )?);
        Ok(Plan {
            dispatches: d,
            input: tokens,
            outputs: vec![out],
        })
    }
}

/// Reads every BERT weight of `file` to the host, linear weights as `format` would store them
/// (dequantized): the input of [`crate::model::reference::bert`].
pub fn host_weights(
    file: &WeightFile,
    c: &BertConfig,
    format: WeightFormat,
) -> Result<BertWeights> {
    let names = Names::detect(file);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let vec = |name: String, shape: &[usize]| file.floats(&name, shape);
    let lin = |name: String, n: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            file.matrix(&format!("{name}.weight"), n, k, format)?
                .dequantize(),
            vec(format!("{name}.bias"), &[n])?,
        ))
    };
    let ln = |name: String| -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            vec(format!("{name}.weight"), &[h])?,
            vec(format!("{name}.bias"), &[h])?,
        ))
    };
    let mut layers = Vec::new();
    for l in 0..c.num_hidden_layers {
        let (qw, qb) = qkv_weights(file, &names, l, h, &mut quantizer(format))?;
        layers.push(BertLayerWeights {
            qkv: (qw.dequantize(), qb),
            out: lin(names.layer(l, "attention.output.dense"), h, h)?,
            ln1: ln(names.layer(l, "attention.output.LayerNorm"))?,
            ffn_in: lin(names.layer(l, "intermediate.dense"), i, h)?,
            ffn_out: lin(names.layer(l, "output.dense"), h, i)?,
            ln2: ln(names.layer(l, "output.LayerNorm"))?,
        });
    }
    Ok(BertWeights {
        word: vec(
            names.get("embeddings.word_embeddings.weight"),
            &[c.vocab_size, h],
        )?,
        pos: vec(
            names.get("embeddings.position_embeddings.weight"),
            &[c.max_position_embeddings, h],
        )?,
        types: vec(
            names.get("embeddings.token_type_embeddings.weight"),
            &[c.type_vocab_size, h],
        )?,
        emb_ln: ln(names.get("embeddings.LayerNorm"))?,
        layers,
    })
}

/// Every linear weight of a BERT checkpoint with its packed replacement name (Q, K and V
/// fused), stored through `store` (weights the file already holds packed stay as they are);
/// the other tensors as f32. What `sparq pack` writes.
#[allow(clippy::type_complexity)]
pub fn pack(
    file: &WeightFile,
    c: &BertConfig,
    store: &mut Store<'_>,
) -> Result<(
    Vec<(String, Vec<usize>, Vec<f32>)>,
    Vec<(String, LayerWeights)>,
)> {
    let names = Names::detect(file);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut floats = Vec::new();
    let mut packed = Vec::new();
    let float = |name: String, shape: Vec<usize>| -> Result<(String, Vec<usize>, Vec<f32>)> {
        let v = file.floats(&name, &shape)?;
        Ok((name, shape, v))
    };
    floats.push(float(
        names.get("embeddings.word_embeddings.weight"),
        vec![c.vocab_size, h],
    )?);
    floats.push(float(
        names.get("embeddings.position_embeddings.weight"),
        vec![c.max_position_embeddings, h],
    )?);
    floats.push(float(
        names.get("embeddings.token_type_embeddings.weight"),
        vec![c.type_vocab_size, h],
    )?);
    floats.push(float(names.get("embeddings.LayerNorm.weight"), vec![h])?);
    floats.push(float(names.get("embeddings.LayerNorm.bias"), vec![h])?);
    for l in 0..c.num_hidden_layers {
        let (qw, qb) = qkv_weights(file, &names, l, h, store)?;
        packed.push((names.qkv(l), qw));
        floats.push((names.layer(l, "attention.self.qkv.bias"), vec![3 * h], qb));
        for (rest, n, k) in [
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            let name = names.layer(l, rest);
            let weight = format!("{name}.weight");
            let w = file.matrix_with(&weight, n, k, store)?;
            packed.push((weight, w));
            floats.push(float(format!("{name}.bias"), vec![n])?);
        }
        for rest in ["attention.output.LayerNorm", "output.LayerNorm"] {
            floats.push(float(names.layer(l, &format!("{rest}.weight")), vec![h])?);
            floats.push(float(names.layer(l, &format!("{rest}.bias")), vec![h])?);
        }
    }
    Ok((floats, packed))
}
