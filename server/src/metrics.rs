//! Prometheus metrics with vLLM's names under a `sparq:` prefix. Counters and histograms are
//! fed as requests end; gauges are read from the services' `stats()` at every scrape.

use crate::state::{AppState, Service};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests running, by model.
    pub running: GaugeVec,
    /// Requests waiting for admission, by model.
    pub waiting: GaugeVec,
    /// Seconds to the first generated token.
    pub ttft: HistogramVec,
    /// Seconds between generated tokens.
    pub itl: HistogramVec,
    /// Seconds from arrival to the answer.
    pub e2e: HistogramVec,
    /// Seconds waiting for admission.
    pub queue: HistogramVec,
    /// Prompt tokens of answered requests.
    pub prompt_tokens: IntCounterVec,
    /// Generated tokens.
    pub generation_tokens: IntCounterVec,
    /// KV cache blocks in use, fraction, by model and device.
    pub kv_usage: GaugeVec,
    /// Sequences (generation) or rows (embeddings) of the last batch, by model and device.
    pub batch_size: GaugeVec,
    /// Inputs embedded.
    pub embeddings: IntCounterVec,
    /// Error answers by status.
    pub errors: IntCounterVec,
    /// Requests a service accepted (queued), by model.
    pub accepted: IntCounterVec,
    /// Accepted requests that were answered (a result or an error), by model.
    pub answered: IntCounterVec,
    /// Accepted requests whose client went away before the answer, by model.
    pub cancelled: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, &["model"]).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    /// Registers every metric in a registry of its own.
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            running: gauge(
                &r,
                "sparq:num_requests_running",
                "Requests running.",
                &["model"],
            ),
            waiting: gauge(
                &r,
                "sparq:num_requests_waiting",
                "Requests waiting.",
                &["model"],
            ),
            ttft: histogram(
                &r,
                "sparq:time_to_first_token_seconds",
                "Seconds to the first token.",
            ),
            itl: histogram(
                &r,
                "sparq:inter_token_latency_seconds",
                "Seconds between tokens.",
            ),
            e2e: histogram(
                &r,
                "sparq:e2e_request_latency_seconds",
                "Seconds from arrival to the answer.",
            ),
            queue: histogram(
                &r,
                "sparq:request_queue_time_seconds",
                "Seconds waiting for admission.",
            ),
            prompt_tokens: counter(
                &r,
                "sparq:prompt_tokens_total",
                "Prompt tokens.",
                &["model"],
            ),
            generation_tokens: counter(
                &r,
                "sparq:generation_tokens_total",
                "Generated tokens.",
                &["model"],
            ),
            kv_usage: gauge(
                &r,
                "sparq:kv_cache_usage_perc",
                "KV cache blocks in use (fraction).",
                &["model", "device"],
            ),
            batch_size: gauge(
                &r,
                "sparq:batch_size",
                "Sequences or rows of the last batch.",
                &["model", "device"],
            ),
            embeddings: counter(&r, "sparq:embeddings_total", "Inputs embedded.", &["model"]),
            errors: counter(
                &r,
                "sparq:request_errors_total",
                "Error answers by status.",
                &["status"],
            ),
            accepted: counter(
                &r,
                "sparq:requests_accepted_total",
                "Requests a service accepted.",
                &["model"],
            ),
            answered: counter(
                &r,
                "sparq:requests_answered_total",
                "Accepted requests answered.",
                &["model"],
            ),
            cancelled: counter(
                &r,
                "sparq:requests_cancelled_total",
                "Accepted requests whose client went away first.",
                &["model"],
            ),
            registry: r,
        }
    }

    /// Counts an error answer.
    pub fn error(&self, status: u16) {
        self.errors.with_label_values(&[&status.to_string()]).inc();
    }

    /// The text exposition, gauges refreshed from the services.
    pub fn render(&self, state: &AppState) -> String {
        for m in state.models() {
            let name = m.name.as_str();
            match &m.service {
                Service::Generation(g) => {
                    let s = g.stats();
                    self.running
                        .with_label_values(&[name])
                        .set(s.running as f64);
                    self.waiting
                        .with_label_values(&[name])
                        .set(s.waiting as f64);
                    for r in &s.replicas {
                        let used = match r.kv_total_blocks {
                            0 => 0.0,
                            t => 1.0 - r.kv_free_blocks as f64 / t as f64,
                        };
                        let labels = [name, r.name.as_str()];
                        self.kv_usage.with_label_values(&labels).set(used);
                        self.batch_size
                            .with_label_values(&labels)
                            .set(r.last_step_sequences as f64);
                    }
                }
                Service::Embedding(e) => {
                    let s = e.stats();
                    let running = m.in_flight.load(std::sync::atomic::Ordering::Relaxed);
                    self.running.with_label_values(&[name]).set(running as f64);
                    self.waiting
                        .with_label_values(&[name])
                        .set(s.waiting as f64);
                    // A pass spreads over the whole cluster: one batch size for all devices.
                    self.batch_size
                        .with_label_values(&[name, "all"])
                        .set(s.last_batch_rows as f64);
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
