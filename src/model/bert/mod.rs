//! A BERT-style encoder (post-LayerNorm transformer) on the GPU, from Hugging Face tensor
//! names (with or without the `bert.` prefix), to pooled, optionally normalised sentence
//! vectors. Q, K and V are fused into one `3H × H` linear layer so that each layer runs
//! eight dispatches: QKV, attention, output projection, add+LayerNorm, FFN in, activation,
//! FFN out, add+LayerNorm.

use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::Gpu;
use crate::graph::{Pass, Readout, Signature, Slots};
use crate::linear::{LinearLayer, LinearOptions};
use crate::model::compress::{Floats, Linears};
use crate::model::config::{Activation, Architecture, BertConfig};
use crate::model::loader::{Store, WeightFile, quantizer};
use crate::model::names::Names;
use crate::model::network::{Family, Network, NeuronCuts, Request, passes, rows_per_pass};
use crate::model::ops::{self, Norm, Table};
use crate::model::reference::LinearSite;
use crate::model::{Batch, LoadOptions, Output};
use crate::tensor::stride_of;

pub mod calibrate;
pub mod weights;

pub use weights::{BertNames, host_weights, pack};

struct Layer {
    qkv: LinearLayer,
    out: LinearLayer,
    ln1: Norm,
    ffn_in: LinearLayer,
    ffn_out: LinearLayer,
    ln2: Norm,
}

/// The encoder's parameters on the device.
pub struct Bert {
    /// Its configuration.
    pub config: BertConfig,
    act: Activation,
    /// Whether a row's result must not depend on the batch around it (as the data-parallel
    /// scheduler asks): attention then keeps one layout whatever the
    /// batch, since its key split (chosen by grid size) changes the summation order.
    batch_independent: bool,
    word: Table,
    pos: Table,
    types: Table,
    emb_ln: Norm,
    layers: Vec<Layer>,
}

/// Uploads LayerNorm `at` of width `h`.
fn norm(gpu: &Gpu, file: &WeightFile, at: &Names, h: usize, eps: f64) -> Result<Norm> {
    let (g, b) = weights::norm_weights(file, at, h)?;
    Norm::layer(gpu, &g, &b, eps)
}

/// Uploads linear `site` of layer `l`, weights in `format`, with `options`.
fn linear(
    gpu: &Gpu,
    file: &WeightFile,
    (c, names, l): (&BertConfig, &BertNames, usize),
    site: LinearSite,
    (format, options): (WeightFormat, LinearOptions),
) -> Result<LinearLayer> {
    let (w, b) = weights::linear_weights(file, c, names, l, site, &mut quantizer(format))?;
    LinearLayer::new(gpu, &w, Some(&b), options)
}

impl Bert {
    /// Uploads the encoder of `file`, linear weights in `format` (packed tensors as stored);
    /// `batch_invariant` as in [`LoadOptions::batch_invariant`].
    pub fn load(
        gpu: &Gpu,
        file: &WeightFile,
        config: BertConfig,
        format: WeightFormat,
        batch_invariant: bool,
    ) -> Result<Self> {
        config.validate()?;
        let names = BertNames::detect(file);
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let table = |which: &str, rows: usize| -> Result<Table> {
            let name = names.embedding(which);
            Table::new(gpu, &name, &file.floats(&name, &[rows, h])?, rows, h)
        };
        let word = table("word", config.vocab_size)?;
        let pos = table("position", config.max_position_embeddings)?;
        let types = table("token_type", config.type_vocab_size)?;
        let emb_ln = norm(gpu, file, &names.embedding_norm(), h, eps)?;
        let act = config.activation()?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let at = (&config, &names, l);
            let opts = (format, LinearOptions { batch_invariant });
            let qkv = linear(gpu, file, at, LinearSite::Qkv, opts)?;
            let mut ffn_in = linear(gpu, file, at, LinearSite::FfnIn, opts)?;
            ffn_in.fuse_activation(act);
            layers.push(Layer {
                qkv,
                out: linear(gpu, file, at, LinearSite::Out, opts)?,
                ln1: norm(gpu, file, &names.norm(l, 0), h, eps)?,
                ffn_in,
                ffn_out: linear(gpu, file, at, LinearSite::FfnOut, opts)?,
                ln2: norm(gpu, file, &names.norm(l, 1), h, eps)?,
            });
        }
        Ok(Bert {
            act,
            batch_independent: batch_invariant,
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
    pub fn linear_layers(&self) -> Vec<&LinearLayer> {
        self.layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.out, &l.ffn_in, &l.ffn_out])
            .collect()
    }

