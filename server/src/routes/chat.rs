//! `POST /v1/chat/completions`.

use super::JsonBody;
use super::generate::{params, start};
use crate::error::ApiError;
use crate::openai::{self, ChatRequest, Usage, finish_reason, now_unix};
use crate::sse::{self, Chunk};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Answers a conversation rendered through the model's chat template, plainly or streamed.
/// Without `max_tokens` the answer may take all the context the prompt leaves.
pub async fn handle(
    State(st): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let (model, generator) = st.generator(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "messages is empty"));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| m.to_chat())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_param("messages", e))?;
    let prompt = generator.encode_chat(&messages)?;
    let id = st.next_id();
    let p = params(
        &req.sampling,
        prompt.len(),
        generator.max_context(),
        None,
        id,
    )?;
    let run = start(&st, model.clone(), generator.as_ref(), prompt, p)?;
    let id = format!("chatcmpl-{id}");
    let created = now_unix();
    let name = model.name.clone();
    if req.sampling.stream.unwrap_or(false) {
        let include_usage = req.sampling.include_usage();
        let chunk = move |choices: serde_json::Value, usage: Option<Usage>| {
            openai::chunk(&id, "chat.completion.chunk", created, &name, choices, usage)
        };
        let choice = |delta: serde_json::Value, finish: Option<&str>| serde_json::json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
        let make = move |c: Chunk| match c {
            Chunk::Start => Some(chunk(
                choice(
                    serde_json::json!({ "role": "assistant", "content": "" }),
                    None,
                ),
                None,
            )),
            Chunk::Text(t) => Some(chunk(
                choice(serde_json::json!({ "content": t }), None),
                None,
            )),
            Chunk::Finish(f) => Some(chunk(choice(serde_json::json!({}), Some(f)), None)),
            Chunk::Usage(u) => Some(chunk(serde_json::json!([]), Some(u))),
        };
        return Ok(sse::stream(run, include_usage, Box::new(make)));
    }
    let s = run.finish().await?;
    Ok(Json(serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": name,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": s.text },
            "logprobs": null,
            "finish_reason": finish_reason(s.finish),
        }],
        "usage": Usage::generation(s.prompt_tokens, s.tokens.len()),
    }))
    .into_response())
}
