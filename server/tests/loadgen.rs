//! The load generator (`sparq_server::loadgen`) against a small axum stand-in for an
//! OpenAI-compatible server whose answers are known: every third embeddings request is
//! refused with 429, streamed completions send a fixed number of chunks at a fixed pace, one
//! model is unavailable (503), one stream is cut before `[DONE]`, and chat never answers in
//! time. The counts must come out exact and the run must stay within its limits.

use axum::Router;
use axum::body::Body;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sparq_server::loadgen::{self, Config, Kind, Report};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Text chunks per streamed completion, and the pause before each.
const CHUNKS: usize = 4;
const PACE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Counters {
    embeddings: AtomicUsize,
    unauthorized: AtomicUsize,
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "test", "code": null}});
    (status, Json(body)).into_response()
}

async fn embeddings(
    State(c): State<Arc<Counters>>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some("Bearer k")
    {
        c.unauthorized.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::UNAUTHORIZED, "bad key");
    }
    if req["model"] == "down" {
        return error(StatusCode::SERVICE_UNAVAILABLE, "loading");
    }
    let n = c.embeddings.fetch_add(1, Ordering::Relaxed) + 1;
    if n % 3 == 0 {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "queue full");
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let inputs = req["input"].as_array().map_or(0, |a| a.len());
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.5, -0.5]}))
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": req["model"],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
    )
    .into_response()
}

async fn completions(Json(req): Json<Value>) -> Response {
    if req["stream"] != true {
        let body = json!({"choices": [{"text": "abcd", "index": 0, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS, "total_tokens": 3 + CHUNKS}});
        return Json(body).into_response();
    }
    let cut = req["model"] == "cut";
    let events = futures_util::stream::unfold(0usize, move |i| async move {
        let event = match i {
            i if i < CHUNKS => {
                tokio::time::sleep(PACE).await;
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"text": "t", "index": 0}]})
                )
            }
            _ if cut => return None,
            i if i == CHUNKS => format!(
                "data: {}\n\n",
                json!({"choices": [{"text": "", "index": 0, "finish_reason": "length"}],
                    "usage": {"completion_tokens": CHUNKS}})
            ),
            i if i == CHUNKS + 1 => "data: [DONE]\n\n".to_string(),
            _ => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), i + 1))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(events))
        .expect("a valid response")
}

async fn chat_never() -> Response {
    tokio::time::sleep(Duration::from_secs(30)).await;
    error(StatusCode::INTERNAL_SERVER_ERROR, "too late")
}

/// Starts the stand-in on a free loopback port; returns its base URL and counters.
fn stand_in() -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_never))
        .with_state(Arc::clone(&counters));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (format!("http://{addr}"), counters)
}

fn config(url: &str, kind: Kind, model: &str) -> Config {
    let mut c = Config::new(url, kind, model);
    c.api_key = Some("k".into());
    c.request_timeout = Duration::from_secs(20);
    c.time_limit = Duration::from_secs(60);
    c
}

fn run(c: &Config) -> Report {
    let report = loadgen::run(c).expect("the run starts");
    eprintln!("{}", report.markdown());
    report
}

#[test]
fn embeddings_count_429_without_failing() {
    let (url, counters) = stand_in();
    let mut c = config(&url, Kind::Embeddings, "m");
    c.concurrency = vec![1, 4];
    c.requests = 9;
    c.batch = 2;
    let r = run(&c);
    assert_eq!(r.levels.len(), 2);
    for l in &r.levels {
        // The stand-in refuses its 3rd, 6th, ... request: 3 of every level's 9.
        assert_eq!(l.requests, 9);
        assert_eq!((l.ok, l.rejected_429), (6, 3), "{l:?}");
        assert_eq!(
            l.unavailable_503 + l.timed_out + l.http_errors + l.failed,
            0
        );
        assert_eq!(l.embeddings, 12);
        assert_eq!(l.latency.count, 6);
        assert!(l.first_error.as_deref().unwrap().contains("429"));
        assert!(l.requests_per_s > 0.0 && l.embeddings_per_s > l.requests_per_s);
    }
    assert_eq!(counters.embeddings.load(Ordering::Relaxed), 18);
    assert_eq!(counters.unauthorized.load(Ordering::Relaxed), 0);
    assert!(!r.stopped_by_time_limit);
    let json: Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["levels"][1]["rejected_429"], 3);

    // No key: every request is a 401, counted as an HTTP error.
    c.api_key = None;
    c.concurrency = vec![2];
    c.requests = 3;
    let l = &run(&c).levels[0];
    assert_eq!((l.ok, l.http_errors), (0, 3));
    assert!(l.first_error.as_deref().unwrap().contains("401"));

    let mut c = config(&url, Kind::Embeddings, "down");
    c.concurrency = vec![3];
    c.requests = 5;
    let l = &run(&c).levels[0];
    assert_eq!((l.ok, l.unavailable_503), (0, 5));
}

