//! `sparq serve`: an OpenAI-compatible HTTP server over sparq's schedulers (issue 15).
//!
//! [`Server`] answers `/v1/embeddings`, `/v1/completions`, `/v1/chat/completions`,
//! `/v1/models`, `/health` and `/metrics` for the models added to it. It binds and answers
//! (503, `loading`) before the models are in, so that a load balancer sees it come up; the
//! caller adds the models as they load ([`Server::add_embedder`], [`Server::add_generator`])
//! and then calls [`Server::set_ready`]. The services are reached through the
//! [`Embedder`] and [`TextGenerator`] traits, which the library's services implement.

pub mod auth;
pub mod config;
pub mod error;
pub mod loadgen;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod service;
pub mod sse;
pub mod state;

pub use config::ServerConfig;
pub use error::ApiError;
pub use service::{CancelGuard, Embedder, EngineGenerator, TextGenerator};
pub use state::{Phase, Service};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use state::AppState;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// How long after the shutdown grace [`Server::run`] still waits for open connections.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(5);

/// The HTTP server (cheap to clone: clones share one state).
#[derive(Clone)]
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// A server with no model yet, in [`Phase::Loading`].
    pub fn new(config: ServerConfig) -> Self {
        Server {
            state: Arc::new(AppState::new(config)),
        }
    }

    /// Serves embeddings as model `name` (replacing a model of that name).
    pub fn add_embedder(&self, name: impl Into<String>, embedder: Arc<dyn Embedder>) {
        self.state.add(name.into(), Service::Embedding(embedder));
    }

    /// Serves text generation as model `name` (replacing a model of that name).
    pub fn add_generator(&self, name: impl Into<String>, generator: Arc<dyn TextGenerator>) {
        self.state.add(name.into(), Service::Generation(generator));
    }

    /// Every model is in: `/health` answers 200 and the API serves (unless shutting down).
    pub fn set_ready(&self) {
        self.state.set_phase(Phase::Ready);
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// The routes, for serving on a listener of one's own (tests; [`Server::run`] uses it).
    pub fn router(&self) -> Router {
        let st = self.state.clone();
        let api = Router::new()
            .route("/v1/embeddings", post(routes::embeddings::handle))
            .route("/v1/completions", post(routes::completions::handle))
            .route("/v1/chat/completions", post(routes::chat::handle))
            .route("/v1/models", get(routes::models::handle))
            .route_layer(middleware::from_fn_with_state(st.clone(), gate));
        Router::new()
            .merge(api)
            .route("/health", get(routes::health::handle))
            .route("/metrics", get(routes::metrics::handle))
            .fallback(error::not_found)
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(middleware::from_fn_with_state(st.clone(), count_errors))
            .layer(DefaultBodyLimit::max(st.config.max_body_bytes))
            .with_state(st)
    }

    /// Serves on `listener` until `shutdown` completes; then `/health` and new requests
    /// answer 503, the services stop accepting, in-flight requests finish (streams keep
    /// streaming) within [`ServerConfig::shutdown_grace`] (past it the services end them
    /// with an error), and it returns once every connection is closed (or, for clients that
    /// stop reading, a few seconds past the grace).
    pub async fn run<F>(self, listener: tokio::net::TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        let grace = state.config.shutdown_grace;
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = signalled_tx.send(());
            state.set_phase(Phase::ShuttingDown);
            let models = state.models();
            for m in &models {
                m.service.close();
            }
            let end = Instant::now() + state.config.shutdown_grace;
            // The drain runs beside the graceful shutdown: past the grace it makes the
            // services end what is left, which ends the streams that hold connections open.
            tokio::task::spawn_blocking(move || {
                let mut all = true;
                for m in &models {
                    all &= m
                        .service
                        .drain(end.saturating_duration_since(Instant::now()));
                }
                let _ = drained_tx.send(all);
            });
        };
        // Without TCP_NODELAY a stream's first small write waits for the client's delayed
        // ACK of the response head (tens of milliseconds of time to first token).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                log::debug!("TCP_NODELAY on a connection: {e}");
            }
        });
        let serve = axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .into_future();
        // A client that stops reading keeps its connection open past every deadline: past
        // the grace and a margin, the server returns without it.
        let hard_stop = async move {
            match signalled_rx.await {
                Ok(()) => tokio::time::sleep(grace + HARD_STOP_MARGIN).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = serve => r?,
            _ = hard_stop => log::warn!("connections still open past the shutdown grace: closing them"),
        }
        if let Ok(false) = drained_rx.await {
            log::warn!("the shutdown deadline passed: the requests left were ended with an error");
        }
        Ok(())
    }
}

/// The API's door: the key, then whether the server takes requests now.
async fn gate(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Err(e) = auth::check(&st.config.api_keys, req.headers()) {
        return e.into_response();
    }
    match st.phase() {
        Phase::Loading => ApiError::unavailable("the models are loading").into_response(),
        Phase::ShuttingDown => ApiError::unavailable("the server is shutting down").into_response(),
        Phase::Ready => next.run(req).await,
    }
}

async fn count_errors(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status().as_u16() >= 400 {
        st.metrics.error(resp.status().as_u16());
    }
    resp
}
