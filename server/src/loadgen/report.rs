//! What one load level measured: outcome counts, throughput and latency percentiles, as a
//! markdown table and JSON.

use serde::Serialize;
use std::time::Duration;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A full answer (2xx, well-formed, a stream that reached `[DONE]`).
    Ok,
    /// 429 Too Many Requests: the server's queue was full.
    Rejected,
    /// 503 Service Unavailable: loading or shutting down.
    Unavailable,
    /// The per-request timeout or the overall time limit ran out first.
    TimedOut,
    /// Any other HTTP status.
    HttpError,
    /// No answer or a malformed one: connection refused or reset, bad JSON, a stream cut short.
    Failed,
}

/// The measurements of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// From sending the request to the end of its answer.
    pub latency: Duration,
    /// Streaming only: from sending the request to the first generated text.
    pub ttft: Option<Duration>,
    /// Streaming only: the gaps between successive chunks of generated text.
    pub itl: Vec<Duration>,
    /// Tokens generated (the answer's `usage.completion_tokens`, else streamed text chunks).
    pub tokens: usize,
    /// Embedding vectors returned.
    pub embeddings: usize,
    /// The first error's text (kept for the report's `first_error`).
    pub error: Option<String>,
}

impl Outcome {
    /// A request that ended with `status` after `latency`, with nothing else measured.
    pub fn failed(status: Status, latency: Duration, error: impl Into<String>) -> Self {
        Self {
            status,
            latency,
            ttft: None,
            itl: Vec::new(),
            tokens: 0,
            embeddings: 0,
            error: Some(error.into()),
        }
    }
}

/// The p50 and p99 of a set of durations, in milliseconds (0 when the set is empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// How many values they were taken over.
    pub count: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted here).
    pub fn of(values: &mut [Duration]) -> Self {
        values.sort_unstable();
        Self {
            p50_ms: ms(percentile(values, 0.50)),
            p99_ms: ms(percentile(values, 0.99)),
            count: values.len(),
        }
    }
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of `sorted`: the smallest value with at least a
/// fraction `q` of the values at or below it; zero for an empty slice.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One concurrency level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LevelReport {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests sent.
    pub requests: usize,
    /// Full answers.
    pub ok: usize,
    /// 429 answers.
    pub rejected_429: usize,
    /// 503 answers.
    pub unavailable_503: usize,
    /// Requests cut by the per-request timeout or the overall time limit.
    pub timed_out: usize,
    /// Other HTTP statuses.
    pub http_errors: usize,
    /// No answer or a malformed one.
    pub failed: usize,
    /// The first error seen, for a quick diagnosis.
    pub first_error: Option<String>,
    /// Wall-clock time of the level, seconds.
    pub wall_s: f64,
    /// Full answers per second.
    pub requests_per_s: f64,
    /// Embedding vectors per second.
    pub embeddings_per_s: f64,
    /// Generated tokens per second (over every full answer).
    pub tokens_per_s: f64,
    /// Generated tokens in full answers.
    pub generated_tokens: usize,
    /// Embedding vectors in full answers.
    pub embeddings: usize,
    /// End-to-end latency of full answers.
    pub latency: Percentiles,
    /// Time to first token of full streamed answers.
    pub ttft: Percentiles,
    /// Inter-token latency over every gap of every full streamed answer.
    pub itl: Percentiles,
}

