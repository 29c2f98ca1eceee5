//! `keen bench-train`.

use anyhow::{bail, Result};
use clap::Args;

use crate::device::parse_device;

/// Options of `keen bench-train`.
#[derive(Args, Debug)]
#[command(after_help = "\
Trains on random 1x28x28 images with Adam, as bench/train_throughput.py does for PyTorch.

Example:
  keen bench-train --model cnn-small --steps 30 --warmup 5 --json")]
pub struct BenchTrainArgs {
    /// Model from the registry.
    #[arg(long, default_value = "cnn-small")]
    pub model: String,
    /// Timed steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Print one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Compute device.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `keen bench-train`.
pub fn run(args: BenchTrainArgs) -> Result<()> {
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    let device = parse_device(&args.device)?;
    let report = keen_train::bench::train_throughput(
        &args.model,
        args.steps,
        args.warmup,
        args.batch_size,
        &device,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {:.1} img/s ({} steps of {} in {:.2}s)",
            report.model, report.images_per_sec, report.steps, report.batch_size, report.seconds
        );
    }
    Ok(())
}
