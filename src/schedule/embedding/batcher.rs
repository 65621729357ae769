//! The batching thread of an [`super::EmbeddingService`]: gathers a pass from the queue, runs
//! it over the cluster, answers the requests it completed.
//!
//! Every accepted request is answered exactly once: it is either in the queue, in the pass
//! being built or run, or the one split request carried to the next pass, and each of those
//! paths ends in [`answer`] (on stop, with [`ServiceError::ShuttingDown`]); a request dropped
//! on any other path (a panic) is answered by its `Reply`'s drop.

use super::Embedded;
use super::queue::{Queue, Request, Shared};
use crate::error::{ErrorKind, Result, ServiceError};
use crate::schedule::{Cluster, TokenReplica, TokenRow};
use std::sync::MutexGuard;
use std::time::Instant;

/// A request some of whose inputs have been taken into passes.
struct Active {
    request: Request,
    /// Inputs taken into passes so far.
    taken: usize,
    vectors: Vec<Vec<f32>>,
    /// Seconds from submission to its first pass.
    queue_seconds: Option<f64>,
}

impl Active {
    fn new(request: Request) -> Self {
        Active {
            vectors: Vec::with_capacity(request.rows.len()),
            request,
            taken: 0,
            queue_seconds: None,
        }
    }

    fn done(&self) -> bool {
        self.vectors.len() == self.request.rows.len()
    }
}

/// One request's share of a pass: its inputs `start..end`.
struct Part {
    active: Active,
    start: usize,
    end: usize,
}

/// The thread's loop, until the service is dropped.
pub(super) fn run(shared: &Shared, mut cluster: Cluster<TokenReplica>) {
    let budget = shared.config.max_batch_tokens;
    // The request split over passes, first in the next one.
    let mut carry: Option<Active> = None;
    loop {
        let mut q = shared.lock();
        if carry.is_none() {
            q = wait_for_work(shared, q, budget);
        }
        if q.stop {
            let mut left: Vec<Active> = carry.take().into_iter().collect();
            left.extend(q.requests.drain(..).map(Active::new));
            q.waiting = 0;
            drop(q);
            for a in left {
                answer(a, Err(ServiceError::ShuttingDown.into()));
            }
            return;
        }
        for (device, injection) in q.injections.drain(..) {
            cluster.inject(device, injection);
        }
        let parts = pack(&mut q, &mut carry, budget);
        drop(q);
        if parts.is_empty() {
            continue;
        }
        let rows: usize = parts.iter().map(|p| p.end - p.start).sum();
        let started = Instant::now();
        let results = run_pass(&mut cluster, &parts);
        let ran = started.elapsed();
        let mut passes = 0;
        let mut finished = Vec::new();
        for (mut part, result) in parts.into_iter().zip(results) {
            match result {
                Ok(vectors) => {
                    passes = 1;
                    part.active.vectors.extend(vectors);
                    if part.active.done() {
                        finished.push((part.active, Ok(())));
                    } else {
                        carry = Some(part.active);
                    }
                }
                Err(e) => finished.push((part.active, Err(e))),
            }
        }
        {
            let mut q = shared.lock();
            q.stats.batches += passes;
            if passes > 0 {
                q.stats.last_batch_rows = rows;
            }
            for (d, f) in q.stats.devices.iter_mut().zip(cluster.failures()) {
                d.1 = f;
            }
            for (a, r) in &finished {
                if r.is_err() {
                    // Inputs of a failed split request that were never taken.
                    q.waiting -= a.request.rows.len() - a.taken;
                } else {
                    q.stats.embedded += a.request.rows.len() as u64;
                    q.stats.tokens += tokens(&a.request.rows) as u64;
                }
            }
        }
        for (a, r) in finished {
            let result = r.map(|()| Embedded {
                prompt_tokens: tokens(&a.request.rows),
                queue_seconds: a.queue_seconds.unwrap_or(0.0),
                total_seconds: a.request.submitted.elapsed().as_secs_f64(),
                vectors: Vec::new(),
            });
            answer(a, result);
        }
        // Where a pass's time goes, for `RUST_LOG=sparq::schedule::embedding=debug`.
        log::debug!(
            "pass of {rows} rows: cluster {:.3} ms, bookkeeping and answers {:.3} ms",
            ran.as_secs_f64() * 1e3,
            (started.elapsed() - ran).as_secs_f64() * 1e3
        );
    }
}