impl LevelReport {
    /// Sums up `outcomes`, measured over `wall` at `concurrency`.
    pub fn new(concurrency: usize, wall: Duration, outcomes: &[Outcome]) -> Self {
        let mut r = Self {
            concurrency,
            requests: outcomes.len(),
            wall_s: wall.as_secs_f64(),
            ..Self::default()
        };
        let (mut lat, mut ttft, mut itl) = (Vec::new(), Vec::new(), Vec::new());
        for o in outcomes {
            match o.status {
                Status::Ok => r.ok += 1,
                Status::Rejected => r.rejected_429 += 1,
                Status::Unavailable => r.unavailable_503 += 1,
                Status::TimedOut => r.timed_out += 1,
                Status::HttpError => r.http_errors += 1,
                Status::Failed => r.failed += 1,
            }
            if r.first_error.is_none() && o.status != Status::Ok {
                r.first_error.clone_from(&o.error);
            }
            if o.status != Status::Ok {
                continue;
            }
            lat.push(o.latency);
            ttft.extend(o.ttft);
            itl.extend_from_slice(&o.itl);
            r.generated_tokens += o.tokens;
            r.embeddings += o.embeddings;
        }
        let secs = r.wall_s.max(1e-9);
        r.requests_per_s = r.ok as f64 / secs;
        r.embeddings_per_s = r.embeddings as f64 / secs;
        r.tokens_per_s = r.generated_tokens as f64 / secs;
        r.latency = Percentiles::of(&mut lat);
        r.ttft = Percentiles::of(&mut ttft);
        r.itl = Percentiles::of(&mut itl);
        r
    }
}

/// A whole run: one report per concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server's base URL.
    pub url: String,
    /// `embeddings`, `completions` or `chat`.
    pub kind: String,
    /// The model named in the requests.
    pub model: String,
    /// Whether generation requests streamed.
    pub stream: bool,
    /// The levels, in the order run.
    pub levels: Vec<LevelReport>,
    /// The overall time limit ended the run before every level had finished.
    pub stopped_by_time_limit: bool,
}

impl Report {
    /// The levels as a markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "`{}` at {} (model {}{})\n\n",
            self.kind,
            self.url,
            self.model,
            if self.stream { ", streaming" } else { "" }
        );
        use sparq::report::{Align::*, Table, num};
        let mut t = Table::new(&[
            ("concurrency", Right),
            ("requests", Right),
            ("ok", Right),
            ("429", Right),
            ("503", Right),
            ("timeout", Right),
            ("other", Right),
            ("req/s", Right),
            ("emb/s", Right),
            ("tok/s", Right),
            ("latency p50 / p99", Right),
            ("TTFT p50 / p99", Right),
            ("ITL p50 / p99", Right),
        ]);
        let pair = |p: &Percentiles| {
            if p.count == 0 {
                "–".to_string()
            } else {
                format!(
                    "{} / {}",
                    num::time_us(p.p50_ms * 1e3),
                    num::time_us(p.p99_ms * 1e3)
                )
            }
        };
        for l in &self.levels {
            t.push([
                l.concurrency.to_string(),
                l.requests.to_string(),
                l.ok.to_string(),
                l.rejected_429.to_string(),
                l.unavailable_503.to_string(),
                l.timed_out.to_string(),
                (l.http_errors + l.failed).to_string(),
                num::sig(l.requests_per_s, num::DIGITS),
                num::sig(l.embeddings_per_s, num::DIGITS),
                num::sig(l.tokens_per_s, num::DIGITS),
                pair(&l.latency),
                pair(&l.ttft),
                pair(&l.itl),
            ]);
        }
        s += &t.markdown();
        if self.stopped_by_time_limit {
            s.push_str("\nStopped by the overall time limit.\n");
        }
        for l in self.levels.iter().filter(|l| l.first_error.is_some()) {
            let e = l.first_error.as_deref().unwrap_or_default();
            s.push_str(&format!(
                "\nconcurrency {}: first error: {e}\n",
                l.concurrency
            ));
        }
        s
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(d).collect();
        assert_eq!(percentile(&v, 0.5), d(50));
        assert_eq!(percentile(&v, 0.99), d(99));
        assert_eq!(percentile(&v[..1], 0.99), d(1));
        assert_eq!(percentile(&[d(1), d(2), d(3)], 0.5), d(2));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let mut shuffled = vec![d(30), d(10), d(20), d(40)];
        let p = Percentiles::of(&mut shuffled);
        assert_eq!((p.p50_ms, p.p99_ms, p.count), (20.0, 40.0, 4));
    }
}
