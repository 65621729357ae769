//! Continuous batching of text generation over replicas of one decoder.
//!
//! Requests wait in one bounded queue; every replica (a [`CausalLm`] on its own device, run
//! by its own thread) pulls from it, first come first served, when it has a free running slot
//! ([`GenerationConfig::max_running`]) and its KV cache has the blocks for the request's
//! history on top of what its running sequences still need. At every step a replica appends
//! one token to each running sequence and spends what is left of its step budget
//! ([`GenerationConfig::step_tokens`]) on prompt chunks of newly admitted ones (chunked
//! prefill: a long prompt spans several steps, and only its last chunk reads logits back), so
//! that running streams keep flowing while new requests join; a sequence that ends, or whose
//! client cancelled (its [`RequestHandle`] dropped, its sink returning `false`), leaves at the
//! next step boundary and its cache blocks are freed. When a step would need more blocks than
//! are free, the most recently admitted sequence is preempted: its blocks are freed and it goes
//! back to the front of the queue with its [`crate::model::generate::Decoding`]
//! state, to re-prefill its prompt and generated tokens when admitted again, so the stream it
//! feeds is unchanged. A replica whose device fails (an error
//! [`is_device_fault`](super::is_device_fault) accepts) is taken out and its sequences are
//! re-prefilled on the others; with no replica left, every request ends with
//! [`crate::DeviceError::NoDeviceLeft`].
//!
//! Each sequence's sampling, stop strings and text are the same code as
//! [`crate::model::generate::Generation`]'s, so a request gives the stream that
//! [`crate::model::generate::Generator`] gives for it alone, up to the last bits of logits a
//! batched step computes in another order.

mod queue;
mod replica;

use crate::error::{Error, Result, ServiceError};
use crate::model::decode::CausalLm;
use crate::model::generate::{Decoding, FinishReason, GenerateParams, Piece, validate_request};
use crate::model::text::TextCodec;
use queue::{Request, Shared, State};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Continuous batching over replicas of one decoder (see the [module docs](self)). Dropping
/// it ends what still runs after a short drain and stops its threads.
pub struct GenerationEngine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The first replica's model, for checking requests.
    lm: Arc<dyn CausalLm>,
    /// Positions the largest cache holds (a request needing more could never be admitted).
    cache_tokens: usize,
}

/// How long dropping an engine lets running requests finish.
const DROP_DRAIN: Duration = Duration::from_millis(100);
/// How long a drain waits, past its deadline, for replicas to end what they run (a step in
/// flight finishes first).
const ABORT_GRACE: Duration = Duration::from_secs(30);

