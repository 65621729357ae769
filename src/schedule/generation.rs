//! Continuous batching of text generation over replicas of one decoder (API stub: the
//! implementation lands with issue 15).
//!
//! Requests wait in one bounded queue; every replica (a [`CausalLm`] on its own device, run
//! by its own thread) pulls from it when its KV cache has room. At every step a replica
//! appends one token to each running sequence and spends what is left of its step budget on
//! prompt chunks of newly admitted ones (chunked prefill), so that running streams keep
//! flowing while new requests join; a sequence that ends, or whose client cancelled, leaves
//! at the next step boundary and its cache blocks are freed. When a step would need more
//! blocks than are free, the most recently admitted sequence is preempted (its blocks freed,
//! its prompt and generated tokens re-prefilled later: the stream it feeds is unchanged). A
//! replica whose device fails is taken out and its sequences re-prefilled on the others.

use crate::error::Result;
use crate::model::decode::CausalLm;
use crate::model::generate::{FinishReason, GenerateParams, Piece};
use crate::model::text::TextCodec;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Limits of a [`GenerationEngine`].
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Sequences a replica runs at once, at most.
    pub max_running: usize,
    /// Requests waiting for admission, at most; beyond it [`GenerationEngine::submit`]
    /// answers [`crate::ServiceError::Overloaded`].
    pub max_waiting: usize,
    /// Token rows per step (decode tokens plus prefill chunks), at most.
    pub step_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_running: 64,
            max_waiting: 256,
            step_tokens: 512,
        }
    }
}

/// One decoder copy the engine runs (one device).
#[derive(Clone)]
pub struct GenerationReplica {
    /// A name for reports and metrics (e.g. [`super::device_name`]).
    pub name: String,
    /// The model.
    pub lm: Arc<dyn CausalLm>,
}

/// What a request hands back, in order: pieces, then exactly one of `Done` or `Failed`.
#[derive(Debug)]
pub enum GenerationEvent {
    /// One generated token and the text it makes final (possibly empty).
    Piece(Piece),
    /// The generation ended.
    Done(GenerationSummary),
    /// The generation failed (a device with no replica left, shutdown past its deadline, a
    /// bug); pieces sent before stay valid.
    Failed(crate::Error),
}

/// A finished generation and its timings (seconds from submission).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationSummary {
    /// Generated tokens (an EOS that ended it included).
    pub tokens: Vec<u32>,
    /// Their text, up to a stop string.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Waiting for admission (the first time).
    pub queue_seconds: f64,
    /// To the first generated token.
    pub first_token_seconds: f64,
    /// To the end.
    pub total_seconds: f64,
    /// Times the sequence was preempted or moved to another replica.
    pub preemptions: u32,
}

/// Receives a request's events on the replica's thread; returns `false` once nobody listens
/// (the request is then cancelled).
pub type EventSink = Box<dyn FnMut(GenerationEvent) -> bool + Send>;

/// A submitted request: dropping it (or [`RequestHandle::cancel`]) cancels the request.
#[derive(Debug)]
pub struct RequestHandle {
    cancelled: Arc<AtomicBool>,
}

impl RequestHandle {
    /// Cancels the request: it leaves its batch at the next step and frees its blocks.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// One replica's state for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStats {
    /// Its name.
    pub name: String,
    /// Why it was taken out, if it was.
    pub failed: Option<String>,
    /// Sequences running on it.
    pub running: usize,
    /// KV cache blocks free.
    pub kv_free_blocks: usize,
    /// KV cache blocks in all.
    pub kv_total_blocks: usize,
    /// Sequences in its last step.
    pub last_step_sequences: usize,
    /// Token rows of its last step.
    pub last_step_tokens: usize,
    /// Steps run.
    pub steps: u64,
}

/// The engine's state for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationStats {
    /// Requests waiting for admission.
    pub waiting: usize,
    /// Requests running.
    pub running: usize,
    /// Per replica.
    pub replicas: Vec<ReplicaStats>,
    /// Prompt tokens prefilled (re-prefills included).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Preemptions (and moves after a failure).
    pub preemptions: u64,
}

/// Continuous batching over replicas of one decoder (see the [module docs](self)).
pub struct GenerationEngine {
    _private: (),
}

impl GenerationEngine {
    /// Starts one thread per replica. `codec` gives text and end-of-generation tokens (as in
    /// [`crate::model::generate::Generator::new`]). Replicas must share vocabulary and context.
    pub fn new(
        replicas: Vec<GenerationReplica>,
        codec: Option<Arc<TextCodec>>,
        config: GenerationConfig,
    ) -> Result<Self> {
        let _ = (replicas, codec, config);
        unimplemented!("issue 15")
    }

    /// Queues a request; its events go to `sink`. Checks the prompt and parameters against
    /// the model (empty prompt, context, sampling settings: input errors) and the queue
    /// (overloaded, shutting down: service errors) before accepting it; an accepted request
    /// always gets its `Done` or `Failed` event.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
        sink: EventSink,
    ) -> Result<RequestHandle> {
        let _ = (prompt, params, sink);
        unimplemented!("issue 15")
    }

    /// [`Self::submit`] with the events in a channel.
    pub fn submit_channel(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
    ) -> Result<(RequestHandle, std::sync::mpsc::Receiver<GenerationEvent>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = self.submit(prompt, params, Box::new(move |e| tx.send(e).is_ok()))?;
        Ok((handle, rx))
    }

    /// Longest sequence (prompt and generated tokens).
    pub fn max_context(&self) -> usize {
        unimplemented!("issue 15")
    }

    /// The state now.
    pub fn stats(&self) -> GenerationStats {
        unimplemented!("issue 15")
    }

    /// Stops accepting requests: [`Self::submit`] answers [`crate::ServiceError::ShuttingDown`].
    pub fn close(&self) {
        unimplemented!("issue 15")
    }

    /// Closes the engine and waits until every accepted request has ended, at most `deadline`;
    /// requests still running then end with `Failed(ShuttingDown)`. Returns whether all had
    /// ended by themselves.
    pub fn drain(&self, deadline: Duration) -> bool {
        let _ = deadline;
        unimplemented!("issue 15")
    }
}
