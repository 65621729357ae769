//! One request of the load: its JSON body, sending it, reading the answer (streamed or not)
//! and timing it.

use super::report::{Outcome, Status};
use super::sse::SseParser;
use super::{Config, Kind};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The HTTP client every worker shares (it pools connections per host).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What the workers share: the client, the endpoint, the request bodies.
pub struct Target {
    pub client: HttpClient,
    pub uri: Uri,
    pub auth: Option<HeaderValue>,
    pub kind: Kind,
    pub stream: bool,
    /// One body per built-in text, used in turn.
    pub bodies: Vec<Bytes>,
    /// Inputs per embeddings request.
    pub batch: usize,
}

/// The request bodies, one per text (embeddings: `batch` consecutive texts each).
pub fn bodies(config: &Config) -> Vec<Bytes> {
    let texts = &config.texts;
    (0..texts.len())
        .map(|i| {
            let body = match config.kind {
                Kind::Embeddings => {
                    let input: Vec<&str> = (0..config.batch)
                        .map(|j| texts[(i + j) % texts.len()].as_str())
                        .collect();
                    json!({ "model": config.model, "input": input })
                }
                Kind::Completions => json!({
                    "model": config.model,
                    "prompt": texts[i],
                    "max_tokens": config.max_tokens,
                    "temperature": 0.0,
                    "stream": config.stream,
                }),
                Kind::Chat => json!({
                    "model": config.model,
                    "messages": [{ "role": "user", "content": texts[i] }],
                    "max_tokens": config.max_tokens,
                    "temperature": 0.0,
                    "stream": config.stream,
                }),
            };
            Bytes::from(body.to_string())
        })
        .collect()
}

/// Sends request number `index` and waits for its whole answer, `limit` at most.
pub async fn send(target: &Target, index: usize, limit: Duration) -> Outcome {
    let start = Instant::now();
    match tokio::time::timeout(limit, exchange(target, index, start)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::failed(Status::TimedOut, start.elapsed(), "timed out"),
    }
}

async fn exchange(target: &Target, index: usize, start: Instant) -> Outcome {
    let body = target.bodies[index % target.bodies.len()].clone();
    let mut req = Request::post(target.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a request from a parsed URI and fixed headers");
    if let Some(auth) = &target.auth {
        req.headers_mut().insert(AUTHORIZATION, auth.clone());
    }
    let resp = match target.client.request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::failed(Status::Failed, start.elapsed(), error_chain(&e)),
    };
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        // Read the error body (it is small) so the connection can be reused.
        let text = match body.collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => e.to_string(),
        };
        let kind = match status {
            StatusCode::TOO_MANY_REQUESTS => Status::Rejected,
            StatusCode::SERVICE_UNAVAILABLE => Status::Unavailable,
            _ => Status::HttpError,
        };
        let text: String = text.chars().take(300).collect();
        return Outcome::failed(kind, start.elapsed(), format!("HTTP {status}: {text}"));
    }
    let streaming = target.stream && target.kind != Kind::Embeddings;
    let mut outcome = Outcome {
        status: Status::Ok,
        latency: Duration::ZERO,
        ttft: None,
        itl: Vec::new(),
        tokens: 0,
        embeddings: 0,
        error: None,
    };
    let mut whole = Vec::new();
    let mut sse = SseParser::new();
    let mut stream = StreamState::default();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Outcome::failed(Status::Failed, start.elapsed(), error_chain(&e)),
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if !streaming {
            whole.extend_from_slice(data);
            continue;
        }
        let now = Instant::now();
        for event in sse.push(data) {
            if let Err(e) = stream.event(target.kind, &event, start, now, &mut outcome) {
                return Outcome::failed(Status::Failed, start.elapsed(), e);
            }
        }
    }
    outcome.latency = start.elapsed();
    if streaming {
        if let Some(event) = sse.finish()
            && let Err(e) = stream.event(target.kind, &event, start, Instant::now(), &mut outcome)
        {
            return Outcome::failed(Status::Failed, outcome.latency, e);
        }
        if !stream.done {
            return Outcome::failed(
                Status::Failed,
                outcome.latency,
                "stream ended before [DONE]",
            );
        }
        outcome.tokens = stream.usage_tokens.unwrap_or(stream.chunks);
        return outcome;
    }
    match whole_answer(target, &whole) {
        Ok((tokens, embeddings)) => {
            outcome.tokens = tokens;
            outcome.embeddings = embeddings;
            outcome
        }
        Err(e) => Outcome::failed(Status::Failed, outcome.latency, e),
    }
}

/// Where a streamed answer stands.
#[derive(Default)]
struct StreamState {
    last: Option<Instant>,
    chunks: usize,
    usage_tokens: Option<usize>,
    done: bool,
}

impl StreamState {
    fn event(
        &mut self,
        kind: Kind,
        data: &str,
        start: Instant,
        now: Instant,
        out: &mut Outcome,
    ) -> Result<(), String> {
        if self.done {
            return Err("data after [DONE]".into());
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("bad chunk: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("error in stream: {err}"));
        }
        if let Some(t) = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
        {
            self.usage_tokens = Some(t as usize);
        }
        let text = match kind {
            Kind::Chat => v.pointer("/choices/0/delta/content"),
            _ => v.pointer("/choices/0/text"),
        };
        // Role and finish chunks are not tokens; a chunk of empty text before the finish is
        // one (a model served without a detokenizer streams those).
        let finishing = v
            .pointer("/choices/0/finish_reason")
            .is_some_and(|f| !f.is_null());
        let role = v.pointer("/choices/0/delta/role").is_some();
        if text.and_then(Value::as_str).is_some() && !finishing && !role {
            match self.last {
                None => out.ttft = Some(now - start),
                Some(last) => out.itl.push(now - last),
            }
            self.last = Some(now);
            self.chunks += 1;
        }
        Ok(())
    }
}

/// Checks a whole (not streamed) answer; returns its generated tokens and embeddings.
fn whole_answer(target: &Target, body: &[u8]) -> Result<(usize, usize), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON answer: {e}"))?;
    if target.kind == Kind::Embeddings {
        let data = v.get("data").and_then(Value::as_array);
        let n = data.map_or(0, |d| d.len());
        if n != target.batch {
            return Err(format!("{n} embeddings for {} inputs", target.batch));
        }
        return Ok((0, n));
    }
    if v.pointer("/choices/0").is_none() {
        return Err("answer without choices".into());
    }
    let tokens = v
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64);
    Ok((tokens.unwrap_or(0) as usize, 0))
}

/// An error with its sources (hyper's own messages say little: "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
