//! One replica's thread: admits waiting requests, builds each step (a token per decoding
//! sequence, then prompt chunks), preempts when the cache is short, and hands the results to
//! each sequence's [`Decoding`](crate::model::generate::Decoding).

use super::GenerationEvent;
use super::queue::{Request, Shared};
use crate::error::{DeviceError, Error, ServiceError};
use crate::model::decode::{CausalLm, Chunk, LogitRows};
use crate::model::generate::{NextToken, PREFILL_CHUNK};
use crate::model::kv::SeqId;
use std::sync::Arc;
use std::time::Duration;

/// A sequence on this replica.
struct Running {
    req: Request,
    seq: SeqId,
    /// Positions of the history in the cache.
    cached: usize,
    /// Its prompt (or re-prefill) is done: it takes one token per step.
    prefilled: bool,
    /// A step or its sampling failed for this sequence alone.
    failed: Option<Error>,
}

impl Running {
    fn remaining(&self) -> usize {
        self.req.dec.history().len() - self.cached
    }
}

/// One chunk of the step being built.
struct Planned {
    idx: usize,
    n: usize,
    want: LogitRows,
    decode: bool,
}

/// How an idle replica waits for work (also bounds how late it sees a shutdown).
const IDLE_WAIT: Duration = Duration::from_millis(50);

