//! keen-serve: an HTTP server for keen-runtime models.
//!
//! Owns: the HTTP API (`POST /v1/classify`, `GET /healthz`, `GET /metrics`), request decoding
//! and preprocessing, dynamic batching, metrics, limits and graceful shutdown.
//! Must not touch: burn, training, datasets; the model runs through keen-runtime's public API.
//!
//! ```no_run
//! # fn main() -> Result<(), keen_serve::ServeError> {
//! let model = keen_runtime::Model::load("student.keenrt")?;
//! let config = keen_serve::ServeConfig::default();
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! // Blocks until SIGINT or SIGTERM, then finishes the requests in flight.
//! keen_serve::serve_blocking(model, "student.keenrt", config, addr, |addr| {
//!     println!("listening on http://{addr}")
//! })?;
//! # Ok(()) }
//! ```
//!
//! - [`Server`] binds a socket ([`Server::bind`]) and serves until a shutdown future resolves
//!   ([`Server::run`]); [`serve_blocking`] does both on its own Tokio runtime.
//! - [`batcher`] holds the bounded queue and the worker that runs batches on an [`Engine`].
//! - [`input`] turns a PNG/JPEG or raw tensor body into the model's input.
//! - [`metrics`] is what `/metrics` reports; [`client`] a small HTTP/1.1 client for tests and
//!   the load generator (`examples/loadgen.rs`).

#![warn(missing_docs)]

pub mod batcher;
pub mod client;
mod config;
mod error;
mod http;
pub mod input;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use keen_runtime::{Model, Tensor};

pub use batcher::Engine;
pub use config::ServeConfig;
pub use error::{InputError, ServeError};
pub use http::{ClassifyResponse, Guess, Timing, CLASSIFY_PATH};
pub use input::InputSpec;

use crate::batcher::{BatchSettings, Batcher};
use crate::http::{router, AppState};
use crate::metrics::Metrics;

/// A bound, ready server: the socket is open, the worker running; [`Server::run`] serves.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    worker: JoinHandle<()>,
    grace: std::time::Duration,
}

impl Server {
    /// Checks `config`, reads the model's input spec, runs one warm-up image (which also learns
    /// the number of classes), starts the batching worker and binds `addr` (port 0 picks a free
    /// one: see [`Server::local_addr`]).
    pub async fn bind(
        model: Model,
        model_name: &str,
        config: ServeConfig,
        addr: SocketAddr,
    ) -> Result<Server, ServeError> {
        let model = Arc::new(model);
        let probe = model.clone();
        Self::bind_engine(
            model,
            |classes| InputSpec::from_model(&probe, classes),
            model_name,
            config,
            addr,
        )
        .await
    }

    /// [`Server::bind`] with any [`Engine`]; `spec` builds the input spec from the number of
    /// classes the warm-up run returned.
    pub async fn bind_engine(
        engine: Arc<dyn Engine>,
        spec: impl Fn(usize) -> Result<InputSpec, ServeError>,
        model_name: &str,
        config: ServeConfig,
        addr: SocketAddr,
    ) -> Result<Server, ServeError> {
        config.validate()?;
        let classes = warm_up(engine.as_ref(), spec(1)?.shape)?;
        let spec = spec(classes)?;
        let metrics = Arc::new(Metrics::new(config.queue_capacity));
        let settings = BatchSettings {
            max_batch: config.max_batch,
            max_wait: config.max_wait,
            queue_capacity: config.queue_capacity,
        };
        let (batcher, worker) =
            Batcher::start(engine, spec.shape.clone(), settings, metrics.clone()).map_err(
                |source| ServeError::Io {
                    context: "starting the batching worker",
                    source,
                },
            )?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let grace = config.shutdown_grace;
        Ok(Server {
            listener,
            state: AppState {
                spec: Arc::new(spec),
                config: Arc::new(config),
                batcher,
                metrics,
                model_name: model_name.into(),
            },
            worker,
            grace,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(|source| ServeError::Io {
            context: "reading the listening address",
            source,
        })
    }

    /// The metrics `/metrics` reports (shared, live).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting connections, lets the requests
    /// in flight finish (up to the configured grace period), drains the batching queue and
    /// returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            worker,
            grace,
        } = self;
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = signalled_tx.send(());
        };
        let app = router(state);
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal);
        let deadline = async move {
            // The sender is dropped without sending only if `serve` ended first.
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => result.map_err(|source| ServeError::Io { context: "serving", source })?,
            // Requests still running after the grace period are abandoned; the worker is left
            // to finish on its own.
            () = deadline => return Ok(()),
        }
        // Every handler, and so every handle to the queue, is gone: the worker drains and exits.
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .map_err(|_| ServeError::Worker)?
            .map_err(|_| ServeError::Worker)
    }
}

/// Runs one image of zeros through the engine; returns the number of classes it outputs.
fn warm_up(engine: &dyn Engine, shape: Vec<usize>) -> Result<usize, ServeError> {
    let mut batch = vec![1];
    batch.extend(shape);
    let output = engine.run_batch(&Tensor::zeros(batch))?;
    match output.shape() {
        [1, classes] if *classes > 0 => Ok(*classes),
        other => Err(ServeError::UnsupportedModel(format!(
            "its output for one image has shape {other:?}; a classifier returns [1, classes]"
        ))),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, only SIGTERM stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Serves `model` on `addr` on a Tokio runtime of its own until SIGINT or SIGTERM, then shuts
/// down gracefully. `on_ready` is called with the bound address once the server accepts
/// connections.
pub fn serve_blocking(
    model: Model,
    model_name: &str,
    config: ServeConfig,
    addr: SocketAddr,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads.max(1))
        .thread_name("keen-serve-http")
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            context: "starting the async runtime",
            source,
        })?;
    runtime.block_on(async move {
        let server = Server::bind(model, model_name, config, addr).await?;
        on_ready(server.local_addr()?);
        server.run(shutdown_signal()).await
    })
}
