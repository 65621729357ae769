//! An MLP classifier on the GPU: `Linear → activation → … → Linear` to logits, then softmax
//! to probabilities. Tensors `layers.{i}.weight` (`out × in`) and `layers.{i}.bias`.

use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::Gpu;
use crate::matmul::{KernelChoice, LayerWeights};
use crate::model::Plan;
use crate::model::arena::Arena;
use crate::model::config::MlpConfig;
use crate::model::dense::Dense;
use crate::model::loader::WeightFile;
use crate::model::ops;
use crate::tensor::stride_of;

/// The classifier's layers on the device.
pub struct Mlp {
    /// Its configuration.
    pub config: MlpConfig,
    layers: Vec<Dense>,
}

impl Mlp {
    /// Uploads the layers of `file`, weights in `format` (packed tensors as stored), planned
    /// with `kernel`.
    pub fn load(
        gpu: &Gpu,
        file: &WeightFile,
        config: MlpConfig,
        format: WeightFormat,
        kernel: KernelChoice,
    ) -> Result<Self> {
        config.validate()?;
        let mut layers = Vec::new();
        for (i, w) in config.sizes.windows(2).enumerate() {
            let (k, n) = (w[0], w[1]);
            let m = file.matrix(&format!("layers.{i}.weight"), n, k, format)?;
            let b = file.floats(&format!("layers.{i}.bias"), &[n])?;
            layers.push(Dense::new(gpu, &m, Some(&b), kernel)?);
        }
        let extra = format!("layers.{}.weight", layers.len());
        if file.contains(&extra) {
            return Err(Error::BadTensor {
                tensor: extra,
                expected: format!("no such tensor: the config has {} layers", layers.len()),
                found: "an extra layer".into(),
            });
        }
        // Every layer but the last applies the activation in its epilogue where it can.
        let last = layers.len().saturating_sub(1);
        for l in &mut layers[..last] {
            l.fuse_activation(config.activation);
        }
        Ok(Mlp { config, layers })
    }

    /// Every linear layer, in order.
    pub fn linear_layers(&self) -> Vec<&Dense> {
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
    pub fn plan(&self, gpu: &Gpu, arena: &mut Arena, batch: usize) -> Result<Plan> {
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
        let mut x = super::view(&input);
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
        Ok(Plan {
            dispatches: d,
            input: input.buffer,
            outputs: vec![x, probs],
        })
    }
}

/// Every weight of an MLP file stored through `store` (weights the file already holds packed
/// stay as they are), the biases as f32: what `sparq pack` writes.
#[allow(clippy::type_complexity)]
pub fn pack(
    file: &WeightFile,
    config: &MlpConfig,
    store: &mut crate::model::loader::Store<'_>,
) -> Result<(
    Vec<(String, Vec<usize>, Vec<f32>)>,
    Vec<(String, LayerWeights)>,
)> {
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
