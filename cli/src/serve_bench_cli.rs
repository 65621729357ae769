//! `sparq serve-bench`: the load generator of `sparq_server::loadgen` against a running
//! OpenAI-compatible server.

use sparq::{Error, Result};
use sparq_server::loadgen::{self, Config, Kind};
use std::path::PathBuf;
use std::time::Duration;

/// Load an OpenAI-compatible server (`sparq serve` or another) at several concurrency levels
/// and report throughput, latency, time to first token and inter-token latency per level.
#[derive(clap::Args)]
pub struct ServeBenchArgs {
    /// The server's base URL (plain HTTP), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The endpoint: embeddings, completions or chat.
    #[arg(long, default_value = "embeddings")]
    kind: Kind,
    /// The model name the requests carry (one of the server's `--model NAME=PATH`).
    #[arg(long)]
    model: String,
    /// API key, sent as a bearer token.
    #[arg(long)]
    api_key: Option<String>,
    /// Concurrency levels, comma-separated, run in order.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    concurrency: Vec<usize>,
    /// Requests per level.
    #[arg(long, default_value_t = 64, conflicts_with = "duration")]
    requests: usize,
    /// Instead of --requests: seconds to keep each level loaded.
    #[arg(long)]
    duration: Option<f64>,
    /// `max_tokens` of each generation request.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Do not stream generation (no time to first token or inter-token latency then).
    #[arg(long)]
    no_stream: bool,
    /// Inputs per embeddings request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// A file of texts (prompts, embedding inputs), one per line; built-in sentences by default.
    #[arg(long)]
    texts: Option<PathBuf>,
    /// One request's limit, seconds.
    #[arg(long, default_value_t = 60.0)]
    request_timeout_s: f64,
    /// The whole run's limit, seconds.
    #[arg(long, default_value_t = 600.0)]
    time_limit_s: f64,
    #[command(flatten)]
    out: crate::report_cli::OutputArgs,
}

/// A positive, finite number of seconds.
fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::invalid(format!("{flag} {s}: not a positive number of seconds")))
}

/// Runs `sparq serve-bench` and prints its markdown table; fails when no request at all got
/// a full answer.
pub fn run(args: ServeBenchArgs) -> Result<()> {
    let mut c = Config::new(args.url, args.kind, args.model);
    c.api_key = args.api_key;
    c.concurrency = args.concurrency;
    c.requests = args.requests;
    c.duration = args
        .duration
        .map(|s| seconds("--duration", s))
        .transpose()?;
    c.max_tokens = args.max_tokens;
    c.stream = !args.no_stream;
    c.batch = args.batch;
    c.request_timeout = seconds("--request-timeout-s", args.request_timeout_s)?;
    c.time_limit = seconds("--time-limit-s", args.time_limit_s)?;
    if let Some(path) = &args.texts {
        let text = sparq::error::read_text(path)?;
        c.texts = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect();
    }
    let report = loadgen::run(&c).map_err(|e| Error::invalid(e.to_string()))?;
    let settings = serde_json::json!({
        "url": report.url,
        "kind": report.kind,
        "model": report.model,
        "stream": report.stream,
        "concurrency": c.concurrency,
        "requests": c.requests,
        "duration_s": c.duration.map(|d| d.as_secs_f64()),
        "max_tokens": c.max_tokens,
        "batch": c.batch,
        "texts": args.texts,
        "request_timeout_s": args.request_timeout_s,
        "time_limit_s": args.time_limit_s,
    });
    // The adapter is the server's, not known here.
    let env = sparq::report::Envelope::new(
        "serve-bench",
        serde_json::Value::Null,
        settings,
        &report.levels,
    )?
    .with_summary(serde_json::json!({ "stopped_by_time_limit": report.stopped_by_time_limit }))?;
    args.out.emit(&env, || report.markdown())?;
    // A run in which nothing got through measured nothing: say so in the exit status.
    if report.levels.iter().all(|l| l.ok == 0) {
        return Err(Error::invalid(
            "serve-bench: no request got a full answer (the first errors are above)",
        ));
    }
    Ok(())
}
