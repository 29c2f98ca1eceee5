//! `keen export --format runtime` companions: evaluating a keen-runtime model file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use keen_data::source::SplitName;
use serde::Serialize;

use super::{load_model, load_split};
use crate::output::write_json;

/// Options of `keen eval-runtime`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen export runs/qat/model.safetensors --format runtime --out runs/qat/model.keenrt
  keen eval-runtime runs/qat/model.keenrt --compare runs/qat/model.safetensors")]
pub struct EvalRuntimeArgs {
    /// The keen-runtime model file.
    pub model: PathBuf,
    /// Also run this keen model file (e.g. the QAT model it was exported from) and report on how
    /// many images their top-1 predictions agree.
    #[arg(long, value_name = "MODEL_FILE")]
    pub compare: Option<PathBuf>,
    /// Dataset.
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Serialize)]
struct RuntimeEval {
    model: PathBuf,
    images: usize,
    accuracy: f64,
    compared_with: Option<PathBuf>,
    compared_accuracy: Option<f64>,
    top1_agreement: Option<f64>,
}

/// Runs `keen eval-runtime`.
pub fn run(args: EvalRuntimeArgs) -> Result<()> {
    let model = keen_runtime::Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let test = load_split(&args.dataset, args.data.as_deref(), SplitName::Test)?;
    let fallback = keen_data::loader::Normalization::fit(&test);
    let predictions =
        keen_compress::export_runtime::runtime_predictions(&model, &test, &fallback, 256)?;
    let correct = |p: &[usize]| {
        p.iter()
            .zip(&test.labels)
            .filter(|(a, b)| **a == **b as usize)
            .count() as f64
            / test.len().max(1) as f64
    };
    let mut report = RuntimeEval {
        model: args.model.clone(),
        images: test.len(),
        accuracy: correct(&predictions),
        compared_with: None,
        compared_accuracy: None,
        top1_agreement: None,
    };
    if let Some(other) = &args.compare {
        let device = burn::prelude::Device::flex();
        let (loaded, normalization) = load_model(other, &device)?;
        let indices: Vec<usize> = (0..test.len()).collect();
        let logits = keen_train::predict_logits(
            &loaded.model,
            &test,
            &indices,
            &normalization,
            256,
            &device,
        );
        let classes = test.num_classes().max(1);
        let theirs: Vec<usize> = logits
            .chunks(classes)
            .map(keen_train::evaluate::argmax)
            .collect();
        let agree = theirs
            .iter()
            .zip(&predictions)
            .filter(|(a, b)| a == b)
            .count() as f64
            / test.len().max(1) as f64;
        report.compared_with = Some(other.clone());
        report.compared_accuracy = Some(correct(&theirs));
        report.top1_agreement = Some(agree);
    }
    println!(
        "{}: accuracy {:.2}% on {} images (keen-runtime)",
        args.model.display(),
        100.0 * report.accuracy,
        report.images
    );
    if let (Some(acc), Some(agree)) = (report.compared_accuracy, report.top1_agreement) {
        println!(
            "compared with {}: accuracy {:.2}%, top-1 agreement {:.2}%",
            args.compare
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            100.0 * acc,
            100.0 * agree
        );
    }
    if let Some(path) = &args.output {
        write_json(path, &report)?;
    }
    Ok(())
}

/// Options of `keen bench`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen bench runs/qat/model.keenrt
  keen bench runs/qat/model.keenrt --batch 64 --iterations 100 --output bench.json")]
pub struct BenchArgs {
    /// The keen-runtime model file.
    pub model: PathBuf,
    /// Batch size of the throughput measurement.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed runs of each measurement (after 3 warm-up runs).
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Serialize)]
struct BenchReport {
    model: PathBuf,
    batch1_p50_ms: f64,
    batch1_p99_ms: f64,
    batch: usize,
    batch_p50_ms: f64,
    images_per_sec: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[pos.min(sorted.len() - 1)]
}

fn time_runs(
    model: &keen_runtime::Model,
    input: &keen_runtime::Tensor,
    runs: usize,
) -> Result<Vec<f64>> {
    for _ in 0..3 {
        model.run(input)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = std::time::Instant::now();
        model.run(input)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Runs `keen bench`: batch-1 latency (p50, p99) and throughput at `--batch`.
pub fn bench(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    let model = keen_runtime::Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let dims: Vec<usize> = model
        .input_shapes()
        .first()
        .map(|s| s.iter().skip(1).map(|d| d.unwrap_or(1)).collect())
        .context("the model declares no input")?;
    let input_of = |batch: usize| {
        let mut shape = vec![batch];
        shape.extend(&dims);
        let n: usize = shape.iter().product();
        // A fixed pseudo-random image: timings should not depend on all-zero shortcuts.
        let data = (0..n)
            .map(|i| ((i * 7919 % 255) as f32 / 127.5) - 1.0)
            .collect();
        keen_runtime::Tensor::new(shape, data)
    };
    let one = time_runs(&model, &input_of(1)?, args.iterations)?;
    let many = time_runs(&model, &input_of(args.batch)?, (args.iterations / 4).max(5))?;
    let report = BenchReport {
        model: args.model.clone(),
        batch1_p50_ms: percentile(&one, 0.5),
        batch1_p99_ms: percentile(&one, 0.99),
        batch: args.batch,
        batch_p50_ms: percentile(&many, 0.5),
        images_per_sec: args.batch as f64 / (percentile(&many, 0.5) / 1e3),
    };
    println!(
        "{}: batch 1 p50 {:.3} ms, p99 {:.3} ms; batch {} {:.0} img/s",
        args.model.display(),
        report.batch1_p50_ms,
        report.batch1_p99_ms,
        report.batch,
        report.images_per_sec
    );
    if let Some(path) = &args.output {
        write_json(path, &report)?;
    }
    Ok(())
}
