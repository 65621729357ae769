//! Server-sent events of a running generation: `data: {json}\n\n` per chunk, a last chunk
//! with the finish reason, an optional usage chunk, then `data: [DONE]\n\n`.

use crate::openai::{Usage, finish_reason};
use crate::routes::generate::{Running, Step};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;

/// What a chunk carries; the endpoint turns it into its own JSON.
pub enum Chunk<'a> {
    /// Before the first token (chat sends the role here).
    Start,
    /// Generated text.
    Text(&'a str),
    /// The end, with the OpenAI finish reason.
    Finish(&'static str),
    /// The usage (`stream_options.include_usage`).
    Usage(Usage),
}

/// Builds an endpoint's chunk JSON; `None` sends nothing for it.
pub type ChunkFn = Box<dyn Fn(Chunk) -> Option<serde_json::Value> + Send>;

fn frame(out: &mut Vec<u8>, data: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

struct Live {
    run: Running,
    make: ChunkFn,
    include_usage: bool,
    started: bool,
}

/// The response streaming `run`. Dropping the body (a client that went away) drops `run`,
/// which cancels the request in the engine.
pub fn stream(run: Running, include_usage: bool, make: ChunkFn) -> Response {
    let live = Live {
        run,
        make,
        include_usage,
        started: false,
    };
    let body = futures_util::stream::unfold(Some(live), |live| async move {
        let mut live = live?;
        let mut out = Vec::new();
        if !live.started {
            live.started = true;
            if let Some(v) = (live.make)(Chunk::Start) {
                frame(&mut out, &v.to_string());
            }
        }
        loop {
            match live.run.next().await {
                Step::Piece(p) if p.text.is_empty() && live.run.detokenizes() => continue,
                Step::Piece(p) => {
                    if let Some(v) = (live.make)(Chunk::Text(&p.text)) {
                        frame(&mut out, &v.to_string());
                    }
                    return Some((Ok::<_, Infallible>(Bytes::from(out)), Some(live)));
                }
                Step::Done(s) => {
                    if let Some(v) = (live.make)(Chunk::Finish(finish_reason(s.finish))) {
                        frame(&mut out, &v.to_string());
                    }
                    if live.include_usage {
                        let usage = Usage::generation(s.prompt_tokens, s.tokens.len());
                        if let Some(v) = (live.make)(Chunk::Usage(usage)) {
                            frame(&mut out, &v.to_string());
                        }
                    }
                    frame(&mut out, "[DONE]");
                    return Some((Ok(Bytes::from(out)), None));
                }
                Step::Failed(e) => {
                    // The status line went out with the first byte: the error is a chunk.
                    live.run.state().metrics.error(e.status.as_u16());
                    frame(&mut out, &e.body().to_string());
                    frame(&mut out, "[DONE]");
                    return Some((Ok(Bytes::from(out)), None));
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
