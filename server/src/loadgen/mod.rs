//! `sparq serve-bench`: a load generator for any OpenAI-compatible server (this crate's
//! `sparq serve`, or another one to compare with). It sends fixed texts at several concurrency
//! levels, one level after another, and reports per level the requests that got a full
//! answer, 429, 503, a timeout or another error, the throughput, and end-to-end latency, time
//! to first token and inter-token latency percentiles (generation streams through SSE to
//! measure the last two).
//!
//! It is bounded: every request has a timeout, and the whole run an overall time limit after
//! which no request is started and those in flight are cut (counted as timed out). Plain HTTP
//! only (no TLS): it is meant for loopback or a private network.

mod report;
mod request;
pub mod sse;

pub use report::{LevelReport, Outcome, Percentiles, Report, Status, percentile};

use hyper::Uri;
use hyper::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use request::Target;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which endpoint to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/chat/completions`.
    Chat,
}

impl Kind {
    /// `embeddings`, `completions` or `chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Embeddings => "embeddings",
            Kind::Completions => "completions",
            Kind::Chat => "chat",
        }
    }

    /// The endpoint's path under the server's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Embeddings => "/v1/embeddings",
            Kind::Completions => "/v1/completions",
            Kind::Chat => "/v1/chat/completions",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embeddings" => Ok(Kind::Embeddings),
            "completions" => Ok(Kind::Completions),
            "chat" => Ok(Kind::Chat),
            _ => Err(format!("'{s}' is not embeddings, completions or chat")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's base URL, `http://HOST:PORT` (a trailing `/v1` is accepted).
    pub url: String,
    /// The endpoint.
    pub kind: Kind,
    /// The model named in every request.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The levels: requests in flight at once, run in this order.
    pub concurrency: Vec<usize>,
    /// Requests per level (when `duration` is unset).
    pub requests: usize,
    /// Instead of a number of requests: keep each level loaded this long.
    pub duration: Option<Duration>,
    /// `max_tokens` of generation requests.
    pub max_tokens: usize,
    /// Generation requests stream (SSE), which TTFT and ITL need.
    pub stream: bool,
    /// The texts (prompts, embedding inputs), used in turn.
    pub texts: Vec<String>,
    /// Inputs per embeddings request.
    pub batch: usize,
    /// One request's limit, from sending it to the end of its answer.
    pub request_timeout: Duration,
    /// The whole run's limit.
    pub time_limit: Duration,
}

impl Config {
    /// The defaults for `url`, `kind` and `model`: levels 1, 8, 32 and 128 of 64 requests
    /// each, 32 tokens streamed, the built-in texts, one input per embeddings request, 60 s
    /// per request, 10 minutes in all.
    pub fn new(url: impl Into<String>, kind: Kind, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            kind,
            model: model.into(),
            api_key: None,
            concurrency: vec![1, 8, 32, 128],
            requests: 64,
            duration: None,
            max_tokens: 32,
            stream: true,
            texts: default_texts(),
            batch: 1,
            request_timeout: Duration::from_secs(60),
            time_limit: Duration::from_secs(600),
        }
    }

    fn endpoint(&self) -> Result<Uri, LoadError> {
        let base = self.url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        if !base.starts_with("http://") {
            return Err(LoadError::Config(format!(
                "--url {}: only http:// URLs are supported",
                self.url
            )));
        }
        let path = self.kind.path();
        format!("{base}{path}")
            .parse()
            .map_err(|e| LoadError::Config(format!("--url {}: {e}", self.url)))
    }

    fn check(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::Config(m.to_string()));
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return bad("concurrency levels must be given and be at least 1");
        }
        if self.duration.is_none() && self.requests == 0 {
            return bad("requests per level must be at least 1");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return bad("the duration of a level must be positive");
        }
        if self.texts.is_empty() || self.batch == 0 || self.max_tokens == 0 {
            return bad("texts, batch and max_tokens must not be empty or zero");
        }
        if self.request_timeout.is_zero() || self.time_limit.is_zero() {
            return bad("the request timeout and the time limit must be positive");
        }
        Ok(())
    }
}

/// The built-in texts: 64 deterministic sentences of up to 24 words.
pub fn default_texts() -> Vec<String> {
    sparq::schedule::bench::sentences(64, 24)
}

/// Why a run could not start (request failures are counted in the report, not errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A setting is out of range or the URL is not usable.
    #[error("serve-bench: {0}")]
    Config(String),
    /// The async runtime could not be built.
    #[error("serve-bench: cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs the load on a runtime of its own (call it outside any tokio runtime; inside one, use
/// [`run_async`]).
pub fn run(config: &Config) -> Result<Report, LoadError> {
    config.check()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(run_async(config))
}

/// Runs the load on the current tokio runtime.
pub async fn run_async(config: &Config) -> Result<Report, LoadError> {
    config.check()?;
    let auth = match &config.api_key {
        Some(k) => Some(
            HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|_| LoadError::Config("the API key is not a valid header value".into()))?,
        ),
        None => None,
    };
    let target = Arc::new(Target {
        client: Client::builder(TokioExecutor::new()).build(connector()),
        uri: config.endpoint()?,
        auth,
        kind: config.kind,
        stream: config.stream,
        bodies: request::bodies(config),
        batch: config.batch,
    });
    let deadline = Instant::now() + config.time_limit;
    let mut report = Report {
        url: config.url.clone(),
        kind: config.kind.as_str().to_string(),
        model: config.model.clone(),
        stream: config.stream && config.kind != Kind::Embeddings,
        levels: Vec::new(),
        stopped_by_time_limit: false,
    };
    for &c in &config.concurrency {
        if Instant::now() >= deadline {
            report.stopped_by_time_limit = true;
            break;
        }
        let (level, stopped) = level(&target, config, c, deadline).await;
        report.levels.push(level);
        if stopped {
            report.stopped_by_time_limit = true;
            break;
        }
    }
    Ok(report)
}

/// Plain HTTP with Nagle's algorithm off: a request is small and waits for nothing else, so
/// holding back its last segment would add delayed-ACK latency to what is measured.
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c
}

/// One level: `c` workers, each sending its next request as soon as the last one ended.
async fn level(
    target: &Arc<Target>,
    config: &Config,
    c: usize,
    deadline: Instant,
) -> (LevelReport, bool) {
    let start = Instant::now();
    let level_end = config.duration.map(|d| start + d);
    let requests = config.requests;
    let timeout = config.request_timeout;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c {
        let (target, next) = (Arc::clone(target), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let (mut outcomes, mut stopped) = (Vec::new(), false);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    stopped = true;
                    break;
                }
                if level_end.is_some_and(|end| now >= end) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if level_end.is_none() && i >= requests {
                    break;
                }
                let limit = timeout.min(deadline - now);
                outcomes.push(request::send(&target, i, limit).await);
            }
            (outcomes, stopped)
        }));
    }
    let (mut outcomes, mut stopped) = (Vec::new(), false);
    for w in workers {
        match w.await {
            Ok((o, s)) => {
                outcomes.extend(o);
                stopped |= s;
            }
            Err(e) => outcomes.push(Outcome::failed(
                Status::Failed,
                start.elapsed(),
                format!("worker panicked: {e}"),
            )),
        }
    }
    // Requests cut by the overall limit also end the run.
    stopped |= Instant::now() >= deadline && outcomes.iter().any(|o| o.status == Status::TimedOut);
    (LevelReport::new(c, start.elapsed(), &outcomes), stopped)
}
