//! Load generator for `keen serve`: N concurrent keep-alive clients on loopback for a bounded
//! time and request count, a share of them malformed; reports requests/s, errors, latency
//! percentiles, the server's batch sizes and its resident memory sampled over time.
//!
//! ```sh
//! keen serve --model student.keenrt --port 18080 &
//! cargo run --release -p keen-serve --example loadgen -- --addr 127.0.0.1:18080 \
//!     --clients 16 --duration-s 60 --pid $! --json serve-load.json
//! ```
//!
//! Good requests are synthetic images of the model's input size (PNG) and raw f32 tensors,
//! half each; malformed ones cycle through a corrupt PNG (400), a wrong content type (415), a
//! tensor of the wrong size (400) and, one in eight, a body over the server's limit (413).
//! Every malformed request must get its 4xx and the server must still answer `/healthz` at the
//! end, or the program exits with status 1.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use keen_serve::client::Client;
use serde::Serialize;

/// Options.
#[derive(Parser, Debug)]
#[command(about = "Load test of a keen serve server on loopback")]
struct Args {
    /// The server (a loopback address).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to send requests, in seconds.
    #[arg(long, default_value_t = 60.0)]
    duration_s: f64,
    /// Stop after this many requests in all, whichever comes first.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Share of requests that are malformed (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    bad_share: f64,
    /// The server's process id, to sample its resident memory (VmRSS in /proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 1.0)]
    rss_interval_s: f64,
    /// Wait up to this many seconds for the server to answer /healthz first.
    #[arg(long, default_value_t = 30.0)]
    wait_ready_s: f64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the server told us about its input.
struct Target {
    shape: Vec<usize>,
    max_body_bytes: usize,
}

/// One prepared request.
#[derive(Clone)]
struct Prepared {
    content_type: &'static str,
    body: bytes::Bytes,
    /// The status it must get (200 for good requests).
    expect: u16,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    rejected_503: AtomicU64,
    bad_sent: AtomicU64,
    bad_expected_4xx: AtomicU64,
    unexpected: AtomicU64,
    transport_errors: AtomicU64,
}

#[derive(Serialize)]
struct RssSample {
    t_s: f64,
    rss_kib: u64,
}

#[derive(Serialize)]
struct Report {
    addr: String,
    clients: usize,
    duration_s: f64,
    requests: u64,
    requests_per_s: f64,
    ok: u64,
    ok_per_s: f64,
    rejected_503: u64,
    malformed_sent: u64,
    malformed_answered_4xx: u64,
    unexpected_status: u64,
    transport_errors: u64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    server_mean_batch: Option<f64>,
    server_batches: Option<f64>,
    healthy_after: bool,
    rss_kib_first: Option<u64>,
    rss_kib_min: Option<u64>,
    rss_kib_max: Option<u64>,
    rss_kib_last: Option<u64>,
    rss_samples: Vec<RssSample>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if !args.addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; this load generator only targets this machine",
            args.addr
        ));
    }
    if !(0.0..=1.0).contains(&args.bad_share) || args.clients == 0 {
        return Err("--bad-share must be in [0, 1] and --clients at least 1".into());
    }
    let target = wait_ready(args.addr, Duration::from_secs_f64(args.wait_ready_s)).await?;
    let (good, bad) = prepare(&target);
    println!(
        "load: {} clients for {} s (at most {} requests), {:.0}% malformed, input {:?}, against http://{}",
        args.clients,
        args.duration_s,
        args.max_requests,
        100.0 * args.bad_share,
        target.shape,
        args.addr
    );
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration_s);
    let rss = args.pid.map(|pid| {
        let interval = Duration::from_secs_f64(args.rss_interval_s.max(0.05));
        tokio::spawn(sample_rss(pid, interval, deadline, start))
    });
    let good = Arc::new(good);
    let bad = Arc::new(bad);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let (good, bad, counters) = (good.clone(), bad.clone(), counters.clone());
            let (addr, max, share) = (args.addr, args.max_requests, args.bad_share);
            tokio::spawn(async move {
                client_loop(i as u64, addr, deadline, max, share, &good, &bad, &counters).await
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let samples = match rss {
        Some(task) => task.await.map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    latencies.sort_by(f64::total_cmp);
    let mut probe = Client::new(args.addr);
    let healthy_after = matches!(probe.get("/healthz").await, Ok(r) if r.status == 200);
    let metrics = probe
        .get("/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let metric = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let (batch_sum, batches) = (
        metric("keen_serve_batch_size_sum"),
        metric("keen_serve_batch_size_count"),
    );
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rss_values: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    let report = Report {
        addr: args.addr.to_string(),
        clients: args.clients,
        duration_s: elapsed,
        requests: c(&counters.sent),
        requests_per_s: c(&counters.sent) as f64 / elapsed,
        ok: c(&counters.ok),
        ok_per_s: c(&counters.ok) as f64 / elapsed,
        rejected_503: c(&counters.rejected_503),
        malformed_sent: c(&counters.bad_sent),
        malformed_answered_4xx: c(&counters.bad_expected_4xx),
        unexpected_status: c(&counters.unexpected),
        transport_errors: c(&counters.transport_errors),
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p90: percentile(&latencies, 0.90),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        server_mean_batch: batch_sum.zip(batches).map(|(s, n)| s / n.max(1.0)),
        server_batches: batches,
        healthy_after,
        rss_kib_first: rss_values.first().copied(),
        rss_kib_min: rss_values.iter().min().copied(),
        rss_kib_max: rss_values.iter().max().copied(),
        rss_kib_last: rss_values.last().copied(),
        rss_samples: samples,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let passed = report.healthy_after
        && report.unexpected_status == 0
        && report.transport_errors == 0
        && report.malformed_answered_4xx == report.malformed_sent;
    if !passed {
        eprintln!("FAILED: unexpected answers, transport errors or an unhealthy server");
    }
    Ok(passed)
}

/// Polls `/healthz` until it answers; reads the input shape and body limit from it.
async fn wait_ready(addr: SocketAddr, limit: Duration) -> Result<Target, String> {
    let start = Instant::now();
    loop {
        if let Ok(r) = Client::new(addr).get("/healthz").await {
            if r.status == 200 {
                let health: serde_json::Value =
                    serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
                let shape = serde_json::from_value(health["input"]["shape"].clone())
                    .map_err(|e| format!("/healthz has no input shape: {e}"))?;
                let max_body_bytes = health["max_body_bytes"].as_u64().unwrap_or(4 << 20) as usize;
                return Ok(Target {
                    shape,
                    max_body_bytes,
                });
            }
        }
        if start.elapsed() > limit {
            return Err(format!(
                "http://{addr}/healthz did not answer within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A small deterministic generator (the load need not be random, only varied).
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// 32 good requests (16 PNG images, 16 raw tensors) and the malformed cycle.
fn prepare(target: &Target) -> (Vec<Prepared>, Vec<Prepared>) {
    let values: usize = target.shape.iter().product();
    let (channels, height, width) = match target.shape[..] {
        [c, h, w] => (c, h as u32, w as u32),
        _ => (1, 0, 0),
    };
    let mut seed = 42u64;
    let mut good = Vec::new();
    for _ in 0..16 {
        if width > 0 && (channels == 1 || channels == 3) {
            // A bright blob on a dark background at a varying place, like a garment.
            let (cx, cy) = (
                next(&mut seed) % width as u64,
                next(&mut seed) % height as u64,
            );
            let img = image::RgbImage::from_fn(width, height, |x, y| {
                let d = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
                let v = if d < (width as i64 / 3).pow(2) {
                    200
                } else {
                    10
                };
                image::Rgb([v, v, v])
            });
            let mut png = Cursor::new(Vec::new());
            if image::DynamicImage::ImageRgb8(img)
                .write_to(&mut png, image::ImageFormat::Png)
                .is_ok()
            {
                good.push(Prepared {
                    content_type: "image/png",
                    body: png.into_inner().into(),
                    expect: 200,
                });
            }
        }
        let tensor: Vec<u8> = (0..values)
            .flat_map(|_| ((next(&mut seed) % 2000) as f32 / 1000.0 - 1.0).to_le_bytes())
            .collect();
        good.push(Prepared {
            content_type: "application/octet-stream",
            body: tensor.into(),
            expect: 200,
        });
    }
    let mut corrupt = b"\x89PNG\r\n\x1a\n".to_vec();
    corrupt.extend((0..300).map(|i| (i * 37 % 251) as u8));
    let bad = |content_type, body: Vec<u8>, expect| Prepared {
        content_type,
        body: body.into(),
        expect,
    };
    let short = vec![0u8; (values * 4).saturating_sub(4)];
    let mut bad_cycle = Vec::new();
    for _ in 0..2 {
        bad_cycle.push(bad("image/png", corrupt.clone(), 400));
        bad_cycle.push(bad("text/plain", b"a shirt, probably".to_vec(), 415));
        bad_cycle.push(bad("application/octet-stream", short.clone(), 400));
        bad_cycle.push(bad("image/jpeg", b"JFIF? no".to_vec(), 400));
    }
    bad_cycle[7] = bad(
        "application/octet-stream",
        vec![0u8; target.max_body_bytes + 1],
        413,
    );
    (good, bad_cycle)
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    id: u64,
    addr: SocketAddr,
    deadline: Instant,
    max_requests: u64,
    bad_share: f64,
    good: &[Prepared],
    bad: &[Prepared],
    counters: &Counters,
) -> Vec<f64> {
    let mut client = Client::new(addr);
    let mut seed = 1000 + id;
    let mut latencies = Vec::new();
    let (mut g, mut b) = (id as usize, id as usize);
    while Instant::now() < deadline {
        if counters.sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
            counters.sent.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        let is_bad = (next(&mut seed) % 10_000) as f64 / 10_000.0 < bad_share;
        let request = if is_bad {
            b += 1;
            counters.bad_sent.fetch_add(1, Ordering::Relaxed);
            &bad[b % bad.len()]
        } else {
            g += 1;
            &good[g % good.len()]
        };
        let started = Instant::now();
        let response = client
            .post(
                "/v1/classify",
                Some(request.content_type),
                request.body.clone(),
            )
            .await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match response {
            Err(_) => {
                counters.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status == request.expect => {
                if is_bad {
                    counters.bad_expected_4xx.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                    latencies.push(ms);
                }
            }
            Ok(r) if r.status == 503 && !is_bad => {
                counters.rejected_503.fetch_add(1, Ordering::Relaxed);
                // Honour Retry-After in spirit, without stalling the run for a second.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(r) => {
                if counters.unexpected.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!(
                        "unexpected {} for a {} request ({}): {}",
                        r.status,
                        if is_bad { "malformed" } else { "good" },
                        request.content_type,
                        r.text()
                    );
                }
            }
        }
    }
    latencies
}

/// Samples the server's VmRSS until `deadline`.
async fn sample_rss(
    pid: u32,
    interval: Duration,
    deadline: Instant,
    start: Instant,
) -> Vec<RssSample> {
    let mut samples = Vec::new();
    loop {
        if let Some(kib) = rss_kib(pid) {
            samples.push(RssSample {
                t_s: start.elapsed().as_secs_f64(),
                rss_kib: kib,
            });
        }
        if Instant::now() >= deadline {
            return samples;
        }
        tokio::time::sleep(interval).await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn print_report(r: &Report) {
    println!(
        "{:.1} s: {} requests ({:.0}/s), {} ok ({:.0}/s), {} rejected 503",
        r.duration_s, r.requests, r.requests_per_s, r.ok, r.ok_per_s, r.rejected_503
    );
    println!(
        "latency of ok requests: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99, r.latency_ms_max
    );
    println!(
        "malformed: {} sent, {} answered with the expected 4xx; {} unexpected answers, {} transport errors",
        r.malformed_sent, r.malformed_answered_4xx, r.unexpected_status, r.transport_errors
    );
    if let (Some(mean), Some(n)) = (r.server_mean_batch, r.server_batches) {
        println!("server: {n} batches, {mean:.2} images per batch on average");
    }
    if let (Some(first), Some(min), Some(max), Some(last)) = (
        r.rss_kib_first,
        r.rss_kib_min,
        r.rss_kib_max,
        r.rss_kib_last,
    ) {
        println!(
            "server RSS: first {:.1} MiB, min {:.1}, max {:.1}, last {:.1} MiB ({} samples)",
            first as f64 / 1024.0,
            min as f64 / 1024.0,
            max as f64 / 1024.0,
            last as f64 / 1024.0,
            r.rss_samples.len()
        );
        let step = (r.rss_samples.len() / 12).max(1);
        let line: Vec<String> = r
            .rss_samples
            .iter()
            .step_by(step)
            .map(|s| format!("{:.0}s {:.1}", s.t_s, s.rss_kib as f64 / 1024.0))
            .collect();
        println!("RSS over time (MiB): {}", line.join(", "));
    }
    println!(
        "server healthy after the run: {}",
        if r.healthy_after { "yes" } else { "NO" }
    );
}
