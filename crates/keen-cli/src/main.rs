//! `keen`: train, evaluate, inspect and run small vision models.
//!
//! A thin layer over the keen libraries: it parses arguments, resolves them into library calls
//! and prints results. No training, data or model logic lives here.

mod commands;
mod device;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Training allocates and frees large activation buffers every step; glibc's allocator hands
/// them back to the kernel and page-faults them in again (~12% of a resnet20 step in `perf`).
/// mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's index of `mi_option_purge_delay` (milliseconds before freed pages go back to
/// the OS; -1 = never): 15 in both the v3 sources the `mimalloc` crate builds by default and
/// its v2 ones.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// A training step frees and re-allocates the same activation sizes every few milliseconds;
/// mimalloc's default 10 ms purge still returns some pages to the kernel between steps and
/// faults them in again. Never purging made resnet20 training ~11% faster (`keen bench-train`,
/// 222 → 248 img/s); peak memory is what it was. `MIMALLOC_PURGE_DELAY` still overrides it.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator this binary links; the option index
        // matches the linked mimalloc version and any value is valid for it.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// keen: small, fast and robust vision models, from training to deployment.
#[derive(Parser, Debug)]
#[command(name = "keen", version, about, long_about = None, after_help = "\
Examples:
  keen train                          # cnn-small on Fashion-MNIST, ~5 minutes on 2 cores
  keen train --model resnet20 --epochs 15 --out runs/resnet20
  keen eval runs/cnn-small/model.safetensors
  keen predict --model runs/cnn-small/model.safetensors shirt.png
  keen info --list")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
enum Command {
    /// Train a model from the registry on a dataset.
    Train(commands::train::TrainArgs),
    /// Run the action plan from a recipe: teacher, distil, prune, quantize; a stage table.
    Compress(commands::compress::CompressArgs),
    /// Distil a teacher model into a smaller student (soft targets and labels).
    Distill(commands::distill::DistillArgs),
    /// Post-training INT8 quantization: calibrate, scan layer sensitivity, keep costly layers float.
    Quantize(commands::quantize::QuantizeArgs),
    /// Quantization-aware training of a saved float model (optionally distilling from a teacher).
    Qat(commands::quantize::QatArgs),
    /// Pruning while fine-tuning: magnitude, N:M, channels, or ViT heads and MLP units.
    Prune(commands::prune::PruneArgs),
    /// Export a model: FP16 or BF16 weights.
    Export(commands::export::ExportArgs),
    /// Latency (batch 1, p50/p99) and throughput of a keen-runtime model file.
    Bench(commands::runtime::BenchArgs),
    /// Serve a keen-runtime model over HTTP: dynamic batching, metrics, graceful shutdown.
    Serve(commands::serve::ServeArgs),
    /// The report card: accuracy, size, latency, corruptions, attacks, OOD and calibration of
    /// several models (e.g. every stage of a recipe) in one HTML page and JSON.
    Report(commands::report::ReportArgs),
    /// Robustness: calibration, OOD detection, adversarial attacks, common corruptions.
    #[command(subcommand)]
    Robust(commands::robust::RobustCommand),
    /// Evaluate a keen-runtime model file, optionally against the keen model it came from.
    EvalRuntime(commands::runtime::EvalRuntimeArgs),
    /// Evaluate a saved model: accuracy, per-class accuracy, confusion matrix.
    Eval(commands::eval::EvalArgs),
    /// Classify image files with a saved model (top-k with probabilities).
    Predict(commands::predict::PredictArgs),
    /// Heat maps of where a model looked: attention rollout (ViT, DeiT) or Grad-CAM (CNNs).
    Explain(commands::explain::ExplainArgs),
    /// Describe a registered model or a saved one: parameters, FLOPs, bytes on disk.
    Info(commands::info::InfoArgs),
    /// Show which datasets are found where, and how to get the missing ones.
    Datasets(commands::datasets::DatasetsArgs),
    /// Measure training throughput on synthetic data (used by bench/).
    BenchTrain(commands::bench::BenchTrainArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Compress(args) => commands::compress::run(args),
        Command::Distill(args) => commands::distill::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Qat(args) => commands::quantize::run_qat(args),
        Command::Prune(args) => commands::prune::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::EvalRuntime(args) => commands::runtime::run(args),
        Command::Bench(args) => commands::runtime::bench(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Robust(command) => commands::robust::run(command),
        Command::Report(args) => commands::report::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Datasets(args) => commands::datasets::run(args),
        Command::BenchTrain(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