#[test]
fn streamed_completions_time_tokens() {
    let (url, _) = stand_in();
    let mut c = config(&url, Kind::Completions, "m");
    c.concurrency = vec![2];
    c.requests = 4;
    let l = &run(&c).levels[0];
    assert_eq!((l.requests, l.ok), (4, 4), "{l:?}");
    assert_eq!(l.generated_tokens, 4 * CHUNKS);
    // One TTFT per stream, CHUNKS - 1 gaps per stream, each at least the stand-in's pace.
    assert_eq!(l.ttft.count, 4);
    assert_eq!(l.itl.count, 4 * (CHUNKS - 1));
    let pace = PACE.as_secs_f64() * 1e3;
    assert!(
        l.ttft.p50_ms >= pace && l.ttft.p99_ms >= l.ttft.p50_ms,
        "{:?}",
        l.ttft
    );
    assert!(
        l.itl.p50_ms >= pace * 0.9 && l.itl.p99_ms < 5_000.0,
        "{:?}",
        l.itl
    );
    assert!(l.latency.p50_ms >= pace * CHUNKS as f64 * 0.9);
    assert!(l.tokens_per_s > 0.0);

    // Not streamed: the tokens come from `usage`, and there is no TTFT.
    c.stream = false;
    let l = &run(&c).levels[0];
    assert_eq!((l.ok, l.generated_tokens, l.ttft.count), (4, 4 * CHUNKS, 0));

    // A stream that ends without [DONE] is not a full answer.
    let mut c = config(&url, Kind::Completions, "cut");
    c.concurrency = vec![1];
    c.requests = 2;
    let l = &run(&c).levels[0];
    assert_eq!((l.ok, l.failed), (0, 2), "{l:?}");
    assert!(l.first_error.as_deref().unwrap().contains("[DONE]"));
}

#[test]
fn bounded_by_timeouts() {
    let (url, _) = stand_in();
    let mut c = config(&url, Kind::Chat, "m");
    c.concurrency = vec![2];
    c.requests = 3;
    c.request_timeout = Duration::from_millis(200);
    let start = Instant::now();
    let r = run(&c);
    assert_eq!((r.levels[0].timed_out, r.levels[0].ok), (3, 0));
    assert!(!r.stopped_by_time_limit);
    assert!(start.elapsed() < Duration::from_secs(10));

    // The overall limit cuts the requests in flight and skips the levels left.
    c.concurrency = vec![2, 4];
    c.request_timeout = Duration::from_secs(60);
    c.time_limit = Duration::from_millis(300);
    let start = Instant::now();
    let r = run(&c);
    assert!(r.stopped_by_time_limit);
    assert_eq!(r.levels.len(), 1);
    assert_eq!((r.levels[0].timed_out, r.levels[0].requests), (2, 2));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn nothing_listening_and_bad_settings() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut c = config(
        &format!("http://127.0.0.1:{port}/v1/"),
        Kind::Embeddings,
        "m",
    );
    c.concurrency = vec![2];
    c.requests = 3;
    let l = &run(&c).levels[0];
    assert_eq!((l.ok, l.failed), (0, 3));

    c.concurrency = vec![];
    assert!(loadgen::run(&c).is_err());
    c.concurrency = vec![1];
    c.url = "https://example.invalid".into();
    assert!(loadgen::run(&c).is_err());
}
