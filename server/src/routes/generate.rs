//! What completions and chat share: the parameters checked against the model, and a
//! running generation read from the engine's thread.

use crate::error::ApiError;
use crate::openai::{Sampling, Stop};
use crate::service::{CancelGuard, TextGenerator};
use crate::state::{Admitted, AppState, InFlight, ServedModel};
use axum::http::StatusCode;
use sparq::model::generate::{GenerateParams, Piece};
use sparq::model::sampling::SamplingParams;
use sparq::schedule::generation::{GenerationEvent, GenerationSummary};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// The engine's parameters from the request's, checked against the context: the prompt must
/// leave room for a token, and `max_tokens` (`default_max` when absent; all that fits when
/// that is `None` too) must fit after it.
pub fn params(
    s: &Sampling,
    prompt_len: usize,
    context: usize,
    default_max: Option<usize>,
    fallback_seed: u64,
) -> Result<GenerateParams, ApiError> {
    if let Some(n) = s.n
        && n != 1
    {
        return Err(ApiError::bad_param("n", "only n = 1 is supported"));
    }
    if prompt_len == 0 {
        return Err(ApiError::bad_param("prompt", "the prompt is empty"));
    }
    if prompt_len >= context {
        return Err(ApiError::bad_param(
            "prompt",
            format!("the prompt has {prompt_len} tokens; the model's context is {context} tokens"),
        ));
    }
    let room = context - prompt_len;
    let max_tokens = match s.max_tokens.or(s.max_completion_tokens) {
        Some(0) => {
            return Err(ApiError::bad_param(
                "max_tokens",
                "max_tokens must be at least 1",
            ));
        }
        Some(m) if m > room as u64 => {
            return Err(ApiError::bad_param(
                "max_tokens",
                format!(
                    "{prompt_len} prompt tokens + max_tokens {m} exceed the model's context of \
                     {context} tokens"
                ),
            ));
        }
        Some(m) => m as usize,
        None => default_max.unwrap_or(room).min(room),
    };
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_param(
            "temperature",
            "temperature must be in [0, 2]",
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_param("top_p", "top_p must be in (0, 1]"));
    }
    let stop = match &s.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_param(
            "stop",
            "stop takes at most 4 non-empty strings",
        ));
    }
    Ok(GenerateParams {
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_p,
            seed: s.seed.unwrap_or(fallback_seed),
            ..SamplingParams::default()
        },
        stop,
        eos: Vec::new(),
    })
}

/// One thing a running generation gives.
pub enum Step {
    /// A generated token's piece.
    Piece(Piece),
    /// The end.
    Done(GenerationSummary),
    /// A failure (the engine's, or the request's deadline).
    Failed(ApiError),
}

/// A submitted generation; dropping it cancels the request in the engine.
pub struct Running {
    rx: UnboundedReceiver<GenerationEvent>,
    _guard: CancelGuard,
    _in_flight: InFlight,
    admitted: Admitted,
    state: Arc<AppState>,
    model: Arc<ServedModel>,
    deadline: Instant,
    last_piece: Option<Instant>,
    detokenizes: bool,
}

/// Submits `prompt`; the engine's sink forwards events to this task's channel and reports
/// the request cancelled once the [`Running`] (the receiver) is gone.
pub fn start(
    state: &Arc<AppState>,
    model: Arc<ServedModel>,
    generator: &dyn TextGenerator,
    prompt: Vec<u32>,
    params: GenerateParams,
) -> Result<Running, ApiError> {
    let deadline = Instant::now() + state.config.request_timeout;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let guard = generator.submit(prompt, params, Box::new(move |e| tx.send(e).is_ok()))?;
    Ok(Running {
        rx,
        _guard: guard,
        _in_flight: InFlight::new(model.clone()),
        admitted: Admitted::new(state, &model),
        state: state.clone(),
        model,
        deadline,
        last_piece: None,
        detokenizes: generator.detokenizes(),
    })
}

impl Running {
    /// The next event, or the deadline.
    pub async fn next(&mut self) -> Step {
        let got = tokio::time::timeout_at(self.deadline, self.rx.recv()).await;
        let m = &self.state.metrics;
        let label = [self.model.name.as_str()];
        if !matches!(got, Ok(Some(GenerationEvent::Piece(_)))) {
            self.admitted.answered();
        }
        match got {
            Err(_) => Step::Failed(ApiError::timeout(
                self.state.config.request_timeout.as_secs_f64(),
            )),
            Ok(None) => Step::Failed(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the generation ended without an answer",
            )),
            Ok(Some(GenerationEvent::Piece(p))) => {
                let now = Instant::now();
                if let Some(last) = self.last_piece {
                    m.itl
                        .with_label_values(&label)
                        .observe((now - last).as_secs_f64());
                }
                self.last_piece = Some(now);
                Step::Piece(p)
            }
            Ok(Some(GenerationEvent::Done(s))) => {
                m.ttft
                    .with_label_values(&label)
                    .observe(s.first_token_seconds);
                m.e2e.with_label_values(&label).observe(s.total_seconds);
                m.queue.with_label_values(&label).observe(s.queue_seconds);
                m.prompt_tokens
                    .with_label_values(&label)
                    .inc_by(s.prompt_tokens as u64);
                m.generation_tokens
                    .with_label_values(&label)
                    .inc_by(s.tokens.len() as u64);
                Step::Done(s)
            }
            Ok(Some(GenerationEvent::Failed(e))) => Step::Failed(e.into()),
        }
    }

    /// Runs to the end (a plain, non-streamed answer).
    pub async fn finish(mut self) -> Result<GenerationSummary, ApiError> {
        loop {
            match self.next().await {
                Step::Piece(_) => {}
                Step::Done(s) => return Ok(s),
                Step::Failed(e) => return Err(e),
            }
        }
    }

    /// Whether pieces carry text (see [`TextGenerator::detokenizes`]).
    pub fn detokenizes(&self) -> bool {
        self.detokenizes
    }

    /// The server's metrics and state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }
}
