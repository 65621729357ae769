//! Elementwise activation functions: the names configs use, the code the kernels take
//! (`shaders/shared/activation.wgsl`, applied by the elementwise kernel and, fused, by the linear
//! kernels' epilogue); the f64 reference is `model::reference::activate`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// x · Φ(x) with the exact error function (BERT's `gelu`).
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// x · sigmoid(x) (`silu`, `swish`).
    Silu,
}

impl Activation {
    /// Parses the names Hugging Face configs use.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_tanh" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            _ => return Err(Error::config(format!("unknown activation '{s}'"))),
        })
    }

    /// The kernel's code for it (see shaders/shared/activation.wgsl).
    pub fn code(self) -> u32 {
        match self {
            Activation::Relu => 1,
            Activation::Gelu => 2,
            Activation::GeluTanh => 3,
            Activation::Silu => 4,
        }
    }
}
