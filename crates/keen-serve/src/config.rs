//! [`ServeConfig`]: the server's limits, resolved and checked before anything starts.

use std::time::Duration;

use crate::error::ServeError;

/// Limits and batching settings of a server. `Default` is a sensible small-CPU setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Most images run in one batch.
    pub max_batch: usize,
    /// Longest time the first request of a batch waits for others to join it. Zero (the
    /// default) batches greedily: the worker takes whatever queued while it was busy, so
    /// batches grow with the load and a lone request never waits.
    pub max_wait: Duration,
    /// Requests that may wait for the worker; one more is answered 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Largest request body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Longest side of an image accepted (decompression bombs are refused before decoding).
    pub max_image_side: u32,
    /// A request that has not been answered after this long (reading its body included) is
    /// answered 408.
    pub request_timeout: Duration,
    /// After a shutdown signal, how long in-flight requests may take before the server stops
    /// anyway.
    pub shutdown_grace: Duration,
    /// Threads answering HTTP (decoding images); the model runs on its own worker thread and
    /// keen-runtime's thread pool.
    pub http_threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::ZERO,
            queue_capacity: 256,
            max_body_bytes: 4 << 20,
            max_image_side: 4096,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            http_threads: 2,
        }
    }
}

impl ServeConfig {
    /// Fails on a setting that cannot work (a zero batch, queue, body limit or timeout).
    pub fn validate(&self) -> Result<(), ServeError> {
        let positive = [
            ("max batch", self.max_batch),
            ("queue capacity", self.queue_capacity),
            ("max body bytes", self.max_body_bytes),
            ("max image side", self.max_image_side as usize),
            ("http threads", self.http_threads),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ServeError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(ServeError::Config(
                "the request timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}
