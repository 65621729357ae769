//! Scoped tensor names, in the spirit of candle's `VarBuilder::pp`: an architecture describes
//! where its tensors live once (`root.pp("encoder").pp("layer").pp(3).pp("output")`), and
//! loading, packing and the host reference all resolve names through that one description,
//! so their name lists cannot drift apart. The accessor also carries the file's spellings
//! that vary between checkpoints of one architecture (LayerNorm's `gamma`/`beta`).

use std::fmt::Display;

/// How a checkpoint spells a LayerNorm's scale and shift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NormSpelling {
    /// `weight` and `bias` (today's PyTorch).
    #[default]
    WeightBias,
    /// `gamma` and `beta` (older TensorFlow-converted checkpoints).
    GammaBeta,
}

/// A scope in a checkpoint's tensor names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    path: String,
    norm: NormSpelling,
}

impl Names {
    /// The root scope `prefix` (`""` for none; a trailing `.` is optional).
    pub fn new(prefix: &str) -> Self {
        Names {
            path: prefix.trim_end_matches('.').to_string(),
            norm: NormSpelling::default(),
        }
    }

    /// The same scope with LayerNorm parameters spelled `norm`.
    pub fn with_norm(mut self, norm: NormSpelling) -> Self {
        self.norm = norm;
        self
    }

    /// The sub-scope `part` (a name or a layer index).
    pub fn pp(&self, part: impl Display) -> Self {
        let path = if self.path.is_empty() {
            part.to_string()
        } else {
            format!("{}.{part}", self.path)
        };
        Names {
            path,
            norm: self.norm,
        }
    }

    /// The tensor `leaf` of this scope.
    pub fn get(&self, leaf: &str) -> String {
        self.pp(leaf).path
    }

    /// This scope's `weight` tensor.
    pub fn weight(&self) -> String {
        self.get("weight")
    }

    /// This scope's `bias` tensor.
    pub fn bias(&self) -> String {
        self.get("bias")
    }

    /// The scale of the LayerNorm this scope names, as the file spells it.
    pub fn norm_scale(&self) -> String {
        self.get(match self.norm {
            NormSpelling::WeightBias => "weight",
            NormSpelling::GammaBeta => "gamma",
        })
    }

    /// The shift of the LayerNorm this scope names, as the file spells it.
    pub fn norm_shift(&self) -> String {
        self.get(match self.norm {
            NormSpelling::WeightBias => "bias",
            NormSpelling::GammaBeta => "beta",
        })
    }

    /// The scope's full path (empty at an empty root).
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_join_with_dots_and_spell_norms_once() {
        let root = Names::new("bert.");
        let ln = root
            .pp("encoder")
            .pp("layer")
            .pp(2)
            .pp("output")
            .pp("LayerNorm");
        assert_eq!(
            ln.norm_scale(),
            "bert.encoder.layer.2.output.LayerNorm.weight"
        );
        let old = Names::new("").with_norm(NormSpelling::GammaBeta);
        let ln = old.pp("embeddings").pp("LayerNorm");
        assert_eq!(
            (ln.norm_scale(), ln.norm_shift()),
            (
                "embeddings.LayerNorm.gamma".to_string(),
                "embeddings.LayerNorm.beta".to_string()
            )
        );
        assert_eq!(old.pp("pooler").pp("dense").bias(), "pooler.dense.bias");
    }
}
