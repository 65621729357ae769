//! An MLP classifier on the GPU: `Linear → activation → … → Linear` to logits, then softmax
//! to probabilities. Tensors `layers.{i}.weight` (`out × in`) and `layers.{i}.bias`.

use crate::error::InputError;
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::Gpu;
use crate::graph::{Pass, Readout, Signature, Slots};
use crate::linear::{LinearLayer, LinearOptions};
use crate::model::compress::{Floats, Linears};
use crate::model::config::{Architecture, MlpConfig};
use crate::model::loader::{Store, WeightFile};
use crate::model::network::{Family, Network, NeuronCuts, Request, passes, rows_per_pass};
use crate::model::ops;
use crate::model::{Batch, LoadOptions, Output};
use crate::tensor::stride_of;

/// The classifier's layers on the device.
pub struct Mlp {
    /// Its configuration.
    pub config: MlpConfig,
    layers: Vec<LinearLayer>,
}

impl Mlp {
    /// Uploads the layers of `file`, weights in `format` (packed tensors as stored);
    /// `batch_invariant` as in [`crate::model::LoadOptions::batch_invariant`].
    pub fn load(
        gpu: &Gpu,
        file: &WeightFile,
        config: MlpConfig,
        format: WeightFormat,
        batch_invariant: bool,
    ) -> Result<Self> {
        config.validate()?;
        let mut layers = Vec::new();
        for (i, w) in config.sizes.windows(2).enumerate() {
            let (k, n) = (w[0], w[1]);
            let m = file.matrix(&format!("layers.{i}.weight"), n, k, format)?;
            let b = file.floats(&format!("layers.{i}.bias"), &[n])?;
            layers.push(LinearLayer::new(
                gpu,
                &m,
                Some(&b),
                LinearOptions { batch_invariant },
            )?);
        }
        let extra = format!("layers.{}.weight", layers.len());
        if file.contains(&extra) {
            return Err(Error::Input(InputError::BadTensor {
                tensor: extra,
                expected: format!("no such tensor: the config has {} layers", layers.len()),
                found: "an extra layer".into(),
            }));
        }
        // Every layer but the last applies the activation in its epilogue where it can.
        let last = layers.len().saturating_sub(1);
        for l in &mut layers[..last] {
            l.fuse_activation(config.activation);
        }
        Ok(Mlp { config, layers })
    }

    /// Every linear layer, in order.
    pub fn linear_layers(&self) -> Vec<&LinearLayer> {
        self.layers.iter().collect()
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.config.sizes[0]
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        *self.config.sizes.last().expect("validated")
    }

    /// Plans a forward pass of `batch` rows: outputs logits and probabilities.
    pub fn plan(&self, gpu: &Gpu, arena: &mut Slots, batch: usize) -> Result<Pass> {
        let widest = self
            .config
            .sizes
            .iter()
            .map(|&s| stride_of(s))
            .max()
            .unwrap_or(4);
        // Reserve first: views of one slot at different widths must share one buffer.
        for slot in ["mlp_a", "mlp_b", "mlp_c"] {
            arena.reserve(gpu, slot, (batch * widest * 4) as u64)?;
        }
        let input = arena.tensor(gpu, "mlp_input", batch, self.inputs())?;
        let scratch = match self.layers.iter().map(|l| l.scratch_bytes(batch)).max() {
            Some(b) if b > 0 => Some(arena.buffer(gpu, "dense_weights", b)?),
            _ => None,
        };
        let mut d = Vec::new();
        let mut x = crate::model::view(&input);
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            // Outputs alternate between two buffers: a layer that activates in its epilogue
            // hands its own output to the next one.
            let y = arena.tensor(gpu, ["mlp_a", "mlp_c"][i % 2], batch, l.n())?;
            d.extend(l.plan_in(gpu, &x, &y, scratch.as_ref())?);
            x = if i < last && !l.activates() {
                let z = arena.tensor(gpu, "mlp_b", batch, l.n())?;
                d.push(ops::elementwise(
                    gpu,
                    Some(self.config.activation),
                    &y,
                    None,
                    &z,
                )?);
                z
            } else {
                y
            };
        }
        let probs = arena.tensor(gpu, "mlp_probs", batch, self.classes())?;
        d.push(ops::softmax(gpu, &x, &probs)?);
        Ok(Pass::compute(d, input.buffer, vec![x, probs]))
    }
}

/// Every weight of an MLP file stored through `store` (weights the file already holds packed
/// stay as they are), the biases as f32: what `sparq pack` writes.
pub fn pack(
    file: &WeightFile,
    config: &MlpConfig,
    store: &mut Store<'_>,
) -> Result<(Floats, Linears)> {
    config.validate()?;
    let (mut floats, mut packed) = (Vec::new(), Vec::new());
    for (i, w) in config.sizes.windows(2).enumerate() {
        let (k, n) = (w[0], w[1]);
        let name = format!("layers.{i}.weight");
        let weights = file.matrix_with(&name, n, k, store)?;
        packed.push((name, weights));
        let bias = format!("layers.{i}.bias");
        floats.push((bias.clone(), vec![n], file.floats(&bias, &[n])?));
    }
    Ok((floats, packed))
}

