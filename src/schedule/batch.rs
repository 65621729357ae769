//! What a [`super::Cluster`] batch is made of and what it reports: the settings, the devices
//! as members, the micro-batches and the per-device accounting. Shared by the cluster and its
//! device workers, so that neither has to import the other's internals.

use super::SplitPolicy;
use super::fault::Injection;
use crate::Gpu;
use std::sync::Arc;

/// Settings of a [`super::Cluster`].
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
pub(super) struct Member<R> {
    pub(super) name: String,
    pub(super) gpu: Arc<Gpu>,
    pub(super) replica: R,
    /// Rows per second; 0 until measured.
    pub(super) rate: f64,
    pub(super) failed: Option<String>,
    pub(super) injection: Option<Injection>,
    pub(super) started: usize,
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
        use crate::report::{Align::*, Table, num};
        let mut t = Table::new(&[
            ("device", Left),
            ("rows", Right),
            ("share", Right),
            ("micro-batches", Right),
            ("busy", Right),
            ("upload", Right),
            ("read-back", Right),
            ("idle", Right),
            ("rows/s", Right),
            ("status", Left),
        ]);
        let s = |secs: f64| num::time_us(secs * 1e6);
        for (d, share) in self.devices.iter().zip(self.shares()) {
            t.push([
                d.name.clone(),
                d.rows.to_string(),
                num::pct(share * 100.0),
                d.micro_batches.to_string(),
                s(d.busy_s),
                s(d.upload_s),
                s(d.readback_s),
                s(d.idle_s),
                num::rate(d.rows_per_s, "rows/s"),
                d.failed.clone().unwrap_or_else(|| "ok".into()),
            ]);
        }
        t.markdown()
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
