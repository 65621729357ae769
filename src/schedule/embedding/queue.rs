//! What the callers of an [`super::EmbeddingService`] and its batching thread share: the
//! queue behind one lock, and each request's reply.

use super::{EmbedSink, Embedded, EmbeddingConfig, EmbeddingStats};
use crate::error::{Error, Result};
use crate::schedule::{Injection, TokenRow};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A request waiting in the queue or in passes.
pub(super) struct Request {
    pub(super) rows: Vec<TokenRow>,
    pub(super) submitted: Instant,
    pub(super) reply: Reply,
}

/// A request's sink, called exactly once: by [`Reply::send`], or, should the request be
/// dropped unanswered (a bug in the batching thread), with an internal error, so that no
/// caller waits forever.
pub(super) struct Reply {
    pub(super) sink: Option<EmbedSink>,
    pub(super) shared: Arc<Shared>,
}

impl Reply {
    pub(super) fn send(mut self, result: Result<Embedded>) {
        self.deliver(result);
    }

    fn deliver(&mut self, result: Result<Embedded>) {
        let Some(sink) = self.sink.take() else {
            return;
        };
        // A panic in the sink is the caller's and must not end the batching thread.
        if catch_unwind(AssertUnwindSafe(|| sink(result))).is_err() {
            log::warn!("an embedding request's sink panicked");
        }
        // Not under the queue's lock: a reply dropped while unwinding may find it held.
        self.shared.unanswered.fetch_sub(1, Ordering::AcqRel);
        self.shared.answered.notify_all();
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.deliver(Err(Error::panicked(
            "the embedding service dropped the request unanswered",
        )));
    }
}

/// What the callers and the batching thread share, behind one lock.
pub(super) struct Queue {
    pub(super) requests: VecDeque<Request>,
    /// Inputs not yet taken into a pass (the queue and the rest of a split request).
    pub(super) waiting: usize,
    pub(super) closed: bool,
    pub(super) stop: bool,
    pub(super) injections: Vec<(usize, Injection)>,
    pub(super) stats: EmbeddingStats,
}

/// The queue and its wake-ups.
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Wakes the batching thread: a request, a close, a stop.
    pub(super) work: Condvar,
    /// Accepted requests not answered yet.
    pub(super) unanswered: AtomicUsize,
    /// Wakes [`super::EmbeddingService::drain`]: a request was answered (without the lock,
    /// so a waiter also looks again now and then).
    pub(super) answered: Condvar,
    pub(super) config: EmbeddingConfig,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}