impl GenerationEngine {
    /// Starts one thread per replica. `codec` gives text and end-of-generation tokens (as in
    /// [`crate::model::generate::Generator::new`]). Replicas must share vocabulary and context.
    pub fn new(
        replicas: Vec<GenerationReplica>,
        codec: Option<Arc<TextCodec>>,
        config: GenerationConfig,
    ) -> Result<Self> {
        let first = replicas
            .first()
            .ok_or_else(|| Error::invalid("a generation engine needs at least one replica"))?
            .lm
            .clone();
        for r in &replicas {
            if r.lm.vocab_size() != first.vocab_size() || r.lm.max_context() != first.max_context()
            {
                return Err(Error::invalid(format!(
                    "replica {} has a vocabulary of {} and a context of {}, the first {} and {}",
                    r.name,
                    r.lm.vocab_size(),
                    r.lm.max_context(),
                    first.vocab_size(),
                    first.max_context()
                )));
            }
        }
        if config.max_running == 0 || config.step_tokens == 0 {
            return Err(Error::invalid(
                "max_running and step_tokens must be at least 1",
            ));
        }
        let cache_tokens = replicas
            .iter()
            .map(|r| {
                let u = r.lm.cache_usage();
                u.total_blocks * u.block_size
            })
            .max()
            .unwrap_or(0);
        let stats = replicas
            .iter()
            .map(|r| {
                let u = r.lm.cache_usage();
                ReplicaStats {
                    name: r.name.clone(),
                    failed: None,
                    running: 0,
                    kv_free_blocks: u.free_blocks,
                    kv_total_blocks: u.total_blocks,
                    last_step_sequences: 0,
                    last_step_tokens: 0,
                    steps: 0,
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                abort: false,
                stop: false,
                open: 0,
                live: replicas.len(),
                dead: None,
                replicas: stats,
                prompt_tokens: 0,
                generated_tokens: 0,
                preemptions: 0,
            }),
            work: Condvar::new(),
            ended: Condvar::new(),
            codec,
            config,
        });
        let mut engine = GenerationEngine {
            shared: shared.clone(),
            threads: Vec::new(),
            lm: first,
            cache_tokens,
        };
        for (i, r) in replicas.into_iter().enumerate() {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sparq-generate-{i}"))
                .spawn(move || replica::run(shared, i, r.lm))
                .map_err(|e| Error::invariant(format!("could not start a replica thread: {e}")))?;
            engine.threads.push(thread);
        }
        Ok(engine)
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
        validate_request(&*self.lm, &prompt, &params)?;
        let positions = prompt.len() + params.max_tokens;
        if positions > self.cache_tokens {
            return Err(Error::invalid(format!(
                "{} prompt tokens + max_tokens {} exceed the KV cache of {} positions",
                prompt.len(),
                params.max_tokens,
                self.cache_tokens
            )));
        }
        let dec = Decoding::new(&prompt, &params)?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut st = self.shared.lock();
        if st.closed {
            return Err(Error::Service(ServiceError::ShuttingDown));
        }
        if let Some(e) = &st.dead {
            return Err(e.clone());
        }
        let limit = self.shared.config.max_waiting;
        if st.queue.len() >= limit {
            return Err(Error::Service(ServiceError::Overloaded {
                waiting: st.queue.len(),
                limit,
                retry_after_s: 1,
            }));
        }
        st.queue.push_back(Request {
            dec,
            sink,
            cancelled: cancelled.clone(),
            submitted: Instant::now(),
            queue_seconds: None,
            first_token_seconds: None,
            preemptions: 0,
        });
        st.open += 1;
        drop(st);
        self.shared.work.notify_all();
        Ok(RequestHandle { cancelled })
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
        self.lm.max_context()
    }

    /// The state now.
    pub fn stats(&self) -> GenerationStats {
        let st = self.shared.lock();
        GenerationStats {
            waiting: st.queue.len(),
            running: st.replicas.iter().map(|r| r.running).sum(),
            replicas: st.replicas.clone(),
            prompt_tokens: st.prompt_tokens,
            generated_tokens: st.generated_tokens,
            preemptions: st.preemptions,
        }
    }

    /// Stops accepting requests: [`Self::submit`] answers [`crate::ServiceError::ShuttingDown`].
    pub fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Closes the engine and waits until every accepted request has ended, at most `deadline`;
    /// requests still running then end with `Failed(ShuttingDown)`. Returns whether all had
    /// ended by themselves.
    pub fn drain(&self, deadline: Duration) -> bool {
        self.close();
        if self.wait_ended(Instant::now() + deadline) {
            return true;
        }
        let mut st = self.shared.lock();
        st.abort = true;
        let waiting: Vec<Request> = st.queue.drain(..).collect();
        drop(st);
        self.shared.work.notify_all();
        for r in waiting {
            let e = Error::Service(ServiceError::ShuttingDown);
            self.shared.end(r, GenerationEvent::Failed(e));
        }
        // Replicas end their sequences at their next step boundary.
        self.wait_ended(Instant::now() + ABORT_GRACE);
        false
    }

    /// Waits until no accepted request is open, at most until `until`; whether none is.
    fn wait_ended(&self, until: Instant) -> bool {
        let mut st = self.shared.lock();
        while st.open > 0 {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            st = match self.shared.ended.wait_timeout(st, until - now) {
                Ok((st, _)) => st,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for GenerationEngine {
    fn drop(&mut self) {
        self.drain(DROP_DRAIN);
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
