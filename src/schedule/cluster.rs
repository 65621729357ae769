//! Data parallelism: one replica per device, a batch split into micro-batches that the
//! devices pull as they have room.
//!
//! Each device runs in its own thread and keeps up to [`Replica::slots`] micro-batches in
//! flight, so the upload of the next one and the read-back of the last overlap the
//! computation. Sizes come from [`super::SplitPolicy`] and each device's throughput, measured by
//! [`Cluster::calibrate`] and updated after every micro-batch. Results are written into their
//! input positions; a range is owned by one device at a time and re-queued only by the device
//! that gave it up, so every row is computed and returned exactly once.

use super::batch::{BatchOutput, BatchReport, ClusterConfig, DeviceReport, Member};
use super::fault::{self, Injection};
use super::worker::{Shared, guarded, worker};
use super::{Replica, device_name};
use crate::Gpu;
use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// A set of replicas of one model, one per device.
pub struct Cluster<R: Replica> {
    members: Vec<Member<R>>,
    config: ClusterConfig,
}

impl<R: Replica> Cluster<R> {
    /// Builds one replica per device with `factory`.
    pub fn new(
        gpus: Vec<Arc<Gpu>>,
        factory: impl Fn(&Arc<Gpu>) -> Result<R>,
        config: ClusterConfig,
    ) -> Result<Self> {
        if gpus.is_empty() {
            return Err(Error::invalid("a cluster needs at least one device"));
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
            return Err(Error::invalid("calibration sample has no rows"));
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
            return Err(Error::no_device_left(self.failure_list()));
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
        R::check_batch(inputs)?;
        let n = self.members.len();
        if let Some(&bad) = devices.iter().find(|&&d| d >= n) {
            return Err(Error::invalid(format!(
                "device {bad} is not in the cluster of {n}"
            )));
        }
        let live: Vec<bool> = (0..n)
            .map(|i| devices.contains(&i) && self.members[i].failed.is_none())
            .collect();
        if !live.iter().any(|&l| l) {
            return Err(Error::no_device_left(format!(
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
        let shared = Mutex::new(Shared::new(
            inputs.len(),
            self.members.iter().map(|m| m.rate).collect(),
            live.clone(),
        ));
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
