//! Dynamic batching of embedding requests over a [`super::Cluster`].
//!
//! Requests that arrive while a pass runs (or within an optional window) share the next
//! forward pass, up to a token budget;
//! a request larger than the budget is split over several passes. The cluster spreads each
//! pass over its devices and re-runs the part of a failed device elsewhere, so an accepted
//! request is answered unless every device has failed.
//!
//! - [`EmbeddingService::submit`] tokenises on the caller's thread and checks the input there,
//!   so that a pass can only fail for reasons that are not one request's fault: text is
//!   truncated to [`EmbeddingService::max_tokens`] by the model's tokenizer (as
//!   [`crate::model::Model::forward`] and `sparq embed` do); token arrays go in as they are
//!   (no special tokens added) and are refused, not truncated, when longer than that limit
//!   ([`crate::InputError::Shape`]), as `Model::forward` refuses a
//!   [`crate::model::Batch::Tokens`] row longer than the position table; likewise when empty
//!   or holding an id outside the vocabulary. An empty string is fine (its tokens are the
//!   special ones).
//! - One thread batches: it waits for a first request, then up to
//!   [`EmbeddingConfig::window`] for more (less when the waiting inputs already fill a pass),
//!   and packs inputs first come, first served while rows × longest row ≤
//!   [`EmbeddingConfig::max_batch_tokens`] (a pass takes at least one input, however long).
//!   A request whose inputs do not all fit continues in the next pass, which starts at once;
//!   its vectors are assembled in input order.
//! - The replicas are [`super::TokenReplica`]s loaded with the caller's options. With
//!   `LoadOptions::batch_invariant` a vector does not depend on the pass it shared or the
//!   device split: it equals [`crate::model::Model::forward`] of the input alone, bit for bit,
//!   on a device of the same kind. Without it (what a server runs) each pass takes the fastest
//!   kernels for its shape (tensor cores where the adapter has them), and a vector may differ
//!   from the input alone's in the last bits.
//! - Should a pass still fail with an input error, its requests are re-run one by one so that
//!   only the one at fault gets it. A device error ends the pass only when no device is left;
//!   then every request in it, and every later one, gets that error.
//! - [`EmbeddingService::close`] refuses new requests and lets the queue empty;
//!   [`EmbeddingService::drain`] also waits for it. Dropping the service ends the thread after
//!   the pass in flight; requests still waiting then get
//!   [`crate::ServiceError::ShuttingDown`].

mod batcher;
mod queue;

