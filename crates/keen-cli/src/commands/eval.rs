//! `keen eval`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use keen_data::source::SplitName;
use keen_train::trainer::meta;
use keen_train::EvalReport;

use super::{load_model, load_split};
use crate::device::parse_device;
use crate::output::write_json;

/// Which split to evaluate on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// The held-out test split.
    Test,
    /// The training split.
    Train,
}

/// Options of `keen eval`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen eval runs/cnn-small/model.safetensors
  keen eval runs/resnet20/model.safetensors --json
  keen eval model.safetensors --dataset mnist --data ./mnist-files")]
pub struct EvalArgs {
    /// A model file written by keen (a run's model.safetensors).
    pub checkpoint: PathBuf,
    /// Dataset to evaluate on [default: the one the model was trained on].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Compute device.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `keen eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = parse_device(&args.device)?;
    let (loaded, normalization) = load_model(&args.checkpoint, &device)?;
    let dataset_name = match &args.dataset {
        Some(name) => name.clone(),
        None => loaded
            .metadata
            .get(meta::DATASET)
            .cloned()
            .with_context(|| {
                format!(
                    "{}: does not say which dataset it was trained on; pass --dataset",
                    args.checkpoint.display()
                )
            })?,
    };
    let split = match args.split {
        SplitArg::Test => SplitName::Test,
        SplitArg::Train => SplitName::Train,
    };
    let dataset = load_split(&dataset_name, args.data.as_deref(), split)?;
    if dataset.image_shape() != loaded.spec.input_shape()
        || dataset.num_classes() != loaded.spec.num_classes
    {
        bail!(
            "{} expects {:?} images and {} classes, but {dataset_name} has {:?} images and {} classes",
            args.checkpoint.display(),
            loaded.spec.input_shape(),
            loaded.spec.num_classes,
            dataset.image_shape(),
            dataset.num_classes()
        );
    }
    let report = keen_train::evaluate_all(
        &loaded.model,
        &dataset,
        &normalization,
        args.batch_size,
        &device,
    );
    if let Some(path) = &args.output {
        write_json(path, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&loaded.spec.model, &dataset_name, &report);
    }
    Ok(())
}

fn print_report(model: &str, dataset: &str, report: &EvalReport) {
    println!(
        "{model} on {dataset}: accuracy {:.2}% ({} images), loss {:.4}, {:.1}s",
        100.0 * report.accuracy,
        report.images,
        report.loss,
        report.seconds
    );
    println!("\nper-class accuracy:");
    for (name, acc) in report.class_names.iter().zip(&report.per_class_accuracy) {
        println!("  {name:<14} {:6.2}%", 100.0 * acc);
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    print!("{:>14}", "");
    for i in 0..report.class_names.len() {
        print!("{i:>6}");
    }
    println!();
    for (i, row) in report.confusion.counts.iter().enumerate() {
        let name: String = report.class_names[i].chars().take(11).collect();
        print!("{:>2} {name:<11}", i);
        for count in row {
            print!("{count:>6}");
        }
        println!();
    }
}
