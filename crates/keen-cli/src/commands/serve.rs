//! `keen serve`: a keen-runtime model over HTTP (keen-serve).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Args;
use keen_serve::ServeConfig;

/// Options of `keen serve`.
#[derive(Args, Debug)]
#[command(after_help = "\
Endpoints:
  POST /v1/classify?top_k=5   body: image/png or image/jpeg (converted, resized and normalised
                              like keen predict), or application/octet-stream: the model's input
                              for one image as little-endian f32, already normalised
                              -> {\"top\": [{\"label\", \"index\", \"probability\"}], \"batch_size\", \"timing\"}
  GET  /healthz               the model's input shape, normalisation, classes and limits
  GET  /metrics               Prometheus text: requests by status, latency and batch-size
                              histograms, queue depth
Errors are JSON {\"error\": {\"status\", \"code\", \"message\"}}: 400 bad image/tensor/query, 408
timeout, 413 body too large, 415 content type, 503 queue full (Retry-After: 1). SIGINT or
SIGTERM stops accepting connections and finishes the requests in flight.

Examples:
  keen export runs/qat/model.safetensors --format runtime --out student.keenrt
  keen serve --model student.keenrt --port 8080
  curl -s -H 'Content-Type: image/png' --data-binary @boot.png 'localhost:8080/v1/classify?top_k=3'
  keen serve --model student.keenrt --max-batch 64 --max-wait-ms 5 --queue 1024")]
pub struct ServeArgs {
    /// A keen-runtime model file (`keen export --format runtime`).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Most images run in one batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Longest a request waits for others to fill its batch, in milliseconds; 0 batches
    /// greedily (whatever queued while the model was busy), best for small models.
    #[arg(long, default_value_t = 0.0)]
    pub max_wait_ms: f64,
    /// Requests that may wait for the model; beyond that the answer is 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// A request not answered within this many milliseconds gets 408.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Threads answering HTTP and decoding images (the model has its own thread pool).
    #[arg(long, default_value_t = 2)]
    pub http_threads: usize,
}

/// Runs `keen serve` until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    ensure!(
        args.max_wait_ms.is_finite() && args.max_wait_ms >= 0.0,
        "--max-wait-ms must be a non-negative number of milliseconds, got {}",
        args.max_wait_ms
    );
    let model = keen_runtime::Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let config = ServeConfig {
        max_batch: args.max_batch,
        max_wait: Duration::from_secs_f64(args.max_wait_ms / 1e3),
        queue_capacity: args.queue,
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.timeout_ms),
        http_threads: args.http_threads,
        ..ServeConfig::default()
    };
    let name = args.model.file_name().map_or_else(
        || args.model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let addr = SocketAddr::new(args.host, args.port);
    let input: Vec<String> = model
        .input_shapes()
        .first()
        .map(|dims| {
            dims.iter()
                .map(|d| d.map_or("N".to_string(), |v| v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let input = input.join("×");
    keen_serve::serve_blocking(model, &name, config, addr, |bound| {
        println!(
            "serving {name} (input {input}) on http://{bound}: POST /v1/classify, GET /healthz, \
             GET /metrics; max batch {}, max wait {} ms, queue {}",
            args.max_batch, args.max_wait_ms, args.queue
        );
    })
    .with_context(|| format!("serving {}", args.model.display()))?;
    println!("stopped");
    Ok(())
}
