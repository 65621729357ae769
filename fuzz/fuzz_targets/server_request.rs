//! A request (method, one of the real routes, body) through the server's router in
//! process, with fake services: the answer must arrive within a second, must not be a 5xx,
//! and must be JSON (or JSON events) where the route promises JSON.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

sparq_fuzz::limit_allocations!();
use sparq::model::generate::{FinishReason, GenerateParams, Piece};
use sparq::model::text::ChatMessage;
use sparq::schedule::embedding::{EmbedInput, EmbedSink, Embedded, EmbeddingStats};
use sparq::schedule::generation::{EventSink, GenerationEvent, GenerationStats, GenerationSummary};
use sparq::{Error, Result};
use sparq_server::{CancelGuard, Embedder, Server, ServerConfig, TextGenerator};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Embeds each input as `[length, 1]`, answering at once.
struct FakeEmbedder;

impl Embedder for FakeEmbedder {
    fn dimension(&self) -> usize {
        2
    }
    fn max_tokens(&self) -> usize {
        32
    }
    fn submit(&self, inputs: Vec<EmbedInput>, sink: EmbedSink) -> Result<()> {
        let mut vectors = Vec::new();
        for i in &inputs {
            let len = match i {
                EmbedInput::Text(t) => t.len(),
                EmbedInput::Tokens(t) => t.len(),
            };
            if len == 0 {
                return Err(Error::invalid("empty input"));
            }
            vectors.push(vec![len as f32, 1.0]);
        }
        let prompt_tokens = vectors.len();
        sink(Ok(Embedded {
            vectors,
            prompt_tokens,
            queue_seconds: 0.0,
            total_seconds: 0.0,
        }));
        Ok(())
    }
    fn stats(&self) -> EmbeddingStats {
        EmbeddingStats::default()
    }
    fn close(&self) {}
    fn drain(&self, _: Duration) -> bool {
        true
    }
}

/// Tokenises text as its bytes; generates up to three pieces at once, then EOS.
struct FakeGenerator;

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
        let n = params.max_tokens.min(3);
        let mut tokens = Vec::new();
        let mut text = String::new();
        for i in 0..n {
            let piece = Piece {
                token: i as u32,
                text: format!("t{i} "),
            };
            if !sink(GenerationEvent::Piece(piece.clone())) {
                return Ok(Box::new(()));
            }
            tokens.push(piece.token);
            text.push_str(&piece.text);
        }
        sink(GenerationEvent::Done(GenerationSummary {
            tokens,
            text,
            finish: match n == params.max_tokens {
                true => FinishReason::Length,
                false => FinishReason::Eos,
            },
            prompt_tokens: prompt.len(),
            queue_seconds: 0.0,
            first_token_seconds: 0.0,
            total_seconds: 0.0,
            preemptions: 0,
        }));
        Ok(Box::new(()))
    }
    fn max_context(&self) -> usize {
        64
    }
    fn stats(&self) -> GenerationStats {
        GenerationStats::default()
    }
    fn close(&self) {}
    fn drain(&self, _: Duration) -> bool {
        true
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let server = Server::new(ServerConfig::default());
        server.add_embedder("emb", Arc::new(FakeEmbedder));
        server.add_generator("gen", Arc::new(FakeGenerator));
        server.set_ready();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Harness {
            rt,
            router: server.router(),
        }
    })
}

/// The real routes, and whether each answers JSON (`/metrics` is Prometheus text).
const ROUTES: &[(&str, bool)] = &[
    ("/v1/embeddings", true),
    ("/v1/completions", true),
    ("/v1/chat/completions", true),
    ("/v1/models", true),
    ("/health", true),
    ("/metrics", false),
    ("/v1/nowhere", true),
];

fuzz_target!(|data: &[u8]| {
    let [m, r, body @ ..] = data else { return };
    let method = match m % 4 {
        0 | 1 => Method::POST,
        2 => Method::GET,
        _ => Method::PUT,
    };
    let (path, json) = ROUTES[*r as usize % ROUTES.len()];
    let mut req = Request::builder().method(method).uri(path);
    if m & 0x10 == 0 {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.to_vec())).expect("a request");
    let h = harness();
    let (status, content_type, bytes) = h.rt.block_on(async {
        let answer = async {
            let resp = tower::ServiceExt::oneshot(h.router.clone(), req)
                .await
                .expect("the router is infallible");
            let status = resp.status();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
            (status, ct, bytes)
        };
        tokio::time::timeout(Duration::from_secs(1), answer)
            .await
            .expect("the answer arrives within a second")
    });
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !status.is_server_error(),
        "{path}: {status} for {body:?}: {text}"
    );
    if !json {
        return;
    }
    if content_type.starts_with("text/event-stream") {
        for event in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{path}: an event without data: {event:?}"));
            if data != "[DONE]" {
                serde_json::from_str::<serde_json::Value>(data)
                    .unwrap_or_else(|e| panic!("{path}: event {data:?} is not JSON: {e}"));
            }
        }
    } else {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|e| panic!("{path} ({status}): body {text:?} is not JSON: {e}"));
    }
});
