//! Data parallelism: one replica per device, a batch split into micro-batches that the
//! devices pull as they have room.
//!
//! Each device runs in its own thread and keeps up to [`Replica::slots`] micro-batches in
//! flight, so the upload of the next one and the read-back of the last overlap the
//! computation. Sizes come from [`SplitPolicy`] and each device's throughput, measured by
//! [`Cluster::calibrate`] and updated after every micro-batch. Results are written into their
//! input positions; a range is owned by one device at a time and re-queued only by the device
//! that gave it up, so every row is computed and returned exactly once.

use super::fault::{self, Injection};
use super::{Finished, Replica, SplitPolicy, device_name, is_device_fault};
use crate::Gpu;
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Settings of a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// How micro-batch sizes are chosen.
    pub split: SplitPolicy,
    /// How many rows the throughput estimate from before a batch counts for: during a batch
    /// the estimate is `(memory + rows done) / (memory / old estimate + active time)`.
    pub rate_memory_rows: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            split: SplitPolicy::default(),
            rate_memory_rows: 256.0,
        }
    }
}

/// One device of the cluster.
struct Member<R> {
    name: String,
    gpu: Arc<Gpu>,
    replica: R,
    /// Rows per second; 0 until measured.
    rate: f64,
    failed: Option<String>,
    injection: Option<Injection>,
    started: usize,
}

/// A set of replicas of one model, one per device.
pub struct Cluster<R: Replica> {
    members: Vec<Member<R>>,
    config: ClusterConfig,
}

/// A micro-batch as it was run: rows `start..start + rows` on `device`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MicroBatch {
    /// First row.
    pub start: usize,
    /// Number of rows.
    pub rows: usize,
    /// Index of the device in the cluster.
    pub device: usize,
}

/// Where one device's time went during a batch (host-side wall clock unless noted).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DeviceReport {
    /// `[index] adapter (backend)`.
    pub name: String,
    /// Rows it computed (and returned).
    pub rows: usize,
    /// Micro-batches it completed.
    pub micro_batches: usize,
    /// Computing: GPU time from timestamp queries where the replica measures it, else the
    /// time spent waiting for the device.
    pub busy_s: f64,
    /// Uploading and submitting micro-batches.
    pub upload_s: f64,
    /// Copying results out of mapped memory.
    pub readback_s: f64,
    /// Neither uploading nor waiting for results: nothing (more) to do for this device.
    pub idle_s: f64,
    /// Throughput estimate after the batch, rows per second.
    pub rows_per_s: f64,
    /// Why the device was taken out of the set, if it was.
    pub failed: Option<String>,
}

/// What a batch cost and how it was split.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BatchReport {
    /// Wall time of the whole batch.
    pub wall_s: f64,
    /// Rows in the batch.
    pub rows: usize,
    /// One entry per device of the cluster (devices not taking part have zero rows).
    pub devices: Vec<DeviceReport>,
    /// Completed micro-batches, in completion order.
    pub micro_batches: Vec<MicroBatch>,
    /// Micro-batches that were in flight on a failing device and were queued again.
    pub requeued: Vec<MicroBatch>,
}

impl BatchReport {
    /// Fraction of the rows each device computed.
    pub fn shares(&self) -> Vec<f64> {
        self.devices
            .iter()
            .map(|d| d.rows as f64 / self.rows.max(1) as f64)
            .collect()
    }

    /// A Markdown table of the split and the time per device.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| device | rows | share | micro-batches | busy ms | upload ms | read-back ms | idle ms | rows/s | status |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        );
        for (d, share) in self.devices.iter().zip(self.shares()) {
            s += &format!(
                "| {} | {} | {:.1}% | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} |\n",
                d.name,
                d.rows,
                share * 100.0,
                d.micro_batches,
                d.busy_s * 1e3,
                d.upload_s * 1e3,
                d.readback_s * 1e3,
                d.idle_s * 1e3,
                d.rows_per_s,
                d.failed.as_deref().unwrap_or("ok"),
            );
        }
        s
    }
}

/// Outputs of a batch, in input order, and its report.
#[derive(Debug)]
pub struct BatchOutput<O> {
    /// One output per input row, in input order.
    pub outputs: Vec<O>,
    /// Where the time went.
    pub report: BatchReport,
}