pub(super) fn run(shared: Arc<Shared>, index: usize, lm: Arc<dyn CausalLm>) {
    let mut running: Vec<Running> = Vec::new();
    let budget = shared.config.step_tokens.max(1);
    let max_running = shared.config.max_running.clamp(1, budget);
    loop {
        // The step boundary: sequences that ended, failed or were cancelled leave.
        let mut ended: Vec<(Request, Option<GenerationEvent>)> = Vec::new();
        let mut i = 0;
        while i < running.len() {
            let r = &mut running[i];
            let event = if let Some(e) = r.failed.take() {
                Some(Some(GenerationEvent::Failed(e)))
            } else if r.req.dec.finish_reason().is_some() {
                Some(None)
            } else if r.req.is_cancelled() {
                Some(Some(cancelled()))
            } else {
                None
            };
            match event {
                Some(ev) => {
                    let r = running.remove(i);
                    lm.close(r.seq);
                    ended.push((r.req, ev));
                }
                None => i += 1,
            }
        }
        let exit = {
            let mut st = shared.lock();
            if st.abort {
                for r in running.drain(..) {
                    lm.close(r.seq);
                    let e = Error::Service(ServiceError::ShuttingDown);
                    ended.push((r.req, Some(GenerationEvent::Failed(e))));
                }
            } else {
                admit(&mut st, &*lm, &mut running, max_running, &mut ended);
            }
            let usage = lm.cache_usage();
            let stats = &mut st.replicas[index];
            stats.running = running.len();
            stats.kv_free_blocks = usage.free_blocks;
            stats.kv_total_blocks = usage.total_blocks;
            match (running.is_empty(), st.stop) {
                (false, _) => false,
                (true, true) => true,
                (true, false) if ended.is_empty() => {
                    drop(shared.work.wait_timeout(st, IDLE_WAIT));
                    false
                }
                (true, false) => false,
            }
        };
        for (req, ev) in ended {
            match ev {
                Some(ev) => shared.end(req, ev),
                None => shared.finish(req),
            }
        }
        if exit {
            return;
        }
        if running.is_empty() {
            continue;
        }
        let planned = plan_fitting(&shared, &*lm, &mut running, budget);
        let chunks: Vec<Chunk<'_>> = planned
            .iter()
            .map(|p| {
                let r = &running[p.idx];
                Chunk {
                    seq: r.seq,
                    tokens: &r.req.dec.history()[r.cached..r.cached + p.n],
                    logits: p.want,
                }
            })
            .collect();
        let result = lm.step(&chunks);
        drop(chunks);
        let out = match result {
            Ok(out) => out,
            Err(Error::Device(DeviceError::CacheFull { .. })) if running.len() > 1 => {
                // The check before the step should prevent this; make room and go on.
                preempt_last(&shared, &*lm, &mut running);
                continue;
            }
            Err(e) if super::super::is_device_fault(&e) && !cache_full(&e) => {
                fail_replica(&shared, index, &*lm, running, e);
                return;
            }
            Err(e) => {
                // The engine checked every request, so an input error here is a bug of its
                // own: end the step's requests with it rather than retrying forever.
                for p in &planned {
                    running[p.idx].failed = Some(e.clone());
                }
                continue;
            }
        };
        let (mut argmax, mut logits) = (out.argmax.into_iter(), out.logits.into_iter());
        let (mut prompt_tokens, mut generated) = (0u64, 0u64);
        for p in &planned {
            let r = &mut running[p.idx];
            r.cached += p.n;
            if !p.decode {
                prompt_tokens += p.n as u64;
            }
            let next = match p.want {
                LogitRows::None | LogitRows::All => continue,
                LogitRows::LastArgmax => argmax.next().map(NextToken::Argmax),
                LogitRows::Last => logits.next().map(NextToken::Logits),
            };
            let Some(next) = next else {
                r.failed = Some(Error::invariant("a step gave fewer logits than asked"));
                continue;
            };
            r.req.dec.set_next(next);
            match r.req.dec.next_piece(shared.codec.as_deref()) {
                Ok(piece) => {
                    r.prefilled = true;
                    generated += 1;
                    if r.req.first_token_seconds.is_none() {
                        r.req.first_token_seconds = Some(r.req.submitted.elapsed().as_secs_f64());
                    }
                    if !(r.req.sink)(GenerationEvent::Piece(piece)) {
                        r.req
                            .cancelled
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                }
                Err(e) => r.failed = Some(e),
            }
        }
        let mut st = shared.lock();
        st.prompt_tokens += prompt_tokens;
        st.generated_tokens += generated;
        let stats = &mut st.replicas[index];
        stats.steps += 1;
        stats.last_step_sequences = planned.len();
        stats.last_step_tokens = planned.iter().map(|p| p.n).sum();
    }
}

fn cancelled() -> GenerationEvent {
    GenerationEvent::Failed(Error::Service(ServiceError::Cancelled))
}

fn cache_full(e: &Error) -> bool {
    matches!(e, Error::Device(DeviceError::CacheFull { .. }))
}

/// Admits waiting requests first come, first served while the replica has room: a free
/// running slot and blocks for the whole history plus a token, on top of what the running
/// sequences still need for their prompts and next token.
fn admit(
    st: &mut super::queue::State,
    lm: &dyn CausalLm,
    running: &mut Vec<Running>,
    max_running: usize,
    ended: &mut Vec<(Request, Option<GenerationEvent>)>,
) {
    let usage = lm.cache_usage();
    let bs = usage.block_size.max(1);
    let mut reserved: usize = running
        .iter()
        .map(|r| lm.blocks_needed(r.seq, r.remaining() + 1).unwrap_or(0))
        .sum();
    while running.len() < max_running {
        let Some(front) = st.queue.front() else {
            break;
        };
        if front.is_cancelled() || front.dec.finish_reason().is_some() {
            let req = st.queue.pop_front().expect("front exists");
            let ev = req.is_cancelled().then(cancelled);
            ended.push((req, ev));
            continue;
        }
        let need = (front.dec.history().len() + 1).div_ceil(bs);
        if reserved + need > usage.free_blocks {
            break;
        }
        let mut req = st.queue.pop_front().expect("front exists");
        reserved += need;
        if req.queue_seconds.is_none() {
            req.queue_seconds = Some(req.submitted.elapsed().as_secs_f64());
        }
        running.push(Running {
            req,
            seq: lm.open(),
            cached: 0,
            prefilled: false,
            failed: None,
        });
    }
}

/// The step's chunks: one token per decoding sequence, then prompt chunks in admission order
/// with what is left of `budget`.
fn plan(running: &[Running], budget: usize) -> Vec<Planned> {
    let mut left = budget;
    let mut out = Vec::new();
    for (idx, r) in running.iter().enumerate() {
        if r.prefilled && left > 0 {
            let want = r.req.dec.wanted();
            out.push(Planned {
                idx,
                n: 1,
                want,
                decode: true,
            });
            left -= 1;
        }
    }
    for (idx, r) in running.iter().enumerate() {
        if r.prefilled || left == 0 {
            continue;
        }
        let remaining = r.remaining();
        let n = remaining.min(left).min(PREFILL_CHUNK);
        let want = match n == remaining {
            true => r.req.dec.wanted(),
            false => LogitRows::None,
        };
        out.push(Planned {
            idx,
            n,
            want,
            decode: false,
        });
        left -= n;
    }
    out
}

/// [`plan`], preempting the most recently admitted sequences until the step's blocks are free
/// (a sequence alone is stepped anyway: its cache-full error then ends it).
fn plan_fitting(
    shared: &Shared,
    lm: &dyn CausalLm,
    running: &mut Vec<Running>,
    budget: usize,
) -> Vec<Planned> {
    loop {
        let planned = plan(running, budget);
        let need: usize = planned
            .iter()
            .map(|p| lm.blocks_needed(running[p.idx].seq, p.n).unwrap_or(0))
            .sum();
        if need <= lm.cache_usage().free_blocks || running.len() <= 1 {
            return planned;
        }
        preempt_last(shared, lm, running);
    }
}

/// Frees the most recently admitted sequence's blocks and puts it back at the front of the
/// queue; it re-prefills its history when admitted again.
fn preempt_last(shared: &Shared, lm: &dyn CausalLm, running: &mut Vec<Running>) {
    if let Some(r) = running.pop() {
        lm.close(r.seq);
        shared.requeue(vec![r.req]);
    }
}

/// Takes the replica out after a device failure: its sequences go back to the queue for the
/// other replicas, or, with none left, every request ends with the failure.
fn fail_replica(shared: &Shared, index: usize, lm: &dyn CausalLm, running: Vec<Running>, e: Error) {
    for r in &running {
        lm.close(r.seq);
    }
    let reqs: Vec<Request> = running.into_iter().map(|r| r.req).collect();
    let mut st = shared.lock();
    let name = st.replicas[index].name.clone();
    st.replicas[index].failed = Some(e.to_string());
    st.replicas[index].running = 0;
    st.live -= 1;
    if st.live == 0 {
        let err = Error::Device(DeviceError::NoDeviceLeft(format!(
            "the last generation replica, {name}, failed: {e}"
        )));
        st.dead = Some(err.clone());
        let waiting: Vec<Request> = st.queue.drain(..).collect();
        drop(st);
        for r in reqs.into_iter().chain(waiting) {
            shared.end(r, GenerationEvent::Failed(err.clone()));
        }
    } else {
        drop(st);
        shared.requeue(reqs);
    }
}
