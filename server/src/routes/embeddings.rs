//! `POST /v1/embeddings`.

use super::JsonBody;
use crate::error::ApiError;
use crate::openai::{EmbeddingInput, EmbeddingRequest};
use crate::state::{Admitted, AppState, InFlight};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use sparq::schedule::embedding::EmbedInput;
use std::sync::Arc;
use tokio::time::Instant;

/// Embeds the inputs in one request to the service (which batches it with others).
pub async fn handle(
    State(st): State<Arc<AppState>>,
    JsonBody(req): JsonBody<EmbeddingRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let deadline = Instant::now() + st.config.request_timeout;
    let (model, embedder) = st.embedder(&req.model)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_param(
                "encoding_format",
                format!("encoding_format must be float or base64, not '{other}'"),
            ));
        }
    };
    let inputs: Vec<EmbedInput> = match req.input {
        EmbeddingInput::Text(t) => vec![EmbedInput::Text(t)],
        EmbeddingInput::Texts(v) => v.into_iter().map(EmbedInput::Text).collect(),
        EmbeddingInput::Tokens(t) => vec![EmbedInput::Tokens(t)],
        EmbeddingInput::TokenLists(v) => v.into_iter().map(EmbedInput::Tokens).collect(),
    };
    if inputs.is_empty() {
        return Err(ApiError::bad_param("input", "input is empty"));
    }
    let n = inputs.len();
    let _in_flight = InFlight::new(model.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    embedder.submit(
        inputs,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    let mut admitted = Admitted::new(&st, &model);
    let got = tokio::time::timeout_at(deadline, rx).await;
    admitted.answered();
    let done = match got {
        Err(_) => return Err(ApiError::timeout(st.config.request_timeout.as_secs_f64())),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the embedding service dropped the request",
            ));
        }
        Ok(Ok(r)) => r?,
    };
    let m = &st.metrics;
    let label = [model.name.as_str()];
    m.embeddings.with_label_values(&label).inc_by(n as u64);
    m.prompt_tokens
        .with_label_values(&label)
        .inc_by(done.prompt_tokens as u64);
    m.queue
        .with_label_values(&label)
        .observe(done.queue_seconds);
    m.e2e.with_label_values(&label).observe(done.total_seconds);
    let data: Vec<_> = done
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": { "prompt_tokens": done.prompt_tokens, "total_tokens": done.prompt_tokens },
    })))
}
