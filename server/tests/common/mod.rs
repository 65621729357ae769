//! Fake services and an in-process server for the HTTP tests.
#![allow(dead_code)]

use sparq::model::generate::{FinishReason, GenerateParams, Piece};
use sparq::model::text::ChatMessage;
use sparq::schedule::embedding::{EmbedInput, EmbedSink, Embedded, EmbeddingStats};
use sparq::schedule::generation::{
    EventSink, GenerationEvent, GenerationStats, GenerationSummary, ReplicaStats,
};
use sparq::{Error, Result, ServiceError};
use sparq_server::{CancelGuard, Embedder, Server, ServerConfig, TextGenerator};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Embeds input `i` as `[length, first unit, kind]` (kind 1 text, 2 tokens).
#[derive(Default)]
pub struct FakeEmbedder {
    pub closed: AtomicBool,
}

impl Embedder for FakeEmbedder {
    fn dimension(&self) -> usize {
        3
    }
    fn max_tokens(&self) -> usize {
        32
    }
    fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown.into());
        }
        let mut vectors = Vec::new();
        let mut tokens = 0;
        for i in &inputs {
            let v = match i {
                EmbedInput::Text(t) if t.is_empty() => return Err(Error::invalid("empty text")),
                EmbedInput::Text(t) => vec![t.len() as f32, t.as_bytes()[0] as f32, 1.0],
                EmbedInput::Tokens(t) if t.is_empty() => return Err(Error::invalid("no tokens")),
                EmbedInput::Tokens(t) => vec![t.len() as f32, t[0] as f32, 2.0],
            };
            tokens += v[0] as usize;
            vectors.push(v);
        }
        std::thread::spawn(move || {
            sink(Ok(Embedded {
                vectors,
                prompt_tokens: tokens,
                queue_seconds: 0.001,
                total_seconds: 0.002,
            }))
        });
        Ok(())
    }
    fn stats(&self) -> EmbeddingStats {
        EmbeddingStats {
            last_batch_rows: 2,
            devices: vec![("fake0".into(), None)],
            ..EmbeddingStats::default()
        }
    }
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
    fn drain(&self, _: Duration) -> bool {
        true
    }
}

/// Generates `pieces` tokens (piece `i` is `t{i} `, every third one empty text) `delay`
/// apart, then EOS; tokenises text as its bytes.
pub struct FakeGenerator {
    pub context: usize,
    pub pieces: usize,
    pub delay: Duration,
    pub overloaded: bool,
    pub closed: AtomicBool,
    /// Requests running now.
    pub active: Arc<AtomicUsize>,
    /// Requests whose guard was dropped before they ended.
    pub cancelled: Arc<AtomicUsize>,
    pub drained: AtomicBool,
}

impl FakeGenerator {
    pub fn new(pieces: usize, delay: Duration) -> Self {
        FakeGenerator {
            context: 64,
            pieces,
            delay,
            overloaded: false,
            closed: AtomicBool::new(false),
            active: Arc::default(),
            cancelled: Arc::default(),
            drained: AtomicBool::new(false),
        }
    }

    /// The text of `n` pieces.
    pub fn text(n: usize) -> String {
        (0..n).map(piece_text).collect()
    }
}

fn piece_text(i: usize) -> String {
    if i % 3 == 2 {
        String::new()
    } else {
        format!("t{i} ")
    }
}