/// State shared by the worker threads of one batch.
struct Shared<O> {
    /// Row ranges not handed out yet; ranges given back by failed devices go in front.
    pending: VecDeque<(usize, usize)>,
    remaining: usize,
    rates: Vec<f64>,
    /// Rows each device has taken and not yet returned.
    in_flight: Vec<usize>,
    live: Vec<bool>,
    results: Vec<Option<O>>,
    done: usize,
    abort: Option<Error>,
    log: Vec<MicroBatch>,
    requeued: Vec<MicroBatch>,
    failures: Vec<String>,
}

impl<O> Shared<O> {
    fn finished(&self) -> bool {
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
                self.abort = Some(clone_error(error));
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
            self.abort = Some(Error::NoDeviceLeft(format!(
                "{}; {} of {} rows were done",
                self.failures.join("; "),
                self.done,
                self.results.len()
            )));
        }
    }
}

/// Input errors are re-created for the caller (`Error` is not `Clone`: it holds `io::Error`).
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Shape(s) => Error::Shape(s.clone()),
        Error::Invalid(s) => Error::Invalid(s.clone()),
        Error::DType(s) => Error::DType(s.clone()),
        other => Error::Gpu(other.to_string()),
    }
}

/// Runs `f`, turning a panic into a device error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Gpu(format!("replica panicked: {msg}")))
    })
}

