//! Where a Llama-family checkpoint keeps its tensors, said once ([`LlamaNames`], Hugging Face
//! spelling) so that the host reference, and later the GPU loader and packing, read the same
//! list.

use super::LlamaConfig;
use crate::model::names::Names;

/// The linear layers of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LlamaLinear {
    /// Query projection, `num_heads · head_dim × hidden`.
    Q,
    /// Key projection, `num_kv_heads · head_dim × hidden`.
    K,
    /// Value projection, `num_kv_heads · head_dim × hidden`.
    V,
    /// Attention output projection, `hidden × num_heads · head_dim`.
    O,
    /// SwiGLU gate, `intermediate × hidden`.
    Gate,
    /// SwiGLU up projection, `intermediate × hidden`.
    Up,
    /// SwiGLU down projection, `hidden × intermediate`.
    Down,
}

impl LlamaLinear {
    /// Every linear layer of a decoder layer, in the order the forward pass uses them.
    pub const ALL: [LlamaLinear; 7] = [
        LlamaLinear::Q,
        LlamaLinear::K,
        LlamaLinear::V,
        LlamaLinear::O,
        LlamaLinear::Gate,
        LlamaLinear::Up,
        LlamaLinear::Down,
    ];

    /// `(n, k)`: output and input width of this layer under `c`.
    pub fn shape(self, c: &LlamaConfig) -> (usize, usize) {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        match self {
            LlamaLinear::Q => (c.q_width(), h),
            LlamaLinear::K | LlamaLinear::V => (c.kv_width(), h),
            LlamaLinear::O => (h, c.q_width()),
            LlamaLinear::Gate | LlamaLinear::Up => (i, h),
            LlamaLinear::Down => (h, i),
        }
    }

    /// Whether this layer carries a bias under `c` (Q, K and V when `attention_bias`).
    pub fn has_bias(self, c: &LlamaConfig) -> bool {
        c.attention_bias && matches!(self, LlamaLinear::Q | LlamaLinear::K | LlamaLinear::V)
    }
}

/// The tensor names of a Llama-family checkpoint as Hugging Face spells them
/// (`model.layers.{i}.self_attn.q_proj.weight`, ...).
#[derive(Clone, Debug)]
pub struct LlamaNames {
    root: Names,
}

impl Default for LlamaNames {
    fn default() -> Self {
        LlamaNames {
            root: Names::new(""),
        }
    }
}

impl LlamaNames {
    /// The token embedding, `vocab × hidden`.
    pub fn embedding(&self) -> String {
        self.root.pp("model").pp("embed_tokens").weight()
    }

    /// Decoder layer `l`.
    pub fn layer(&self, l: usize) -> Names {
        self.root.pp("model").pp("layers").pp(l)
    }

    /// The linear layer `site` of layer `l` (its `weight`, and `bias` where present).
    pub fn linear(&self, l: usize, site: LlamaLinear) -> Names {
        let layer = self.layer(l);
        match site {
            LlamaLinear::Q => layer.pp("self_attn").pp("q_proj"),
            LlamaLinear::K => layer.pp("self_attn").pp("k_proj"),
            LlamaLinear::V => layer.pp("self_attn").pp("v_proj"),
            LlamaLinear::O => layer.pp("self_attn").pp("o_proj"),
            LlamaLinear::Gate => layer.pp("mlp").pp("gate_proj"),
            LlamaLinear::Up => layer.pp("mlp").pp("up_proj"),
            LlamaLinear::Down => layer.pp("mlp").pp("down_proj"),
        }
    }

    /// The RMSNorm scale before attention (`0`) or before the FFN (`1`) of layer `l`.
    pub fn norm(&self, l: usize, which: usize) -> String {
        let layer = self.layer(l);
        match which {
            0 => layer.pp("input_layernorm").weight(),
            _ => layer.pp("post_attention_layernorm").weight(),
        }
    }

    /// The RMSNorm scale after the last layer.
    pub fn final_norm(&self) -> String {
        self.root.pp("model").pp("norm").weight()
    }

    /// The output projection, `vocab × hidden` (absent when the embedding is tied).
    pub fn lm_head(&self) -> String {
        self.root.pp("lm_head").weight()
    }

    /// Every tensor `c` needs with its shape, in a fixed order: the checklist a loader
    /// verifies a file against.
    pub fn tensors(&self, c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
        let h = c.hidden_size;
        let mut out = vec![(self.embedding(), vec![c.vocab_size, h])];
        for l in 0..c.num_layers {
            out.push((self.norm(l, 0), vec![h]));
            for site in LlamaLinear::ALL {
                let (n, k) = site.shape(c);
                let names = self.linear(l, site);
                out.push((names.weight(), vec![n, k]));
                if site.has_bias(c) {
                    out.push((names.bias(), vec![n]));
                }
            }
            out.push((self.norm(l, 1), vec![h]));
        }
        out.push((self.final_norm(), vec![h]));
        if !c.tie_word_embeddings {
            out.push((self.lm_head(), vec![c.vocab_size, h]));
        }
        out
    }
}

/// Reorders the rows of a Q or K matrix (`heads · head_dim` rows of `cols` values; a bias is
/// `cols = 1`) from Hugging Face's half-split RoPE layout to the interleaved one, as llama.cpp's
/// converter does for Llama GGUF files: within each head, row `s · head_dim/2 + j` moves to
/// row `2j + s`. [`RopeLayout`](super::RopeLayout) `Interleaved` on the result computes what
/// `HalfSplit` computes on the input. `None` when the sizes do not fit together.
pub fn rows_to_interleaved(
    data: &[f32],
    heads: usize,
    head_dim: usize,
    cols: usize,
) -> Option<Vec<f32>> {
    permute_rows(data, heads, head_dim, cols, true)
}

/// The inverse of [`rows_to_interleaved`]: GGUF's Q/K row order back to Hugging Face's.
pub fn rows_to_half_split(
    data: &[f32],
    heads: usize,
    head_dim: usize,
    cols: usize,
) -> Option<Vec<f32>> {
    permute_rows(data, heads, head_dim, cols, false)
}

fn permute_rows(
    data: &[f32],
    heads: usize,
    d: usize,
    cols: usize,
    to_interleaved: bool,
) -> Option<Vec<f32>> {
    let rows = heads.checked_mul(d)?;
    if !d.is_multiple_of(2) || rows.checked_mul(cols)? != data.len() {
        return None;
    }
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..d / 2 {
                let half = h * d + s * d / 2 + j;
                let inter = h * d + 2 * j + s;
                let (from, to) = if to_interleaved {
                    (half, inter)
                } else {
                    (inter, half)
                };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    Some(out)
}
