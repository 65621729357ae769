//! One batch of a [`super::Cluster`] in motion: the queue of row ranges the device threads
//! share, and each device's loop.
//!
//! Sound because a range is owned by one device at a time: [`Shared::take`] hands it out under
//! the lock, only the device holding it delivers its rows or gives it back (on its own
//! failure), and every row slot is written once; the batch ends when all rows are delivered
//! or an input error aborts it.

use super::batch::{ClusterConfig, DeviceReport, Member, MicroBatch};
use super::fault::{self, Injection};
use super::{Finished, Replica, SplitPolicy, is_device_fault};
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// State shared by the worker threads of one batch.
pub(super) struct Shared<O> {
    /// Row ranges not handed out yet; ranges given back by failed devices go in front.
    pub(super) pending: VecDeque<(usize, usize)>,
    pub(super) remaining: usize,
    pub(super) rates: Vec<f64>,
    /// Rows each device has taken and not yet returned.
    pub(super) in_flight: Vec<usize>,
    pub(super) live: Vec<bool>,
    pub(super) results: Vec<Option<O>>,
    pub(super) done: usize,
    pub(super) abort: Option<Error>,
    pub(super) log: Vec<MicroBatch>,
    pub(super) requeued: Vec<MicroBatch>,
    pub(super) failures: Vec<String>,
}

impl<O> Shared<O> {
    /// A batch of `rows` rows, nothing handed out yet.
    pub(super) fn new(rows: usize, rates: Vec<f64>, live: Vec<bool>) -> Self {
        Shared {
            pending: VecDeque::from([(0, rows)]),
            remaining: rows,
            in_flight: vec![0; rates.len()],
            rates,
            live,
            results: (0..rows).map(|_| None).collect(),
            done: 0,
            abort: None,
            log: Vec::new(),
            requeued: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.abort.is_some() || self.done == self.results.len()
    }

    /// The next range for device `me`, sized by the split policy, or `None` to decline.
    fn take(&mut self, me: usize, max_rows: usize, policy: &SplitPolicy) -> Option<(usize, usize)> {
        if self.abort.is_some() || self.remaining == 0 {
            return None;
        }
        let ids: Vec<usize> = (0..self.live.len()).filter(|&i| self.live[i]).collect();
        let rates: Vec<f64> = ids.iter().map(|&i| self.rates[i]).collect();
        let in_flight: Vec<usize> = ids.iter().map(|&i| self.in_flight[i]).collect();
        let pos = ids.iter().position(|&i| i == me)?;
        let want = policy.next_rows(self.remaining, &in_flight, &rates, pos, max_rows)?;
        let (start, len) = self.pending.pop_front()?;
        let rows = want.min(len);
        if rows < len {
            self.pending.push_front((start + rows, len - rows));
        }
        self.remaining -= rows;
        self.in_flight[me] += rows;
        Some((start, rows))
    }

    /// Takes device `me` out of the set and queues its unfinished ranges again.
    fn fail(&mut self, me: usize, name: &str, error: &Error, unfinished: &[(usize, usize)]) {
        if !is_device_fault(error) {
            // The input is at fault: every device would fail the same way.
            if self.abort.is_none() {
                self.abort = Some(error.clone());
            }
            return;
        }
        log::warn!(
            "{name} failed, re-queuing {} micro-batches: {error}",
            unfinished.len()
        );
        self.live[me] = false;
        self.rates[me] = 0.0;
        self.in_flight[me] = 0;
        self.failures.push(format!("{name}: {error}"));
        for &(start, rows) in unfinished.iter().rev() {
            self.pending.push_front((start, rows));
            self.remaining += rows;
            self.requeued.push(MicroBatch {
                start,
                rows,
                device: me,
            });
        }
        if !self.live.iter().any(|&l| l) && self.abort.is_none() {
            self.abort = Some(Error::no_device_left(format!(
                "{}; {} of {} rows were done",
                self.failures.join("; "),
                self.done,
                self.results.len()
            )));
        }
    }
}

/// Runs `f`, turning a panic into a device error.
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::panicked(format!("replica panicked: {msg}")))
    })
}

