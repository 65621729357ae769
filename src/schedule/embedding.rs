//! Dynamic batching of embedding requests over a [`super::Cluster`] (API stub: the
//! implementation lands with issue 15).
//!
//! Requests that arrive within a short window share one forward pass, up to a token budget;
//! a request larger than the budget is split over several passes. The cluster spreads each
//! pass over its devices and re-runs the part of a failed device elsewhere, so an accepted
//! request is answered unless every device has failed.

use crate::error::Result;
use std::time::Duration;

/// Limits of an [`EmbeddingService`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingConfig {
    /// How long the first request of a batch waits for others to join it.
    pub window: Duration,
    /// Tokens (padded: rows × longest row) of one forward pass, at most.
    pub max_batch_tokens: usize,
    /// Inputs waiting, at most; beyond it [`EmbeddingService::submit`] answers
    /// [`crate::ServiceError::Overloaded`].
    pub max_waiting: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            window: Duration::from_millis(2),
            max_batch_tokens: 16384,
            max_waiting: 4096,
        }
    }
}

/// One input of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedInput {
    /// Text, tokenised with the model's tokenizer.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// What a request gets back.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of the inputs (after truncation to the model's length).
    pub prompt_tokens: usize,
    /// Seconds from submission to the first pass that took it.
    pub queue_seconds: f64,
    /// Seconds from submission to the answer.
    pub total_seconds: f64,
}

/// Receives a request's answer, once, on the service's thread.
pub type EmbedSink = Box<dyn FnOnce(Result<Embedded>) + Send>;

/// The service's state for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingStats {
    /// Inputs waiting.
    pub waiting: usize,
    /// Inputs embedded.
    pub embedded: u64,
    /// Tokens embedded.
    pub tokens: u64,
    /// Forward passes run.
    pub batches: u64,
    /// Rows of the last pass.
    pub last_batch_rows: usize,
    /// Devices, and why each that failed was taken out.
    pub devices: Vec<(String, Option<String>)>,
}

/// Dynamic batching over a cluster of one text model (see the [module docs](self)).
pub struct EmbeddingService {
    _private: (),
}

impl EmbeddingService {
    /// Loads the text model at `path` on every device of `gpus` (one replica each, as
    /// [`super::ModelReplica`] does: batch-invariant) and starts the batching thread.
    pub fn open(
        path: &std::path::Path,
        gpus: Vec<std::sync::Arc<crate::Gpu>>,
        options: crate::model::LoadOptions,
        config: EmbeddingConfig,
    ) -> Result<Self> {
        let _ = (path, gpus, options, config);
        unimplemented!("issue 15")
    }

    /// Width of a vector.
    pub fn dimension(&self) -> usize {
        unimplemented!("issue 15")
    }

    /// Longest input in tokens (longer ones are truncated, as `sparq embed` does).
    pub fn max_tokens(&self) -> usize {
        unimplemented!("issue 15")
    }

    /// Queues `inputs` (at least one); the answer goes to `sink`. Input errors (empty input,
    /// a token outside the vocabulary) and service errors (overloaded, shutting down) come
    /// back at once; an accepted request always gets an answer.
    pub fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()> {
        let _ = (inputs, sink);
        unimplemented!("issue 15")
    }

    /// The state now.
    pub fn stats(&self) -> EmbeddingStats {
        unimplemented!("issue 15")
    }

    /// Stops accepting requests: [`Self::submit`] answers [`crate::ServiceError::ShuttingDown`].
    pub fn close(&self) {
        unimplemented!("issue 15")
    }

    /// Closes the service and waits until every accepted request is answered, at most
    /// `deadline`; returns whether all were.
    pub fn drain(&self, deadline: Duration) -> bool {
        let _ = deadline;
        unimplemented!("issue 15")
    }
}
