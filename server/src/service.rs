//! What the server needs from the services it drives, as traits: the library's
//! [`EmbeddingService`] and [`GenerationEngine`] implement them by forwarding, and tests
//! implement them with fakes.

use sparq::Result;
use sparq::model::generate::GenerateParams;
use sparq::model::text::{ChatMessage, TextCodec};
use sparq::schedule::embedding::{EmbedInput, EmbedSink, EmbeddingService, EmbeddingStats};
use sparq::schedule::generation::{EventSink, GenerationEngine, GenerationStats};
use std::sync::Arc;
use std::time::Duration;

/// Dropping it cancels a submitted generation (the library's `RequestHandle`, boxed, so that
/// fakes can hand back their own).
pub type CancelGuard = Box<dyn Send + Sync>;

/// A text-embedding service (dynamic batching).
pub trait Embedder: Send + Sync + 'static {
    /// Width of a vector.
    fn dimension(&self) -> usize;
    /// Longest input in tokens.
    fn max_tokens(&self) -> usize;
    /// Queues `inputs`; the answer goes to `sink` exactly once if this returns `Ok`.
    fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()>;
    /// The state now, for metrics.
    fn stats(&self) -> EmbeddingStats;
    /// Stops accepting requests.
    fn close(&self);
    /// Waits until every accepted request is answered, at most `deadline`.
    fn drain(&self, deadline: Duration) -> bool;
}

/// A text-generation service (continuous batching) with its tokenizer.
pub trait TextGenerator: Send + Sync + 'static {
    /// The prompt ids of plain text (BOS as the model wants it).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The prompt ids of a conversation through the model's chat template, with the
    /// assistant's turn opened.
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>>;
    /// Queues a request; events go to `sink`; dropping the guard cancels it.
    fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
        sink: EventSink,
    ) -> Result<CancelGuard>;
    /// Longest sequence (prompt and generated tokens).
    fn max_context(&self) -> usize;
    /// The state now, for metrics.
    fn stats(&self) -> GenerationStats;
    /// Stops accepting requests.
    fn close(&self);
    /// Waits until every accepted request has ended, at most `deadline`.
    fn drain(&self, deadline: Duration) -> bool;
    /// Whether generated tokens come with text. A model without (random weights served for
    /// a benchmark, with a borrowed tokenizer for prompts only) streams one empty chunk per
    /// token, so that clients can still time each one.
    fn detokenizes(&self) -> bool {
        true
    }
}

impl Embedder for EmbeddingService {
    fn dimension(&self) -> usize {
        EmbeddingService::dimension(self)
    }
    fn max_tokens(&self) -> usize {
        EmbeddingService::max_tokens(self)
    }
    fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()> {
        EmbeddingService::submit(self, inputs, sink)
    }
    fn stats(&self) -> EmbeddingStats {
        EmbeddingService::stats(self)
    }
    fn close(&self) {
        EmbeddingService::close(self)
    }
    fn drain(&self, deadline: Duration) -> bool {
        EmbeddingService::drain(self, deadline)
    }
}

/// A [`GenerationEngine`] with the text codec of its model.
pub struct EngineGenerator {
    engine: GenerationEngine,
    codec: Arc<TextCodec>,
    detokenizes: bool,
}

impl EngineGenerator {
    /// Serves `engine`, tokenising with `codec` (the one the engine was built with).
    pub fn new(engine: GenerationEngine, codec: Arc<TextCodec>) -> Self {
        EngineGenerator {
            engine,
            codec,
            detokenizes: true,
        }
    }

    /// Serves `engine`, built without a codec (its tokens have no text), tokenising prompts
    /// with `codec`, whose ids must be within the model's vocabulary.
    pub fn tokens_only(engine: GenerationEngine, codec: Arc<TextCodec>) -> Self {
        EngineGenerator {
            engine,
            codec,
            detokenizes: false,
        }
    }
}

impl TextGenerator for EngineGenerator {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // Control tokens a client writes are text, as llama-server treats completions.
        self.codec.encode(text, false)
    }
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.codec.encode_chat(messages, true)
    }
    fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
        sink: EventSink,
    ) -> Result<CancelGuard> {
        Ok(Box::new(self.engine.submit(prompt, params, sink)?))
    }
    fn max_context(&self) -> usize {
        self.engine.max_context()
    }
    fn stats(&self) -> GenerationStats {
        self.engine.stats()
    }
    fn close(&self) {
        self.engine.close()
    }
    fn drain(&self, deadline: Duration) -> bool {
        self.engine.drain(deadline)
    }
    fn detokenizes(&self) -> bool {
        self.detokenizes
    }
}