    /// Checks token ids and types against the vocabulary and sequence lengths.
    pub fn check_tokens(&self, ids: &[Vec<u32>], types: Option<&[Vec<u32>]>) -> Result<()> {
        let c = &self.config;
        if ids.is_empty() {
            return Err(Error::invalid("empty batch"));
        }
        if let Some(t) = types
            && t.len() != ids.len()
        {
            return Err(Error::shape(format!(
                "{} sequences of token ids but {} of token types",
                ids.len(),
                t.len()
            )));
        }
        for (s, seq) in ids.iter().enumerate() {
            if seq.is_empty() {
                return Err(Error::invalid(format!("sequence {s} is empty")));
            }
            if seq.len() > c.max_position_embeddings {
                return Err(Error::shape(format!(
                    "sequence {s} has {} tokens, the model takes at most {}",
                    seq.len(),
                    c.max_position_embeddings
                )));
            }
            if let Some(&id) = seq.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(Error::invalid(format!(
                    "sequence {s}: token id {id} is outside the vocabulary of {}",
                    c.vocab_size
                )));
            }
            if let Some(t) = types {
                if t[s].len() != seq.len() {
                    return Err(Error::shape(format!(
                        "sequence {s}: {} token types for {} tokens",
                        t[s].len(),
                        seq.len()
                    )));
                }
                if let Some(&ty) = t[s].iter().find(|&&ty| ty as usize >= c.type_vocab_size) {
                    return Err(Error::invalid(format!(
                        "sequence {s}: token type {ty} is outside the {} types",
                        c.type_vocab_size
                    )));
                }
            }
        }
        Ok(())
    }

    /// Bytes one token takes in the pass's widest buffer (QKV, the FFN's activations, or
    /// its row of the token input): what bounds the sequences of one pass.
    pub fn token_bytes(&self) -> u64 {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        (4 * stride_of(3 * h)).max(4 * stride_of(i)).max(16) as u64
    }

    /// Refuses a pass of `batch` sequences padded to `seq` tokens whose buffers one storage
    /// binding of `gpu` cannot hold (or whose sizes overflow), before anything is allocated.
    pub fn check_pass(&self, gpu: &Gpu, batch: usize, seq: usize) -> Result<()> {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let max = self.config.max_position_embeddings;
        if seq > max {
            return Err(Error::shape(format!(
                "sequences of {seq} tokens: the model takes at most {max}"
            )));
        }
        let what = format!("a pass of {batch} sequences × {seq} tokens");
        gpu.check_tensor(&format!("{what}: token inputs"), &[batch, seq], 16)?;
        gpu.check_tensor(&format!("{what}: QKV"), &[batch, seq, stride_of(3 * h)], 4)?;
        gpu.check_tensor(&format!("{what}: FFN"), &[batch, seq, stride_of(i)], 4)?;
        Ok(())
    }

    /// Plans a forward pass of `batch` sequences padded to `seq` tokens.
    pub fn plan(&self, gpu: &Gpu, arena: &mut Slots, batch: usize, seq: usize) -> Result<Pass> {
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
        let mut d = ops::embed(
            gpu,
            &tokens,
            &self.word,
            Some(&self.pos),
            Some(&self.types),
            &proj,
        )?;
        d.push(self.emb_ln.plan(gpu, &proj, None, &x)?);
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
        Ok(Pass::compute(d, tokens, vec![out]))
    }
}