/// One device's loop: keep its slots full with ranges taken from `shared`, finish them in
/// order, deliver the outputs; on a device fault give its unfinished ranges back and stop.
/// Returns the device's report, the host time spent in `finish`, and its failure if any.
pub(super) fn worker<R: Replica>(
    me: usize,
    m: &mut Member<R>,
    shared: &Mutex<Shared<R::Out>>,
    wake: &Condvar,
    inputs: &[R::In],
    config: &ClusterConfig,
) -> (DeviceReport, f64, Option<String>) {
    let mut rep = DeviceReport::default();
    let mut finish_s = 0.0;
    let slots = m.replica.slots().max(1);
    let max_rows = m.replica.max_rows();
    let mut free: Vec<usize> = (0..slots).rev().collect();
    let mut inflight: VecDeque<(usize, usize, usize)> = VecDeque::new();
    let mut injected: Option<Error> = None;
    let prior = m.rate;
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());

    let fail = |error: Error, unfinished: &[(usize, usize)]| -> Option<String> {
        // The device's own report (lost, validation) names the cause better than whatever
        // call failed because of it.
        let _ = m.gpu.device.poll(wgpu::PollType::Poll);
        let error = match (is_device_fault(&error), m.gpu.check()) {
            (true, Err(cause)) => cause,
            _ => error,
        };
        let mut s = lock();
        s.fail(me, &m.name, &error, unfinished);
        wake.notify_all();
        is_device_fault(&error).then(|| error.to_string())
    };

    let failed = 'run: loop {
        // Keep every free slot busy.
        while let Some(&slot) = free.last() {
            let Some((start, rows)) = lock().take(me, max_rows, &config.split) else {
                break;
            };
            free.pop();
            let t = Instant::now();
            let r = guarded(|| m.replica.start(slot, &inputs[start..start + rows]));
            rep.upload_s += t.elapsed().as_secs_f64();
            inflight.push_back((start, rows, slot));
            m.started += 1;
            if let Some(Injection::Fail { after, kind }) = m.injection
                && m.started == after.max(1)
            {
                injected = fault::trigger(&m.gpu, kind);
            }
            if let Err(e) = r {
                let unfinished: Vec<_> = inflight.iter().map(|f| (f.0, f.1)).collect();
                break 'run fail(e, &unfinished);
            }
        }
        let Some(&(start, rows, slot)) = inflight.front() else {
            let s = lock();
            if s.finished() {
                break None;
            }
            // Declined or nothing left to take: wait for a completion or a failure, which
            // change the rates or give work back.
            let _ = wake.wait_timeout(s, Duration::from_millis(20));
            continue;
        };
        let t = Instant::now();
        let r = match injected.take() {
            Some(e) => Err(e),
            None => guarded(|| m.replica.finish(slot)),
        }
        .and_then(|f: Finished<R::Out>| {
            if f.outputs.len() == rows {
                Ok(f)
            } else {
                Err(Error::invariant(format!(
                    "replica returned {} outputs for {rows} rows",
                    f.outputs.len()
                )))
            }
        });
        let _ = fault::delay(m.injection, rows);
        let waited = t.elapsed().as_secs_f64();
        finish_s += waited;
        let f = match r {
            Ok(f) => f,
            Err(e) => {
                let unfinished: Vec<_> = inflight.iter().map(|f| (f.0, f.1)).collect();
                break 'run fail(e, &unfinished);
            }
        };
        inflight.pop_front();
        free.push(slot);
        rep.busy_s += f.compute_s.unwrap_or(waited - f.readback_s);
        rep.readback_s += f.readback_s;
        rep.rows += rows;
        rep.micro_batches += 1;
        // Throughput over the time this device spent in the replica's calls (its GPU works
        // while the worker waits in them), blended with the estimate it came in with. Per
        // micro-batch service times would mislead where `start` itself blocks (GL).
        let active = (rep.upload_s + finish_s).max(1e-9);
        let memory = config.rate_memory_rows.max(0.0);
        m.rate = if prior > 0.0 {
            (memory + rep.rows as f64) / (memory / prior + active)
        } else {
            rep.rows as f64 / active
        };
        let mut s = lock();
        for (slot, out) in s.results[start..start + rows].iter_mut().zip(f.outputs) {
            debug_assert!(slot.is_none(), "row delivered twice");
            *slot = Some(out);
        }
        s.done += rows;
        s.in_flight[me] -= rows;
        s.rates[me] = m.rate;
        s.log.push(MicroBatch {
            start,
            rows,
            device: me,
        });
        drop(s);
        wake.notify_all();
    };
    // On abort, drain what is still in flight so the replica's slots are free next time.
    if failed.is_none() {
        for &(_, _, slot) in &inflight {
            let _ = guarded(|| m.replica.finish(slot));
        }
    }
    (rep, finish_s, failed)
}