impl Network for Mlp {
    fn output_dim(&self) -> usize {
        self.classes()
    }

    fn linear_layers(&self) -> Vec<&LinearLayer> {
        self.layers.iter().collect()
    }

    fn weight_bytes(&self) -> u64 {
        self.layers.iter().map(LinearLayer::weight_bytes).sum()
    }

    fn requests(&self, gpu: &Gpu, batch: &Batch) -> Result<Vec<Request>> {
        let Batch::Features { rows, cols, data } = batch else {
            return Err(Error::invalid(
                "a classifier takes feature rows, not text or tokens",
            ));
        };
        let (rows, cols) = (*rows, *cols);
        self.check_features(rows, cols, data)?;
        let per_pass = rows_per_pass(gpu, 4 * self.widest() as u64, false);
        if per_pass == 0 || rows <= per_pass {
            self.check_pass(gpu, rows)?;
            return Ok(vec![self.request(rows, cols, data)]);
        }
        Ok(passes(rows, per_pass)
            .into_iter()
            .map(|r| self.request(r.len(), cols, &data[r.start * cols..r.end * cols]))
            .collect())
    }

    fn plan(&self, gpu: &Gpu, slots: &mut Slots, signature: Signature) -> Result<Pass> {
        Mlp::plan(self, gpu, slots, signature.batch)
    }

    fn output(&self, rows: usize, readout: Readout) -> Result<Output> {
        self.output_of(rows, readout)
    }
}

impl Mlp {
    /// Refuses a pass of `rows` rows whose buffers one storage binding of `gpu` cannot hold,
    /// before anything is allocated.
    fn check_pass(&self, gpu: &Gpu, rows: usize) -> Result<()> {
        let what = format!("a pass of {rows} feature rows: the widest layer's activations");
        gpu.check_tensor(&what, &[rows, self.widest()], 4)?;
        Ok(())
    }

    /// Floats a row takes in the widest layer's activations.
    fn widest(&self) -> usize {
        self.config
            .sizes
            .iter()
            .map(|&s| stride_of(s))
            .max()
            .unwrap_or(4)
    }

    /// Refuses feature rows that are empty, do not fit the classifier, or are not finite.
    fn check_features(&self, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
        if rows == 0 {
            return Err(Error::invalid("empty batch"));
        }
        if cols != self.inputs() || rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::shape(format!(
                "{rows} × {cols} features ({} values) for a classifier of {} inputs",
                data.len(),
                self.inputs()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("feature {i} is {}", data[i])));
        }
        Ok(())
    }

    /// The request of one pass of `rows` checked feature rows of `cols` values (`data`).
    fn request(&self, rows: usize, cols: usize, data: &[f32]) -> Request {
        let s = stride_of(cols);
        let mut padded = vec![0f32; rows * s];
        for r in 0..rows {
            padded[r * s..r * s + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
        }
        Request {
            signature: Signature::new(rows, 0),
            inputs: vec![bytemuck::cast_slice(&padded).to_vec()],
            rows,
        }
    }

    /// The results of a pass of `rows` rows.
    fn output_of(&self, rows: usize, readout: Readout) -> Result<Output> {
        let mut tensors = readout.tensors.into_iter();
        let values = tensors
            .next()
            .ok_or_else(|| Error::invariant("output missing"))?;
        Ok(Output {
            rows,
            cols: self.classes(),
            values,
            probabilities: tensors.next(),
            gpu_seconds: readout.gpu_seconds,
        })
    }
}

impl Family for MlpConfig {
    fn validate(&self) -> Result<()> {
        MlpConfig::validate(self)
    }

    fn load(
        &self,
        gpu: &Gpu,
        file: &WeightFile,
        _dir: &std::path::Path,
        options: LoadOptions,
    ) -> Result<Box<dyn Network>> {
        let mlp = Mlp::load(
            gpu,
            file,
            self.clone(),
            options.format,
            options.batch_invariant,
        )?;
        Ok(Box::new(mlp))
    }

    fn pack(&self, file: &WeightFile, store: &mut Store<'_>) -> Result<(Floats, Linears)> {
        pack(file, self, store)
    }

    fn neuron_cuts(&self, _file: &WeightFile, sparsity: f64) -> Result<NeuronCuts> {
        let hidden: Vec<usize> = self.sizes[1..self.sizes.len() - 1].to_vec();
        let tensors = (0..hidden.len())
            .map(|i| {
                (
                    format!("layers.{i}.weight"),
                    format!("layers.{i}.bias"),
                    format!("layers.{}.weight", i + 1),
                )
            })
            .collect();
        let kept = hidden
            .iter()
            .map(|&h| crate::model::shrink::kept_of(h, sparsity))
            .collect::<Result<Vec<_>>>()?;
        let mut c = self.clone();
        c.sizes[1..1 + kept.len()].copy_from_slice(&kept);
        Ok(NeuronCuts {
            tensors,
            hidden,
            kept,
            arch: Architecture::Mlp(c),
        })
    }
}