struct Guard(Arc<AtomicBool>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl TextGenerator for FakeGenerator {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text: String = messages
            .iter()
            .map(|m| format!("{}: {}\n", m.role, m.content))
            .collect();
        self.encode(&text)
    }
    fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
        mut sink: EventSink,
    ) -> Result<CancelGuard> {
        if self.overloaded {
            return Err(ServiceError::Overloaded {
                waiting: 4,
                limit: 4,
                retry_after_s: 3,
            }
            .into());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown.into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (active, cancelled) = (self.active.clone(), self.cancelled.clone());
        let (pieces, delay) = (self.pieces, self.delay);
        active.fetch_add(1, Ordering::AcqRel);
        std::thread::spawn(move || {
            let start = Instant::now();
            let n = pieces.min(params.max_tokens);
            let mut tokens = Vec::new();
            let mut text = String::new();
            for i in 0..n {
                std::thread::sleep(delay);
                let piece = Piece {
                    token: i as u32,
                    text: piece_text(i),
                };
                if flag.load(Ordering::Acquire) || !sink(GenerationEvent::Piece(piece.clone())) {
                    cancelled.fetch_add(1, Ordering::AcqRel);
                    active.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
                tokens.push(piece.token);
                text.push_str(&piece.text);
            }
            let finish = match n == params.max_tokens {
                true => FinishReason::Length,
                false => FinishReason::Eos,
            };
            let secs = start.elapsed().as_secs_f64();
            sink(GenerationEvent::Done(GenerationSummary {
                tokens,
                text,
                finish,
                prompt_tokens: prompt.len(),
                queue_seconds: 0.0,
                first_token_seconds: secs.min(delay.as_secs_f64()),
                total_seconds: secs,
                preemptions: 0,
            }));
            active.fetch_sub(1, Ordering::AcqRel);
        });
        Ok(Box::new(Guard(stop)))
    }
    fn max_context(&self) -> usize {
        self.context
    }
    fn stats(&self) -> GenerationStats {
        GenerationStats {
            running: self.active.load(Ordering::Acquire),
            replicas: vec![ReplicaStats {
                name: "fake0".into(),
                failed: None,
                running: 0,
                kv_free_blocks: 3,
                kv_total_blocks: 4,
                last_step_sequences: 1,
                last_step_tokens: 1,
                steps: 1,
            }],
            ..GenerationStats::default()
        }
    }
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
    fn drain(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while self.active.load(Ordering::Acquire) > 0 {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.drained.store(true, Ordering::Release);
        true
    }
}

/// A server on 127.0.0.1 (port 0) with models `emb`, `gen` and `busy` (always overloaded),
/// plus a second listener serving the same routes without the shutdown (to see what the
/// server answers while it shuts down).
pub struct Harness {
    pub base: String,
    pub side: String,
    pub server: Server,
    pub gen_model: Arc<FakeGenerator>,
    pub rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub agent: ureq::Agent,
}

pub fn start(config: ServerConfig, generator: FakeGenerator, ready: bool) -> Harness {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = Server::new(config);
    let gen_model = Arc::new(generator);
    server.add_embedder("emb", Arc::new(FakeEmbedder::default()));
    server.add_generator("gen", gen_model.clone());
    let mut busy = FakeGenerator::new(1, Duration::ZERO);
    busy.overloaded = true;
    server.add_generator("busy", Arc::new(busy));
    if ready {
        server.set_ready();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (base, side, done) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let side = format!("http://{}", l2.local_addr().unwrap());
        let router = server.router();
        tokio::spawn(async move { axum::serve(l2, router).await });
        let run = server.clone().run(l, async move {
            let _ = stopped.await;
        });
        (base, side, tokio::spawn(run))
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Harness {
        base,
        side,
        server,
        gen_model,
        rt,
        stop: Some(stop),
        done: Some(done),
        agent,
    }
}

/// The ready server with a quick generator of 7 pieces.
pub fn quick() -> Harness {
    start(
        ServerConfig::default(),
        FakeGenerator::new(7, Duration::ZERO),
        true,
    )
}

/// A status, the body and `Retry-After`.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub content_type: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts an OpenAI-shaped error with `status`.
    pub fn assert_error(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        v
    }
}

fn reply(r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("an answer");
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type").unwrap_or_default();
    Reply {
        status: r.status().as_u16(),
        retry_after,
        content_type,
        body: r.body_mut().read_to_string().unwrap(),
    }
}

impl Harness {
    pub fn post_to(&self, base: &str, path: &str, body: &str, key: Option<&str>) -> Reply {
        let mut req = self
            .agent
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        reply(req.send(body))
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.post_to(&self.base, path, body, None)
    }

    pub fn get_from(&self, base: &str, path: &str, key: Option<&str>) -> Reply {
        let mut req = self.agent.get(format!("{base}{path}"));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        reply(req.call())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_from(&self.base, path, None)
    }

    /// Sends the shutdown signal.
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits for `run` to return (at most 10 s).
    pub fn join(&mut self) -> std::io::Result<()> {
        let done = self.done.take().expect("joined once");
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), done).await })
            .expect("run returns")
            .expect("run does not panic")
    }
}

/// The `data:` payloads of an SSE body.
pub fn events(body: &str) -> Vec<String> {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body:?}");
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{f:?}"))
                .to_string()
        })
        .collect()
}
