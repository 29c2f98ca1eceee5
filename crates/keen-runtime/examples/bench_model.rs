//! Times a keen-runtime model the way `keen bench` does (same synthetic input, 3 warm-up runs,
//! p50 of the timed runs at batch 1 and at `--batch`), linking only keen-runtime: it rebuilds in
//! seconds, so kernel work can be timed and profiled (`perf record`) without building burn.
//!
//! ```sh
//! cargo run --release -p keen-runtime --example bench_model -- model.keenrt [--batch 64] [--runs 2000]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use keen_runtime::{Model, Tensor};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("usage: bench_model MODEL [--batch N] [--runs N]");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let path = args.first().ok_or("expected a model path")?;
    let (mut batch, mut runs) = (64usize, 1000usize);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        let n = value.parse().map_err(|_| format!("bad number '{value}'"))?;
        match flag.as_str() {
            "--batch" => batch = n,
            "--runs" => runs = n,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let model = Model::load(path).map_err(|e| e.to_string())?;
    let dims: Vec<usize> = model
        .input_shapes()
        .first()
        .ok_or("the model has no input")?
        .iter()
        .skip(1)
        .map(|d| d.unwrap_or(1))
        .collect();
    let input_of = |batch: usize| -> Result<Tensor, String> {
        let mut shape = vec![batch];
        shape.extend(&dims);
        let n: usize = shape.iter().product();
        // The same pseudo-random image as `keen bench`.
        let data = (0..n)
            .map(|i| ((i * 7919 % 255) as f32 / 127.5) - 1.0)
            .collect();
        Tensor::new(shape, data).map_err(|e| e.to_string())
    };
    let p50 = |input: &Tensor, runs: usize| -> Result<f64, String> {
        for _ in 0..3 {
            model.run(input).map_err(|e| e.to_string())?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            model.run(input).map_err(|e| e.to_string())?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    };
    let one = p50(&input_of(1)?, runs)?;
    let many = p50(&input_of(batch)?, (runs / 4).max(5))?;
    println!(
        "{path}: batch 1 p50 {one:.4} ms; batch {batch} p50 {many:.3} ms = {:.0} img/s",
        batch as f64 / (many / 1e3)
    );
    Ok(())
}
