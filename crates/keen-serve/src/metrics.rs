//! [`Metrics`]: counters, gauges and histograms kept with atomics and written in Prometheus'
//! text exposition format (version 0.0.4) by `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the request and inference latency buckets.
const LATENCY_BOUNDS_S: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Upper bounds of the batch size buckets.
const BATCH_BOUNDS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A cumulative Prometheus histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of the observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // A lost race only retries; the closure never returns None.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum());
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports. Shared by the HTTP handlers and the batching worker.
#[derive(Debug)]
pub struct Metrics {
    /// `/v1/classify` answers by HTTP status.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// `/v1/classify` latency, from the request's arrival to its answer.
    pub request_seconds: Histogram,
    /// Images per batch run by the worker.
    pub batch_size: Histogram,
    /// Time of each batch's model run.
    pub inference_seconds: Histogram,
    /// Requests waiting in the queue.
    pub queue_depth: AtomicUsize,
    /// Capacity of the queue.
    pub queue_capacity: usize,
    /// `/v1/classify` requests being handled.
    pub in_flight: AtomicUsize,
}

impl Metrics {
    /// Empty metrics for a queue of `queue_capacity`.
    pub fn new(queue_capacity: usize) -> Self {
        Self {
            responses: Mutex::new(BTreeMap::new()),
            request_seconds: Histogram::new(&LATENCY_BOUNDS_S),
            batch_size: Histogram::new(&BATCH_BOUNDS),
            inference_seconds: Histogram::new(&LATENCY_BOUNDS_S),
            queue_depth: AtomicUsize::new(0),
            queue_capacity,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Records one answered `/v1/classify` request.
    pub fn record_response(&self, status: u16, seconds: f64) {
        // A poisoned lock only means another thread panicked mid-increment; the map is intact.
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry(status).or_insert(0) += 1;
        drop(responses);
        self.request_seconds.observe(seconds);
    }

    /// Answers so far with `status`.
    pub fn responses_with(&self, status: u16) -> u64 {
        let responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        responses.get(&status).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP keen_serve_requests_total /v1/classify requests answered, by HTTP status.\n\
             # TYPE keen_serve_requests_total counter\n",
        );
        let responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        for (status, count) in responses.iter() {
            let _ = writeln!(
                out,
                "keen_serve_requests_total{{status=\"{status}\"}} {count}"
            );
        }
        drop(responses);
        self.request_seconds.render(
            &mut out,
            "keen_serve_request_duration_seconds",
            "/v1/classify latency from arrival to answer.",
        );
        self.batch_size.render(
            &mut out,
            "keen_serve_batch_size",
            "Images per batch run on the model.",
        );
        self.inference_seconds.render(
            &mut out,
            "keen_serve_inference_duration_seconds",
            "Time of one batch's model run.",
        );
        let gauges = [
            (
                "keen_serve_queue_depth",
                "Requests waiting for the batching worker.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "keen_serve_queue_capacity",
                "Requests the queue holds before answering 503.",
                self.queue_capacity,
            ),
            (
                "keen_serve_in_flight_requests",
                "/v1/classify requests being handled.",
                self.in_flight.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let m = Metrics::new(8);
        for size in [1.0, 3.0, 3.0, 1000.0] {
            m.batch_size.observe(size);
        }
        m.record_response(200, 0.003);
        m.record_response(503, 0.0001);
        let text = m.render();
        assert!(text.contains("keen_serve_batch_size_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("keen_serve_batch_size_bucket{le=\"4\"} 3\n"));
        assert!(text.contains("keen_serve_batch_size_bucket{le=\"512\"} 3\n"));
        assert!(text.contains("keen_serve_batch_size_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("keen_serve_batch_size_sum 1007\n"));
        assert!(text.contains("keen_serve_batch_size_count 4\n"));
        assert!(text.contains("keen_serve_requests_total{status=\"503\"} 1\n"));
        assert!(text.contains("keen_serve_queue_capacity 8\n"));
        assert_eq!(m.responses_with(200), 1);
    }
}
