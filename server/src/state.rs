//! The state every handler shares: the models, the server's phase, its limits and metrics.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::service::{Embedder, TextGenerator};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// What a served model does.
#[derive(Clone)]
pub enum Service {
    /// Embeddings.
    Embedding(Arc<dyn Embedder>),
    /// Text generation.
    Generation(Arc<dyn TextGenerator>),
}

/// A model the server answers for.
pub struct ServedModel {
    /// The name clients put in `model`.
    pub name: String,
    /// Its service.
    pub service: Service,
    /// Requests being answered now (for embeddings' running gauge).
    pub in_flight: AtomicUsize,
}

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Models are loading: `/health` and the API answer 503.
    Loading,
    /// Serving.
    Ready,
    /// The shutdown signal came: no new requests, in-flight ones finish.
    ShuttingDown,
}

impl Service {
    /// Stops accepting requests.
    pub fn close(&self) {
        match self {
            Service::Embedding(e) => e.close(),
            Service::Generation(g) => g.close(),
        }
    }

    /// Waits for the accepted requests, at most `deadline`.
    pub fn drain(&self, deadline: std::time::Duration) -> bool {
        match self {
            Service::Embedding(e) => e.drain(deadline),
            Service::Generation(g) => g.drain(deadline),
        }
    }

    /// `embedding` or `generation`.
    pub fn kind(&self) -> &'static str {
        match self {
            Service::Embedding(_) => "embedding",
            Service::Generation(_) => "generation",
        }
    }
}

/// Counts a request as in flight on its model until dropped.
pub struct InFlight(Arc<ServedModel>);

impl InFlight {
    /// Counts one more request on `m`.
    pub fn new(m: Arc<ServedModel>) -> Self {
        m.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(m)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request a service accepted: counted accepted when made, then answered
/// ([`Admitted::answered`]) or, when dropped first (the client went away), cancelled. What
/// lets a load test check that every accepted request was answered.
pub struct Admitted {
    state: Arc<AppState>,
    model: Arc<ServedModel>,
    answered: bool,
}

impl Admitted {
    /// Counts one accepted request of `model`.
    pub fn new(state: &Arc<AppState>, model: &Arc<ServedModel>) -> Self {
        state
            .metrics
            .accepted
            .with_label_values(&[model.name.as_str()])
            .inc();
        Admitted {
            state: state.clone(),
            model: model.clone(),
            answered: false,
        }
    }

    /// Counts the request answered (once).
    pub fn answered(&mut self) {
        if !std::mem::replace(&mut self.answered, true) {
            let m = &self.state.metrics;
            m.answered
                .with_label_values(&[self.model.name.as_str()])
                .inc();
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.answered {
            let m = &self.state.metrics;
            m.cancelled
                .with_label_values(&[self.model.name.as_str()])
                .inc();
        }
    }
}

/// Shared by the handlers.
pub struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    models: RwLock<Vec<Arc<ServedModel>>>,
    phase: AtomicU8,
    next_id: AtomicU64,
}

impl AppState {
    pub(crate) fn new(config: ServerConfig) -> Self {
        AppState {
            config,
            metrics: Metrics::new(),
            models: RwLock::new(Vec::new()),
            phase: AtomicU8::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Loading,
            1 => Phase::Ready,
            _ => Phase::ShuttingDown,
        }
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        let v = match p {
            Phase::Loading => 0,
            Phase::Ready => 1,
            Phase::ShuttingDown => 2,
        };
        // Shutting down is final: a late "ready" from the loader must not undo it.
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != 2).then_some(v)
            });
    }

    pub(crate) fn add(&self, name: String, service: Service) {
        let m = Arc::new(ServedModel {
            name,
            service,
            in_flight: AtomicUsize::new(0),
        });
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        models.retain(|o| o.name != m.name);
        models.push(m);
    }

    /// The models, in the order they were added.
    pub fn models(&self) -> Vec<Arc<ServedModel>> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.models()
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ApiError::unknown_model(name))
    }

    /// A generation model by name (404 unknown, 400 an embedding model).
    pub fn generator(
        &self,
        name: &str,
    ) -> Result<(Arc<ServedModel>, Arc<dyn TextGenerator>), ApiError> {
        let m = self.model(name)?;
        match &m.service {
            Service::Generation(g) => Ok((m.clone(), g.clone())),
            Service::Embedding(_) => Err(ApiError::bad_param(
                "model",
                format!("'{name}' is an embedding model, it does not generate text"),
            )),
        }
    }

    /// An embedding model by name (404 unknown, 400 a generation model).
    pub fn embedder(&self, name: &str) -> Result<(Arc<ServedModel>, Arc<dyn Embedder>), ApiError> {
        let m = self.model(name)?;
        match &m.service {
            Service::Embedding(e) => Ok((m.clone(), e.clone())),
            Service::Generation(_) => Err(ApiError::bad_param(
                "model",
                format!("'{name}' is a generation model, it does not embed"),
            )),
        }
    }

    /// A fresh request number.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