use super::{Cluster, ClusterConfig, Injection, TokenReplica, TokenRow};
use crate::error::{Error, Result, ServiceError};
use queue::{Queue, Reply, Request, Shared};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Limits of an [`EmbeddingService`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingConfig {
    /// How long the first request of a batch waits for others to join it when the device is
    /// idle. Zero by default: under load requests queue while a pass runs and share the next
    /// anyway, and on the H200 a 2 ms window only added latency (BENCHMARKS.md, issue 15).
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
            window: Duration::ZERO,
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

/// Rows of one micro-batch on one device, at most: small enough that a pass is shared between
/// devices, large enough to keep a GPU busy.
const MICRO_BATCH_ROWS: usize = 64;

/// Dynamic batching over a cluster of one text model (see the [module docs](self)).
pub struct EmbeddingService {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tokenizer: Option<tokenizers::Tokenizer>,
    dimension: usize,
    max_tokens: usize,
    vocab: usize,
    devices: usize,
}

impl EmbeddingService {
    /// Loads the text model at `path` on every device of `gpus` (one replica each, with
    /// `options`: see the [module docs](self) on `batch_invariant`) and starts the batching
    /// thread.
    pub fn open(
        path: &std::path::Path,
        gpus: Vec<std::sync::Arc<crate::Gpu>>,
        options: crate::model::LoadOptions,
        config: EmbeddingConfig,
    ) -> Result<Self> {
        if config.max_batch_tokens == 0 || config.max_waiting == 0 {
            return Err(Error::invalid(
                "max_batch_tokens and max_waiting must be at least 1",
            ));
        }
        let mut cluster = Cluster::new(
            gpus,
            |g| TokenReplica::load(path, g, options.clone(), MICRO_BATCH_ROWS),
            ClusterConfig::default(),
        )?;
        let model = cluster.replica_mut(0).model();
        let crate::model::config::Architecture::Bert(c) = &model.arch else {
            return Err(Error::invalid(format!(
                "{} is not a text encoder: the embedding service needs one",
                path.display()
            )));
        };
        let (vocab, positions) = (c.vocab_size, c.max_position_embeddings);
        let dimension = model.output_dim();
        let tokenizer = model.tokenizer().cloned();
        let max_tokens = tokenizer
            .as_ref()
            .and_then(|t| t.get_truncation().map(|t| t.max_length))
            .unwrap_or(positions)
            .min(positions);
        // Measures the devices (so that the first passes are split by speed; every pass
        // refines it) and builds the plan of a short shape before any request waits on it.
        let short = max_tokens.min(crate::model::SEQ_BUCKET);
        let sample = vec![
            TokenRow {
                ids: vec![0; short],
                types: vec![0; short],
            };
            4
        ];
        cluster.calibrate(&sample)?;
        let names = cluster.names();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                requests: VecDeque::new(),
                waiting: 0,
                closed: false,
                stop: false,
                injections: Vec::new(),
                stats: EmbeddingStats {
                    devices: cluster
                        .names()
                        .into_iter()
                        .zip(cluster.failures())
                        .collect(),
                    ..Default::default()
                },
            }),
            work: Condvar::new(),
            unanswered: AtomicUsize::new(0),
            answered: Condvar::new(),
            config,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sparq-embed-batcher".into())
                .spawn(move || {
                    let ended = catch_unwind(AssertUnwindSafe(|| batcher::run(&shared, cluster)));
                    // After a panic nothing takes requests any more: refuse new ones and
                    // answer those left (their replies hold `shared`: drop them to free it).
                    let left: Vec<Request> = {
                        let mut q = shared.lock();
                        q.closed = true;
                        q.waiting = 0;
                        q.requests.drain(..).collect()
                    };
                    drop(left);
                    if ended.is_err() {
                        log::error!("the embedding service's batching thread panicked");
                    }
                })
                .map_err(|e| Error::invalid(format!("cannot start the batching thread: {e}")))?
        };
        Ok(EmbeddingService {
            shared,
            thread: Some(thread),
            tokenizer,
            dimension,
            max_tokens,
            vocab,
            devices: names.len(),
        })
    }

    /// Width of a vector.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Longest input in tokens (longer ones are truncated, as `sparq embed` does).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Queues `inputs` (at least one); the answer goes to `sink`. Input errors (empty input,
    /// a token outside the vocabulary) and service errors (overloaded, shutting down) come
    /// back at once; an accepted request always gets an answer.
    ///
    /// A request of more inputs than [`EmbeddingConfig::max_waiting`] could never be queued:
    /// it is an input error, not [`ServiceError::Overloaded`].
    pub fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()> {
        let limit = self.shared.config.max_waiting;
        if self.shared.lock().closed {
            return Err(ServiceError::ShuttingDown.into());
        }
        if inputs.is_empty() {
            return Err(Error::invalid("a request needs at least one input"));
        }
        if inputs.len() > limit {
            return Err(Error::invalid(format!(
                "{} inputs in one request; the service queues at most {limit}",
                inputs.len()
            )));
        }
        let rows = self.tokenize(inputs)?;
        let mut q = self.shared.lock();
        if q.closed {
            return Err(ServiceError::ShuttingDown.into());
        }
        if q.waiting + rows.len() > limit {
            return Err(ServiceError::Overloaded {
                waiting: q.waiting,
                limit,
                retry_after_s: 1,
            }
            .into());
        }
        q.waiting += rows.len();
        self.shared.unanswered.fetch_add(1, Ordering::AcqRel);
        q.requests.push_back(Request {
            rows,
            submitted: Instant::now(),
            reply: Reply {
                sink: Some(sink),
                shared: self.shared.clone(),
            },
        });
        drop(q);
        self.shared.work.notify_all();
        Ok(())
    }

    /// The rows of `inputs`, checked: text through the tokenizer (truncating), token arrays
    /// as they are.
    fn tokenize(&self, inputs: Vec<EmbedInput>) -> Result<Vec<TokenRow>> {
        let texts: Vec<String> = inputs
            .iter()
            .filter_map(|i| match i {
                EmbedInput::Text(t) => Some(t.clone()),
                EmbedInput::Tokens(_) => None,
            })
            .collect();
        let mut encoded = if texts.is_empty() {
            Vec::new()
        } else {
            let tok = self
                .tokenizer
                .as_ref()
                .ok_or_else(|| Error::config("the model has no tokenizer.json: pass token ids"))?;
            crate::model::encode(tok, &texts)?
        }
        .into_iter();
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                let row = match input {
                    EmbedInput::Text(_) => {
                        let (ids, types) = encoded
                            .next()
                            .ok_or_else(|| Error::invariant("tokenizer returned too few rows"))?;
                        TokenRow { ids, types }
                    }
                    EmbedInput::Tokens(ids) => TokenRow {
                        types: vec![0; ids.len()],
                        ids,
                    },
                };
                self.check(i, &row)?;
                Ok(row)
            })
            .collect()
    }

    /// Refuses what the model would refuse in a pass, naming input `i`.
    fn check(&self, i: usize, row: &TokenRow) -> Result<()> {
        if row.ids.is_empty() {
            return Err(Error::invalid(format!("input {i} has no tokens")));
        }
        if row.ids.len() > self.max_tokens {
            return Err(Error::shape(format!(
                "input {i} has {} tokens, the model takes at most {}",
                row.ids.len(),
                self.max_tokens
            )));
        }
        if let Some(&id) = row.ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(Error::invalid(format!(
                "input {i}: token id {id} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        Ok(())
    }

    /// The state now.
    pub fn stats(&self) -> EmbeddingStats {
        let q = self.shared.lock();
        EmbeddingStats {
            waiting: q.waiting,
            ..q.stats.clone()
        }
    }

    /// Test hook (fault injection for tests and a server's test mode): attaches `injection`
    /// to device `device` of the cluster, from the next pass on (see
    /// [`Cluster::inject`]).
    pub fn inject(&self, device: usize, injection: Injection) -> Result<()> {
        if device >= self.devices {
            return Err(Error::invalid(format!(
                "device {device} is not in the service's {}",
                self.devices
            )));
        }
        self.shared.lock().injections.push((device, injection));
        Ok(())
    }

    /// Stops accepting requests: [`Self::submit`] answers [`crate::ServiceError::ShuttingDown`].
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }

    /// Closes the service and waits until every accepted request is answered, at most
    /// `deadline`; returns whether all were.
    pub fn drain(&self, deadline: Duration) -> bool {
        self.close();
        let end = Instant::now() + deadline;
        let mut q = self.shared.lock();
        while self.shared.unanswered.load(Ordering::Acquire) > 0 {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            // Replies notify without the lock: a wake-up between the check and the wait is
            // lost, so look again after a short while.
            let nap = (end - now).min(Duration::from_millis(10));
            q = self
                .shared
                .answered
                .wait_timeout(q, nap)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for EmbeddingService {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            q.stop = true;
        }
        self.shared.work.notify_all();
        if let Some(t) = self.thread.take() {
            // A panic of the thread has nothing left to report to.
            let _ = t.join();
        }
    }
}