/// The encoder with its tokenizer: BERT's [`Network`].
struct Encoder {
    bert: Bert,
    tokenizer: Option<tokenizers::Tokenizer>,
    /// What text input meets without a tokenizer (the places looked at).
    missing: Error,
}

impl Encoder {
    /// The request of token `ids` (and `types`): one row `[id, position, type, mask]` per
    /// token, sequences padded to their bucket.
    fn tokens(&self, gpu: &Gpu, ids: &[Vec<u32>], types: Option<&[Vec<u32>]>) -> Result<Request> {
        self.bert.check_tokens(ids, types)?;
        let batch = ids.len();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let seq = crate::model::bucket(longest);
        // Batches padded to a few sizes, so that a server's passes of every size reuse a few
        // recorded plans instead of recording one per row count (rows are independent, so
        // padding changes no real row's result).
        let padded = crate::model::decode::bucket_rows(batch);
        self.bert.check_pass(gpu, padded, seq)?;
        let mut rows = vec![[0u32; 4]; padded * seq];
        for (s, seq_ids) in ids.iter().enumerate() {
            for (p, &id) in seq_ids.iter().enumerate() {
                let ty = types.map_or(0, |t| t[s][p]);
                rows[s * seq + p] = [id, p as u32, ty, 1];
            }
        }
        // A padding row is one unmasked token, so that its softmax and mean stay finite.
        for s in batch..padded {
            rows[s * seq] = [0, 0, 0, 1];
        }
        Ok(Request {
            signature: Signature::new(padded, seq),
            inputs: vec![bytemuck::cast_slice(&rows).to_vec()],
            rows: batch,
        })
    }
}

impl Encoder {
    /// The requests of token `ids` (and `types`): one pass, or as many as the device's
    /// binding limit needs, of consecutive sequences.
    fn split(
        &self,
        gpu: &Gpu,
        ids: &[Vec<u32>],
        types: Option<&[Vec<u32>]>,
    ) -> Result<Vec<Request>> {
        self.bert.check_tokens(ids, types)?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let seq = crate::model::bucket(longest);
        let per_pass = rows_per_pass(gpu, seq as u64 * self.bert.token_bytes(), true);
        if per_pass == 0 {
            // Not even one sequence fits: the error names the buffer and the limit.
            self.bert.check_pass(gpu, 1, seq)?;
        }
        passes(ids.len(), per_pass)
            .into_iter()
            .map(|r| self.tokens(gpu, &ids[r.clone()], types.map(|t| &t[r])))
            .collect()
    }
}

impl Network for Encoder {
    fn output_dim(&self) -> usize {
        self.bert.config.hidden_size
    }

    fn linear_layers(&self) -> Vec<&LinearLayer> {
        self.bert.linear_layers()
    }

