//! The server's limits.

use std::time::Duration;

/// Limits of a [`crate::Server`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Bearer keys the API accepts; empty: no key needed.
    pub api_keys: Vec<String>,
    /// Largest request body; beyond it: 413.
    pub max_body_bytes: usize,
    /// A request's deadline: a plain answer past it is 504, a stream ends with an error chunk.
    pub request_timeout: Duration,
    /// How long the shutdown waits for accepted requests before it ends them.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_keys: Vec::new(),
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
