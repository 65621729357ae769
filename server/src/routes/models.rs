//! `GET /v1/models`.

use crate::openai::now_unix;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

/// The served models.
pub async fn handle(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let created = now_unix();
    let data: Vec<_> = st
        .models()
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.name,
                "object": "model",
                "created": created,
                "owned_by": "sparq",
                "kind": m.service.kind(),
            })
        })
        .collect();
    Json(serde_json::json!({ "object": "list", "data": data }))
}
