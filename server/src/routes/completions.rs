//! `POST /v1/completions`.

use super::JsonBody;
use super::generate::{params, start};
use crate::error::ApiError;
use crate::openai::{self, CompletionRequest, Prompt, Usage, finish_reason, now_unix};
use crate::sse::{self, Chunk};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// OpenAI's default `max_tokens` for completions.
const DEFAULT_MAX_TOKENS: usize = 16;

/// Completes a prompt (text or token ids), plainly or streamed.
pub async fn handle(
    State(st): State<Arc<AppState>>,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (model, generator) = st.generator(&req.model)?;
    let prompt = match req.prompt {
        Prompt::Text(t) => generator.encode(&t)?,
        Prompt::Texts(v) if v.len() == 1 => generator.encode(&v[0])?,
        Prompt::Texts(_) => {
            return Err(ApiError::bad_param(
                "prompt",
                "only one prompt is supported",
            ));
        }
        Prompt::Tokens(t) => t,
    };
    let id = st.next_id();
    let p = params(
        &req.sampling,
        prompt.len(),
        generator.max_context(),
        Some(DEFAULT_MAX_TOKENS),
        id,
    )?;
    let run = start(&st, model.clone(), generator.as_ref(), prompt, p)?;
    let id = format!("cmpl-{id}");
    let created = now_unix();
    let name = model.name.clone();
    if req.sampling.stream.unwrap_or(false) {
        let include_usage = req.sampling.include_usage();
        let chunk = move |choices: serde_json::Value, usage: Option<Usage>| {
            openai::chunk(&id, "text_completion", created, &name, choices, usage)
        };
        let make = move |c: Chunk| match c {
            Chunk::Start => None,
            Chunk::Text(t) => Some(chunk(
                serde_json::json!([{ "index": 0, "text": t, "logprobs": null, "finish_reason": null }]),
                None,
            )),
            Chunk::Finish(f) => Some(chunk(
                serde_json::json!([{ "index": 0, "text": "", "logprobs": null, "finish_reason": f }]),
                None,
            )),
            Chunk::Usage(u) => Some(chunk(serde_json::json!([]), Some(u))),
        };
        return Ok(sse::stream(run, include_usage, Box::new(make)));
    }
    let s = run.finish().await?;
    Ok(Json(serde_json::json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": name,
        "choices": [{
            "index": 0,
            "text": s.text,
            "logprobs": null,
            "finish_reason": finish_reason(s.finish),
        }],
        "usage": Usage::generation(s.prompt_tokens, s.tokens.len()),
    }))
    .into_response())
}