/// Tokens of `rows`.
fn tokens(rows: &[TokenRow]) -> usize {
    rows.iter().map(|r| r.ids.len()).sum()
}

/// Waits for a first request, then until its window has passed, the waiting inputs fill a
/// pass, or the service stops.
fn wait_for_work<'a>(
    shared: &'a Shared,
    mut q: MutexGuard<'a, Queue>,
    budget: usize,
) -> MutexGuard<'a, Queue> {
    while q.requests.is_empty() && !q.stop {
        q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
    }
    while !q.stop {
        let Some(first) = q.requests.front() else {
            break;
        };
        let end = first.submitted + shared.config.window;
        let now = Instant::now();
        if now >= end || fills_a_pass(&q, budget) {
            break;
        }
        q = shared
            .work
            .wait_timeout(q, end - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    q
}

/// Whether the queue holds more than one pass takes.
fn fills_a_pass(q: &Queue, budget: usize) -> bool {
    let (mut rows, mut longest) = (0usize, 0usize);
    for row in q.requests.iter().flat_map(|r| &r.rows) {
        longest = longest.max(row.ids.len());
        rows += 1;
        if rows * longest > budget {
            return true;
        }
    }
    false
}

/// Takes the next pass's inputs, first come first served (the carried request first) while
/// rows × longest row stays within `budget` (at least one input).
fn pack(q: &mut Queue, carry: &mut Option<Active>, budget: usize) -> Vec<Part> {
    let (mut rows, mut longest) = (0usize, 0usize);
    let mut parts = Vec::new();
    loop {
        let mut active = match carry.take() {
            Some(a) => a,
            None => match q.requests.pop_front() {
                Some(r) => Active::new(r),
                None => break,
            },
        };
        let start = active.taken;
        while active.taken < active.request.rows.len() {
            let len = active.request.rows[active.taken].ids.len();
            let wider = longest.max(len);
            if rows > 0 && (rows + 1) * wider > budget {
                break;
            }
            rows += 1;
            longest = wider;
            active.taken += 1;
        }
        let end = active.taken;
        q.waiting -= end - start;
        if end > start && active.queue_seconds.is_none() {
            active.queue_seconds = Some(active.request.submitted.elapsed().as_secs_f64());
        }
        let full = end < active.request.rows.len();
        if end > start {
            parts.push(Part { active, start, end });
        } else {
            // Nothing of it fits: it leads the next pass.
            *carry = Some(active);
        }
        if full {
            break;
        }
    }
    parts
}

/// Runs a pass; one result per part. An input error (which [`super::EmbeddingService::submit`]
/// checks should have prevented) re-runs the parts one by one, so that only the request at
/// fault gets it.
fn run_pass(cluster: &mut Cluster<TokenReplica>, parts: &[Part]) -> Vec<Result<Vec<Vec<f32>>>> {
    fn rows(p: &Part) -> &[TokenRow] {
        &p.active.request.rows[p.start..p.end]
    }
    let inputs: Vec<TokenRow> = parts.iter().flat_map(|p| rows(p).iter().cloned()).collect();
    match cluster.run(&inputs) {
        Ok(out) => {
            if log::log_enabled!(log::Level::Debug) {
                for d in out.report.devices.iter().filter(|d| d.rows > 0) {
                    log::debug!(
                        "{}: {} rows in {} micro-batches, busy {:.3} ms, upload {:.3} ms, \
                         read-back {:.3} ms, idle {:.3} ms (batch wall {:.3} ms)",
                        d.name,
                        d.rows,
                        d.micro_batches,
                        d.busy_s * 1e3,
                        d.upload_s * 1e3,
                        d.readback_s * 1e3,
                        d.idle_s * 1e3,
                        out.report.wall_s * 1e3
                    );
                }
            }
            let mut outputs = out.outputs.into_iter();
            parts
                .iter()
                .map(|p| Ok(outputs.by_ref().take(p.end - p.start).collect()))
                .collect()
        }
        Err(e) if e.kind() == ErrorKind::Input && parts.len() > 1 => parts
            .iter()
            .map(|p| cluster.run(rows(p)).map(|o| o.outputs))
            .collect(),
        Err(e) => parts.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// Hands `a` its answer (its vectors, when `result` is a success).
fn answer(a: Active, result: Result<Embedded>) {
    let Active {
        request, vectors, ..
    } = a;
    request
        .reply
        .send(result.map(|e| Embedded { vectors, ..e }));
}
