//! Dynamic batching: a bounded queue in front of one worker thread that runs the model.
//!
//! The worker takes the oldest request, then gathers more until the batch holds `max_batch`
//! images or the oldest has waited `max_wait` since it arrived (so a request that already
//! waited behind a running batch leaves with whatever has queued, without waiting again). A
//! full queue refuses at once, so an overloaded server answers 503 instead of building an
//! unbounded backlog. With `max_wait` zero the batching is greedy: whatever queued while the
//! previous batch ran forms the next one, so batches grow with the load and cost a lone request
//! nothing (the fastest setting for keen's small models in `docs/BENCHMARKS.md`). The worker
//! stops when every handle is gone and the queue is drained, which is how a graceful shutdown
//! finishes the requests in flight.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keen_runtime::{Model, RuntimeError, Tensor};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// What runs a batch: keen-runtime's [`Model`], or anything else mapping `[N, ...input]` to
/// `[N, classes]` logits (tests wrap a model to hold the worker at will).
pub trait Engine: Send + Sync + 'static {
    /// Runs one batch.
    fn run_batch(&self, batch: &Tensor) -> Result<Tensor, RuntimeError>;
}

impl Engine for Model {
    fn run_batch(&self, batch: &Tensor) -> Result<Tensor, RuntimeError> {
        self.run(batch)
    }
}

impl<E: Engine + ?Sized> Engine for Arc<E> {
    fn run_batch(&self, batch: &Tensor) -> Result<Tensor, RuntimeError> {
        (**self).run_batch(batch)
    }
}

/// The answer to one request: its logits and where its time went.
#[derive(Debug, Clone)]
pub struct BatchOutput {
    /// The request's row of logits.
    pub logits: Vec<f32>,
    /// Images in the batch it ran in.
    pub batch_size: usize,
    /// Time from joining the queue to its batch starting.
    pub queue_seconds: f64,
    /// Time of the batch's model run.
    pub inference_seconds: f64,
}

type Reply = oneshot::Sender<Result<BatchOutput, String>>;

struct Job {
    input: Vec<f32>,
    enqueued: Instant,
    reply: Reply,
}

/// Why a request could not join the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The worker has stopped.
    Closed,
}

/// The sending side of the queue; cloned into every handler. The worker stops once every
/// clone is dropped.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most images per batch.
    pub max_batch: usize,
    /// Longest wait of a batch's oldest request for others.
    pub max_wait: Duration,
    /// Queue capacity.
    pub queue_capacity: usize,
}

impl Batcher {
    /// Starts the worker thread running `engine` on batches of inputs of `input_shape`.
    pub fn start(
        engine: Arc<dyn Engine>,
        input_shape: Vec<usize>,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Batcher, JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel(settings.queue_capacity);
        let worker_metrics = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("keen-serve-batcher".into())
            .spawn(move || {
                Worker {
                    engine,
                    input_shape,
                    settings,
                    metrics: worker_metrics,
                    rx,
                }
                .run()
            })?;
        Ok((Batcher { tx, metrics }, worker))
    }

    /// Queues one input (of the model's per-request size); the receiver gets its answer.
    pub fn submit(
        &self,
        input: Vec<f32>,
    ) -> Result<oneshot::Receiver<Result<BatchOutput, String>>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            enqueued: Instant::now(),
            reply,
        };
        // Counted before sending so the worker's decrement can never come first.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(answer),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Closed,
                })
            }
        }
    }
}

struct Worker {
    engine: Arc<dyn Engine>,
    input_shape: Vec<usize>,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<Job>,
}

impl Worker {
    fn run(self) {
        while let Some(batch) = self.gather() {
            self.run_batch(batch);
        }
    }

    fn take(&self, job: Job) -> Job {
        self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        job
    }

    /// The next batch, or `None` once every sender is gone and the queue is empty.
    fn gather(&self) -> Option<Vec<Job>> {
        let first = self.take(self.rx.recv().ok()?);
        let deadline = first.enqueued + self.settings.max_wait;
        let mut batch = vec![first];
        while batch.len() < self.settings.max_batch {
            let now = Instant::now();
            let next = if now >= deadline {
                self.rx.try_recv().ok()
            } else {
                // A timeout or a disconnected queue both end the gathering.
                self.rx.recv_timeout(deadline - now).ok()
            };
            match next {
                Some(job) => batch.push(self.take(job)),
                None => break,
            }
        }
        Some(batch)
    }

    fn run_batch(&self, mut batch: Vec<Job>) {
        // A request whose client went away (timeout, disconnect) is not worth computing.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let n = batch.len();
        let mut shape = vec![n];
        shape.extend(&self.input_shape);
        let mut data = Vec::with_capacity(n * batch[0].input.len());
        for job in &batch {
            data.extend_from_slice(&job.input);
        }
        // A panic inside the engine must not take the worker (and so the server) down.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let input = Tensor::new(shape, data).map_err(|e| e.to_string())?;
            let output = self.engine.run_batch(&input).map_err(|e| e.to_string())?;
            let rows = output.shape().first().copied().unwrap_or(0);
            if rows != n || output.data().len() % n.max(1) != 0 {
                return Err(format!(
                    "the model returned shape {:?} for a batch of {n}",
                    output.shape()
                ));
            }
            Ok(output.into_data())
        }))
        .unwrap_or_else(|_| Err("the model panicked".to_string()));
        let inference_seconds = started.elapsed().as_secs_f64();
        self.metrics.batch_size.observe(n as f64);
        self.metrics.inference_seconds.observe(inference_seconds);
        match result {
            Ok(logits) => {
                let width = logits.len() / n;
                for (job, row) in batch.into_iter().zip(logits.chunks(width.max(1))) {
                    let _ = job.reply.send(Ok(BatchOutput {
                        logits: row.to_vec(),
                        batch_size: n,
                        queue_seconds: started.duration_since(job.enqueued).as_secs_f64(),
                        inference_seconds,
                    }));
                }
            }
            Err(message) => {
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}
