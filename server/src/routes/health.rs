//! `GET /health`: the readiness probe (no key).

use crate::state::{AppState, Phase};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

/// 200 `ok` when serving; 503 `loading` or `shutting_down` otherwise.
pub async fn handle(State(st): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    let (status, word) = match st.phase() {
        Phase::Loading => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
        Phase::Ready => (StatusCode::OK, "ok"),
        Phase::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
    };
    (status, Json(serde_json::json!({ "status": word })))
}
