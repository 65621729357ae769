//! The engine's shared state: the waiting queue, the counters behind the metrics, and how a
//! request ends (every accepted one exactly once).

use super::{EventSink, GenerationConfig, GenerationEvent, GenerationSummary, ReplicaStats};
use crate::error::{Error, ServiceError};
use crate::model::generate::Decoding;
use crate::model::text::TextCodec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// An accepted request, waiting or running.
pub(super) struct Request {
    pub dec: Decoding,
    pub sink: EventSink,
    pub cancelled: Arc<AtomicBool>,
    pub submitted: Instant,
    /// Set at the first admission.
    pub queue_seconds: Option<f64>,
    pub first_token_seconds: Option<f64>,
    pub preemptions: u32,
}

impl Request {
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub fn summary(&self) -> GenerationSummary {
        let total = self.submitted.elapsed().as_secs_f64();
        GenerationSummary {
            tokens: self.dec.tokens().to_vec(),
            text: self.dec.text().to_string(),
            // Only ended generations are summarised; `Length` covers `max_tokens` 0.
            finish: self
                .dec
                .finish_reason()
                .unwrap_or(crate::model::generate::FinishReason::Length),
            prompt_tokens: self.dec.prompt_len(),
            queue_seconds: self.queue_seconds.unwrap_or(total),
            first_token_seconds: self.first_token_seconds.unwrap_or(total),
            total_seconds: total,
            preemptions: self.preemptions,
        }
    }
}

pub(super) struct State {
    pub queue: VecDeque<Request>,
    /// No new requests.
    pub closed: bool,
    /// The drain deadline passed: end everything with `ShuttingDown`.
    pub abort: bool,
    /// Replica threads exit once they run nothing.
    pub stop: bool,
    /// Accepted requests that have not ended.
    pub open: usize,
    /// Replicas not failed.
    pub live: usize,
    /// Why no replica is left, once none is.
    pub dead: Option<Error>,
    pub replicas: Vec<ReplicaStats>,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub preemptions: u64,
}

pub(super) struct Shared {
    pub state: Mutex<State>,
    /// Wakes idle replicas: a request queued, shutdown.
    pub work: Condvar,
    /// Wakes a drain: a request ended.
    pub ended: Condvar,
    pub codec: Option<Arc<TextCodec>>,
    pub config: GenerationConfig,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a sink must not take the whole engine with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends `req` with `event` (the sink runs outside the lock).
    pub fn end(&self, mut req: Request, event: GenerationEvent) {
        (req.sink)(event);
        self.lock().open -= 1;
        self.ended.notify_all();
    }

    /// Ends `req` with `Done`.
    pub fn finish(&self, req: Request) {
        let summary = req.summary();
        self.end(req, GenerationEvent::Done(summary));
    }

    /// Puts preempted or moved requests (in admission order) back at the front of the queue,
    /// or ends them when the engine is aborting or has no replica left.
    pub fn requeue(&self, reqs: Vec<Request>) {
        if reqs.is_empty() {
            return;
        }
        let mut st = self.lock();
        st.preemptions += reqs.len() as u64;
        let fail = match (&st.dead, st.abort) {
            (Some(e), _) => Some(e.clone()),
            (None, true) => Some(Error::Service(ServiceError::ShuttingDown)),
            (None, false) => None,
        };
        match fail {
            Some(e) => {
                drop(st);
                for mut r in reqs {
                    r.preemptions += 1;
                    self.end(r, GenerationEvent::Failed(e.clone()));
                }
            }
            None => {
                for mut r in reqs.into_iter().rev() {
                    r.preemptions += 1;
                    st.queue.push_front(r);
                }
                drop(st);
                self.work.notify_all();
            }
        }
    }
}