    fn weight_bytes(&self) -> u64 {
        self.bert.weight_bytes()
    }

    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.tokenizer.as_ref()
    }

    fn no_tokenizer(&self) -> Error {
        self.missing.clone()
    }

    fn requests(&self, gpu: &Gpu, batch: &Batch) -> Result<Vec<Request>> {
        match batch {
            Batch::Text(texts) => {
                if texts.is_empty() {
                    return Err(Error::invalid("empty batch"));
                }
                let tok = self.tokenizer.as_ref().ok_or_else(|| self.no_tokenizer())?;
                let (ids, types): (Vec<_>, Vec<_>) =
                    crate::model::encode(tok, texts)?.into_iter().unzip();
                self.split(gpu, &ids, Some(&types))
            }
            Batch::Tokens { ids, types } => self.split(gpu, ids, types.as_deref()),
            Batch::Features { .. } => Err(Error::invalid(
                "an encoder takes text or token ids, not feature rows",
            )),
        }
    }

    fn plan(&self, gpu: &Gpu, slots: &mut Slots, signature: Signature) -> Result<Pass> {
        self.bert.plan(gpu, slots, signature.batch, signature.seq)
    }

    fn output(&self, rows: usize, readout: Readout) -> Result<Output> {
        let mut values = readout
            .tensors
            .into_iter()
            .next()
            .ok_or_else(|| Error::invariant("output missing"))?;
        // The padding rows of the batch's bucket come last.
        values.truncate(rows * self.bert.config.hidden_size);
        Ok(Output {
            rows,
            cols: self.bert.config.hidden_size,
            values,
            probabilities: None,
            gpu_seconds: readout.gpu_seconds,
        })
    }

    fn bench_request(&self, gpu: &Gpu, batch: usize, seq: usize) -> Result<Request> {
        self.check_bench(gpu, batch, seq)?;
        self.tokens(gpu, &vec![vec![0u32; seq]; batch], None)
    }

    fn check_bench(&self, gpu: &Gpu, batch: usize, seq: usize) -> Result<()> {
        // Unpadded first, so that padding a hostile number cannot overflow.
        self.bert.check_pass(gpu, batch, seq)?;
        let padded = crate::model::decode::bucket_rows(batch);
        self.bert.check_pass(gpu, padded, crate::model::bucket(seq))
    }
}

impl Family for BertConfig {
    fn validate(&self) -> Result<()> {
        BertConfig::validate(self)
    }

    fn expected_unused(&self, name: &str) -> bool {
        // Hugging Face BERT checkpoints carry the pooler and pre-training heads, which
        // sentence embeddings never run, and the position ids buffer.
        let name = name.strip_prefix("bert.").unwrap_or(name);
        name.starts_with("pooler.") || name.starts_with("cls.") || name == "embeddings.position_ids"
    }

    fn load(
        &self,
        gpu: &Gpu,
        file: &WeightFile,
        dir: &std::path::Path,
        options: LoadOptions,
    ) -> Result<Box<dyn Network>> {
        let bert = Bert::load(
            gpu,
            file,
            self.clone(),
            options.format,
            options.batch_invariant,
        )?;
        let found = crate::model::tokenizer_source::find(file, dir, options.tokenizer.as_deref())?;
        let (tokenizer, missing) = match found {
            Ok(t) => (
                Some(crate::model::for_bert(t, self)?),
                Error::invariant("unused"),
            ),
            Err(e) => (None, e),
        };
        Ok(Box::new(Encoder {
            bert,
            tokenizer,
            missing,
        }))
    }

    fn pack(&self, file: &WeightFile, store: &mut Store<'_>) -> Result<(Floats, Linears)> {
        weights::pack(file, self, store)
    }

    fn neuron_cuts(&self, file: &WeightFile, sparsity: f64) -> Result<NeuronCuts> {
        let names = BertNames::detect(file);
        let layers = self.num_hidden_layers;
        let tensors = (0..layers)
            .map(|l| {
                let ffn_in = names.linear(l, LinearSite::FfnIn);
                (
                    ffn_in.weight(),
                    ffn_in.bias(),
                    names.linear(l, LinearSite::FfnOut).weight(),
                )
            })
            .collect();
        let mut c = self.clone();
        c.intermediate_size = crate::model::shrink::kept_of(self.intermediate_size, sparsity)?;
        Ok(NeuronCuts {
            tensors,
            hidden: vec![self.intermediate_size; layers],
            kept: vec![c.intermediate_size; layers],
            arch: Architecture::Bert(c),
        })
    }

    fn calibrate(
        &self,
        file: &WeightFile,
        dir: &std::path::Path,
        texts: &[String],
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<(
        std::collections::HashMap<String, crate::formats::gptq::Hessian>,
        usize,
    )> {
        let tokens = calibrate::tokenize(&dir.join("tokenizer.json"), self, texts)?;
        let sums = calibrate::bert_hessians(file, self, &tokens, progress)?;
        Ok((sums, tokens.iter().map(|(ids, _)| ids.len()).sum()))
    }
}
