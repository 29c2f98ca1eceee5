//! The server end to end on 127.0.0.1: a tiny keen-runtime model built here, real sockets, the
//! crate's own client.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use keen_runtime::{FlattenAttrs, GraphBuilder, LinearAttrs, Model, Op, RuntimeError, Tensor};
use keen_serve::client::{Client, ClientResponse};
use keen_serve::metrics::Metrics;
use keen_serve::{ClassifyResponse, Engine, InputSpec, ServeConfig, ServeError, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `[N, 1, 8, 8]` → 3 logits: mean brightness, its negative, and 0 ("bright", "dark", "grey").
/// Normalised with mean 0.5 and std 0.5, a white image is all +1 and a black one all -1.
fn tiny_model() -> Model {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("input", &[1, 8, 8]);
    let f = g.op("flatten", Op::Flatten(FlattenAttrs::default()), &[&x]);
    let mut w = vec![1.0 / 64.0; 64];
    w.extend(vec![-1.0 / 64.0; 64]);
    w.extend(vec![0.0; 64]);
    let w = g.tensor_f32("fc.weight", vec![3, 64], w).unwrap();
    let b = g.tensor_f32("fc.bias", vec![3], vec![0.0; 3]).unwrap();
    let y = g.op("fc", Op::Linear(LinearAttrs::default()), &[&f, &w, &b]);
    g.output(&y);
    g.class_names(vec!["bright".into(), "dark".into(), "grey".into()]);
    g.normalization(vec![0.5], vec![0.5]);
    g.build().unwrap()
}

/// The tiny model behind a gate the test opens and closes, counting the batches it starts.
struct Gated {
    model: Model,
    open: Mutex<bool>,
    changed: Condvar,
    started: AtomicUsize,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            model: tiny_model(),
            open: Mutex::new(true),
            changed: Condvar::new(),
            started: AtomicUsize::new(0),
        })
    }

    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }
}

impl Engine for Gated {
    fn run_batch(&self, batch: &Tensor) -> Result<Tensor, RuntimeError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        drop(open);
        self.model.run(batch)
    }
}

/// The tiny model, except that an input starting with 42 makes it panic.
struct Panicky(Model);

impl Engine for Panicky {
    fn run_batch(&self, batch: &Tensor) -> Result<Tensor, RuntimeError> {
        assert!(batch.data()[0] != 42.0, "the engine panics on 42");
        self.0.run(batch)
    }
}

struct Running {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    async fn start(config: ServeConfig) -> Self {
        Self::start_engine(config, None).await
    }

    async fn start_engine(config: ServeConfig, engine: Option<Arc<Gated>>) -> Self {
        let any = "127.0.0.1:0".parse().unwrap();
        let server = match engine {
            None => Server::bind(tiny_model(), "tiny.keenrt", config, any).await,
            Some(gated) => {
                let probe = tiny_model();
                Server::bind_engine(
                    gated,
                    move |classes| InputSpec::from_model(&probe, classes),
                    "tiny.keenrt",
                    config,
                    any,
                )
                .await
            }
        }
        .unwrap();
        let addr = server.local_addr().unwrap();
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics,
            stop: Some(stop),
            done,
        }
    }

    async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task does not panic")
    }
}

