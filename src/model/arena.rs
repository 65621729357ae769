//! The intermediate buffers of a forward pass: the graph's scratch [`crate::graph::Slots`]
//! under the name the model code has always used.

pub use crate::graph::Slots as Arena;
