//! `GET /metrics`: Prometheus text (no key).

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::Arc;

/// The exposition, gauges read from the services now.
pub async fn handle(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let st2 = st.clone();
    // stats() takes the services' locks: keep it off the async workers.
    let text = tokio::task::spawn_blocking(move || st2.metrics.render(&st2))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