fn png(gray: u8, size: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(size, size, image::Luma([gray]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn tensor(value: f32) -> Vec<u8> {
    (0..64).flat_map(|_| value.to_le_bytes()).collect()
}

async fn classify(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> ClientResponse {
    Client::new(addr)
        .post("/v1/classify", Some(content_type), body)
        .await
        .unwrap()
}

fn parsed(response: &ClientResponse) -> ClassifyResponse {
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

fn error_code(response: &ClientResponse) -> String {
    let value: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", response.text()));
    assert_eq!(value["error"]["status"], response.status);
    value["error"]["code"].as_str().unwrap().to_string()
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The value of a metric line `name value` in the `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_png_jpeg_and_raw_tensors() {
    let server = Running::start(ServeConfig::default()).await;
    let white = parsed(&classify(server.addr, "image/png", png(255, 20)).await);
    assert_eq!(
        white.top.len(),
        3,
        "top_k defaults to 5, capped at 3 classes"
    );
    assert_eq!(white.top[0].label, "bright");
    assert_eq!(white.top[0].index, 0);
    // Logits [1, -1, 0]: softmax e / (e + 1/e + 1).
    let e = std::f32::consts::E;
    assert!((white.top[0].probability - e / (e + 1.0 / e + 1.0)).abs() < 1e-5);
    assert_eq!(white.model, "tiny.keenrt");
    assert!(white.timing.total_ms >= white.timing.inference_ms);

    let mut jpeg = Cursor::new(Vec::new());
    image::GrayImage::from_pixel(30, 10, image::Luma([0]))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let black = parsed(&classify(server.addr, "image/jpeg", jpeg.into_inner()).await);
    assert_eq!(black.top[0].label, "dark");

    let mut client = Client::new(server.addr);
    let raw = client
        .post(
            "/v1/classify?top_k=1",
            Some("application/octet-stream"),
            tensor(-1.0),
        )
        .await
        .unwrap();
    let raw = parsed(&raw);
    assert_eq!(raw.top.len(), 1);
    assert_eq!(raw.top[0].label, "dark");

    let health = client.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(health["input"]["shape"], serde_json::json!([1, 8, 8]));
    assert_eq!(health["input"]["class_names"][2], "grey");
    server.shutdown().await.unwrap();
}

/// Path, content type, body, expected status, expected error code.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_4xx_and_the_server_keeps_serving() {
    let config = ServeConfig {
        max_body_bytes: 4096,
        ..ServeConfig::default()
    };
    let server = Running::start(config).await;
    let addr = server.addr;
    let mut garbage = b"\x89PNG\r\n\x1a\n".to_vec();
    garbage.extend(std::iter::repeat_n(0xAB, 200));
    let mut truncated = png(128, 40);
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<Case> = vec![
        ("/v1/classify", Some("image/png"), garbage, 400, "bad_input"),
        (
            "/v1/classify",
            Some("image/png"),
            truncated,
            400,
            "bad_input",
        ),
        ("/v1/classify", Some("image/jpeg"), vec![], 400, "bad_input"),
        (
            "/v1/classify",
            Some("image/png"),
            b"hello".to_vec(),
            400,
            "bad_input",
        ),
        (
            "/v1/classify",
            Some("application/octet-stream"),
            tensor(0.0)[..60].to_vec(),
            400,
            "bad_input",
        ),
        (
            "/v1/classify",
            Some("application/octet-stream"),
            tensor(f32::NAN),
            400,
            "bad_input",
        ),
        (
            "/v1/classify",
            Some("text/plain"),
            b"a shirt".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/classify",
            Some("application/json"),
            b"[1, 2]".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/classify",
            None,
            png(255, 8),
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/classify",
            Some("image/png"),
            vec![7; 5000],
            413,
            "payload_too_large",
        ),
        (
            "/v1/classify?top_k=0",
            Some("image/png"),
            png(255, 8),
            400,
            "bad_query",
        ),
        (
            "/v1/classify?top_k=many",
            Some("image/png"),
            png(255, 8),
            400,
            "bad_query",
        ),
        (
            "/v2/classify",
            Some("image/png"),
            png(255, 8),
            404,
            "not_found",
        ),
    ];
    let mut client = Client::new(addr);
    for (path, content_type, body, status, code) in cases {
        let response = client.post(path, content_type, body).await.unwrap();
        assert_eq!(
            response.status,
            status,
            "{path} {content_type:?}: {}",
            response.text()
        );
        assert_eq!(error_code(&response), code);
        assert_eq!(response.content_type.as_deref(), Some("application/json"));
        // Still up, on the same or a fresh connection.
        let ok = client
            .post("/v1/classify", Some("image/png"), png(255, 8))
            .await
            .unwrap();
        assert_eq!(parsed(&ok).top[0].label, "bright");
    }
    let get = client.get("/v1/classify").await.unwrap();
    assert_eq!(
        (get.status, error_code(&get).as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(server.metrics.responses_with(400), 8);
    assert_eq!(server.metrics.responses_with(413), 1);
    assert_eq!(server.metrics.responses_with(415), 3);
    assert_eq!(server.metrics.responses_with(200), 13);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched() {
    let config = ServeConfig {
        max_batch: 16,
        max_wait: Duration::from_millis(500),
        ..ServeConfig::default()
    };
    let server = Running::start(config).await;
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let addr = server.addr;
            let value = if i % 2 == 0 { 1.0 } else { -1.0 };
            tokio::spawn(
                async move { classify(addr, "application/octet-stream", tensor(value)).await },
            )
        })
        .collect();
    let mut largest = 0;
    for (i, request) in requests.into_iter().enumerate() {
        let answer = parsed(&request.await.unwrap());
        // Each request gets its own row back, whatever batch it shared.
        assert_eq!(
            answer.top[0].label,
            if i % 2 == 0 { "bright" } else { "dark" }
        );
        largest = largest.max(answer.batch_size);
    }
    assert!(largest > 1, "no request shared a batch");
    let text = Client::new(server.addr)
        .get("/metrics")
        .await
        .unwrap()
        .text();
    assert_eq!(metric(&text, "keen_serve_batch_size_sum"), 16.0);
    let batches = metric(&text, "keen_serve_batch_size_count");
    assert!(batches < 16.0, "16 requests ran in {batches} batches");
    assert_eq!(
        metric(&text, "keen_serve_requests_total{status=\"200\"}"),
        16.0
    );
    assert_eq!(
        metric(&text, "keen_serve_request_duration_seconds_count"),
        16.0
    );
    assert_eq!(metric(&text, "keen_serve_queue_depth"), 0.0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let gated = Gated::new();
    let config = ServeConfig {
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue_capacity: 2,
        ..ServeConfig::default()
    };
    let server = Running::start_engine(config, Some(gated.clone())).await;
    let warmed = gated.started.load(Ordering::SeqCst);
    gated.set(false);
    let addr = server.addr;
    let send = move || tokio::spawn(classify(addr, "application/octet-stream", tensor(1.0)));
    // One request held by the worker, two waiting in the queue...
    let held = send();
    wait_until("the worker to hold a request", || {
        gated.started.load(Ordering::SeqCst) > warmed
    })
    .await;
    let queued = [send(), send()];
    let metrics = server.metrics.clone();
    wait_until("two queued requests", || {
        metrics.queue_depth.load(Ordering::SeqCst) == 2
    })
    .await;
    // ...so the next one is refused at once.
    let refused = classify(addr, "application/octet-stream", tensor(1.0)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(error_code(&refused), "queue_full");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    gated.set(true);
    parsed(&held.await.unwrap());
    for request in queued {
        parsed(&request.await.unwrap());
    }
    assert_eq!(server.metrics.responses_with(503), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_408() {
    let gated = Gated::new();
    let config = ServeConfig {
        request_timeout: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let server = Running::start_engine(config, Some(gated.clone())).await;
    gated.set(false);
    let response = classify(server.addr, "image/png", png(0, 8)).await;
    assert_eq!(
        (response.status, error_code(&response).as_str()),
        (408, "timeout")
    );
    gated.set(true);
    parsed(&classify(server.addr, "image/png", png(0, 8)).await);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let gated = Gated::new();
    let server = Running::start_engine(ServeConfig::default(), Some(gated.clone())).await;
    let warmed = gated.started.load(Ordering::SeqCst);
    gated.set(false);
    let addr = server.addr;
    let in_flight = tokio::spawn(classify(addr, "image/png", png(255, 8)));
    wait_until("the request to reach the model", || {
        gated.started.load(Ordering::SeqCst) > warmed
    })
    .await;
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown must wait for the request in flight"
    );
    gated.set(true);
    let answer = parsed(&in_flight.await.unwrap());
    assert_eq!(answer.top[0].label, "bright");
    stopping.await.unwrap().unwrap();
    // Nothing listens any more.
    assert!(Client::new(addr).get("/healthz").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_gives_500_and_the_server_keeps_serving() {
    let probe = tiny_model();
    let server = Server::bind_engine(
        Arc::new(Panicky(tiny_model())),
        move |classes| InputSpec::from_model(&probe, classes),
        "panicky.keenrt",
        ServeConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let failed = classify(addr, "application/octet-stream", tensor(42.0)).await;
    assert_eq!(
        (failed.status, error_code(&failed).as_str()),
        (500, "inference_failed")
    );
    parsed(&classify(addr, "application/octet-stream", tensor(1.0)).await);
    let _ = stop.send(());
    done.await.unwrap().unwrap();
}