impl<R: Replica> Cluster<R> {
    /// Builds one replica per device with `factory`.
    pub fn new(
        gpus: Vec<Arc<Gpu>>,
        factory: impl Fn(&Arc<Gpu>) -> Result<R>,
        config: ClusterConfig,
    ) -> Result<Self> {
        if gpus.is_empty() {
            return Err(Error::Invalid("a cluster needs at least one device".into()));
        }
        let members = gpus
            .into_iter()
            .enumerate()
            .map(|(i, gpu)| {
                Ok(Member {
                    name: device_name(i, &gpu),
                    replica: factory(&gpu)?,
                    gpu,
                    rate: 0.0,
                    failed: None,
                    injection: None,
                    started: 0,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Cluster { members, config })
    }

    /// Opens the devices `adapters` names (see [`super::open_devices`]: `all`, `0,2`, `0,0`,
    /// backend or name substrings), builds a replica on each and calibrates them on `sample`
    /// (when it is not empty): the one call a command line needs before [`Cluster::run`].
    pub fn open(
        adapters: &str,
        factory: impl Fn(&Arc<Gpu>) -> Result<R>,
        sample: &[R::In],
    ) -> Result<Self> {
        let mut cluster = Self::new(
            super::open_devices(adapters)?,
            factory,
            ClusterConfig::default(),
        )?;
        if !sample.is_empty() {
            cluster.calibrate(sample)?;
        }
        Ok(cluster)
    }

    /// Number of devices (failed ones included).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no device (never true for a built cluster).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `[index] adapter (backend)` of each device.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The device of member `i`.
    pub fn gpu(&self, i: usize) -> &Arc<Gpu> {
        &self.members[i].gpu
    }

    /// The replica of member `i` (for a single-device run or inspection).
    pub fn replica_mut(&mut self, i: usize) -> &mut R {
        &mut self.members[i].replica
    }

    /// Throughput estimates, rows per second (0 = not measured).
    pub fn rates(&self) -> Vec<f64> {
        self.members.iter().map(|m| m.rate).collect()
    }

    /// Sets the throughput estimates (e.g. kept from an earlier run).
    pub fn set_rates(&mut self, rates: &[f64]) {
        for (m, &r) in self.members.iter_mut().zip(rates) {
            m.rate = r.max(0.0);
        }
    }

    /// Why each device was taken out of the set (`None` for live devices).
    pub fn failures(&self) -> Vec<Option<String>> {
        self.members.iter().map(|m| m.failed.clone()).collect()
    }

    /// Attaches a fault or slowdown to device `i` (replacing any earlier one).
    pub fn inject(&mut self, i: usize, injection: Injection) {
        self.members[i].injection = Some(injection);
        self.members[i].started = 0;
    }

    /// Measures each live device's throughput on `sample` (run once to warm up, once timed),
    /// all devices at once. A device that fails here is taken out of the set.
    pub fn calibrate(&mut self, sample: &[R::In]) -> Result<()> {
        if sample.is_empty() {
            return Err(Error::Invalid("calibration sample has no rows".into()));
        }
        std::thread::scope(|s| {
            for m in self.members.iter_mut().filter(|m| m.failed.is_none()) {
                s.spawn(move || {
                    let run = |m: &mut Member<R>| -> Result<f64> {
                        guarded(|| super::run_single(&mut m.replica, sample))?;
                        let t = Instant::now();
                        guarded(|| super::run_single(&mut m.replica, sample))?;
                        fault::delay(m.injection, sample.len())?;
                        Ok(sample.len() as f64 / t.elapsed().as_secs_f64().max(1e-9))
                    };
                    match run(m) {
                        Ok(rate) => m.rate = rate,
                        Err(e) => m.failed = Some(e.to_string()),
                    }
                });
            }
        });
        if self.members.iter().all(|m| m.failed.is_some()) {
            return Err(Error::NoDeviceLeft(self.failure_list()));
        }
        Ok(())
    }

    fn failure_list(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| m.failed.as_ref().map(|f| format!("{}: {f}", m.name)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Runs `inputs` over every live device; outputs come back in input order.
    pub fn run(&mut self, inputs: &[R::In]) -> Result<BatchOutput<R::Out>> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.run_on(&all, inputs)
    }

    /// Runs `inputs` over the live devices among `devices` (indices into the cluster).
    pub fn run_on(&mut self, devices: &[usize], inputs: &[R::In]) -> Result<BatchOutput<R::Out>> {
        let n = self.members.len();
        if let Some(&bad) = devices.iter().find(|&&d| d >= n) {
            return Err(Error::Invalid(format!(
                "device {bad} is not in the cluster of {n}"
            )));
        }
        let live: Vec<bool> = (0..n)
            .map(|i| devices.contains(&i) && self.members[i].failed.is_none())
            .collect();
        if !live.iter().any(|&l| l) {
            return Err(Error::NoDeviceLeft(format!(
                "none of devices {devices:?} is usable; {}",
                self.failure_list()
            )));
        }
        let t0 = Instant::now();
        let mut report = BatchReport {
            rows: inputs.len(),
            devices: self
                .members
                .iter()
                .map(|m| DeviceReport {
                    name: m.name.clone(),
                    rows_per_s: m.rate,
                    failed: m.failed.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        if inputs.is_empty() {
            return Ok(BatchOutput {
                outputs: Vec::new(),
                report,
            });
        }
        let shared = Mutex::new(Shared {
            pending: VecDeque::from([(0, inputs.len())]),
            remaining: inputs.len(),
            rates: self.members.iter().map(|m| m.rate).collect(),
            in_flight: vec![0; n],
            live: live.clone(),
            results: (0..inputs.len()).map(|_| None).collect(),
            done: 0,
            abort: None,
            log: Vec::new(),
            requeued: Vec::new(),
            failures: Vec::new(),
        });
        let wake = Condvar::new();
        let config = &self.config;
        let stats: Vec<(usize, DeviceReport, f64, Option<String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .members
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| live[*i])
                .map(|(i, m)| {
                    let (shared, wake) = (&shared, &wake);
                    s.spawn(move || {
                        let (rep, finish_s, failed) = worker(i, m, shared, wake, inputs, config);
                        (i, rep, finish_s, failed)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker threads catch replica panics"))
                .collect()
        });
        let shared = shared.into_inner().unwrap_or_else(|p| p.into_inner());
        report.wall_s = t0.elapsed().as_secs_f64();
        for (i, mut rep, finish_s, failed) in stats {
            let m = &mut self.members[i];
            if let Some(f) = &failed {
                m.failed = Some(f.clone());
            }
            rep.name = m.name.clone();
            rep.rows_per_s = m.rate;
            rep.failed = m.failed.clone();
            rep.idle_s = (report.wall_s - rep.upload_s - finish_s).max(0.0);
            report.devices[i] = rep;
        }
        report.micro_batches = shared.log;
        report.requeued = shared.requeued;
        if let Some(e) = shared.abort {
            return Err(e);
        }
        let outputs: Vec<R::Out> = shared
            .results
            .into_iter()
            .map(|o| o.expect("every row is delivered once the batch is done"))
            .collect();
        Ok(BatchOutput { outputs, report })
    }
}

/// One device's loop: keep its slots full with ranges taken from `shared`, finish them in
/// order, deliver the outputs; on a device fault give its unfinished ranges back and stop.
/// Returns the device's report, the host time spent in `finish`, and its failure if any.
fn worker<R: Replica>(
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
                Err(Error::Gpu(format!(
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
