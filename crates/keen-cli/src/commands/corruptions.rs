//! `keen robust corruptions`: accuracy under the 15 common corruptions at 5 severities, mCE
//! against a baseline model, a heat map and a grid of examples.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keen_data::corruptions::{corrupt_dataset, corruption_names};
use keen_data::dataset::ImageDataset;
use keen_data::source::SplitName;
use keen_robust::charts::png::{corruption_grid, encode_png};
use keen_robust::charts::{heat_map, HeatMap};
use keen_robust::corruption_benchmark::CorruptionErrors;
use keen_robust::{corruption_benchmark, CorruptionBenchmark, ErrorTable};
use serde::{Deserialize, Serialize};

use super::{load_model, load_split};
use crate::output::write_json;

/// Options of `keen robust corruptions`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen robust corruptions runs/cnn-small/model.safetensors --limit 2000
  keen robust corruptions runs/cnn-small-randaug/model.safetensors \\
       --baseline runs/cnn-small/corruptions/corruptions.json      # mCE against the standard model
  keen robust corruptions runs/student/model.safetensors --corruptions gaussian_noise,fog")]
pub struct CorruptionArgs {
    /// The model file.
    pub model: PathBuf,
    /// The baseline for mCE: a model file (evaluated now on the same images) or the
    /// corruptions.json an earlier run wrote for it.
    #[arg(long, value_name = "MODEL_OR_JSON")]
    pub baseline: Option<PathBuf>,
    /// Comma-separated corruptions [default: all 15].
    #[arg(long, value_delimiter = ',')]
    pub corruptions: Vec<String>,
    /// Evaluate on the first N test images (all when absent).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the corruptions' randomness (noise, glass blur, snow, ...).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder for corruptions.json, the heat map and the example grid
    /// [default: beside MODEL, corruptions/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// What `keen robust corruptions` measures for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorruptionReport {
    /// The model file.
    pub model: String,
    /// The test set.
    pub dataset: String,
    /// Test images evaluated.
    pub images: usize,
    /// Seed of the corruptions.
    pub seed: u64,
    /// Accuracy on the clean images.
    pub clean_accuracy: f64,
    /// Mean accuracy over every corruption and severity.
    pub mean_corruption_accuracy: f64,
    /// Error rates per corruption and severity (the input of mCE).
    pub errors: ErrorTable,
    /// mCE and relative mCE, with a baseline.
    pub benchmark: Option<CorruptionBenchmark>,
    /// The baseline's file.
    pub baseline: Option<String>,
}

/// The error table of the model at `path` on `test` under `names` at every severity.
pub fn error_table(
    path: &Path,
    test: &ImageDataset,
    names: &[String],
    seed: u64,
    progress: bool,
) -> Result<ErrorTable> {
    let device = Device::flex();
    let (loaded, normalization) = load_model(path, &device)?;
    anyhow::ensure!(
        loaded.spec.input_shape() == test.image_shape(),
        "{} takes {:?} images but {} has {:?}",
        path.display(),
        loaded.spec.input_shape(),
        test.name,
        test.image_shape()
    );
    let indices: Vec<usize> = (0..test.len()).collect();
    let error = |dataset: &ImageDataset| -> f64 {
        let logits = keen_train::predict_logits(
            &loaded.model,
            dataset,
            &indices,
            &normalization,
            256,
            &device,
        );
        let wrong = logits
            .chunks(loaded.spec.num_classes)
            .zip(&dataset.labels)
            .filter(|(row, label)| keen_train::evaluate::argmax(row) as u32 != **label)
            .count();
        wrong as f64 / dataset.len().max(1) as f64
    };
    let bar = if progress {
        ProgressBar::new((names.len() * 5 + 1) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{}: clean", file_label(path)));
    let clean_error = error(test);
    bar.inc(1);
    let mut corruptions = Vec::with_capacity(names.len());
    for name in names {
        let mut errors = [0.0; 5];
        for (slot, severity) in errors.iter_mut().zip(1..=5u32) {
            bar.set_message(format!("{name} {severity}"));
            let corrupted = corrupt_dataset(test, name, severity, seed)?;
            *slot = error(&corrupted);
            bar.inc(1);
        }
        corruptions.push(CorruptionErrors {
            corruption: name.clone(),
            errors,
        });
    }
    bar.finish_and_clear();
    Ok(ErrorTable {
        clean_error,
        corruptions,
    })
}

fn file_label(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The first `limit` images of `dataset`.
pub fn first_images(dataset: ImageDataset, limit: Option<usize>) -> ImageDataset {
    let Some(limit) = limit.filter(|&n| n < dataset.len()) else {
        return dataset;
    };
    let len = dataset.image_len();
    let mut subset = dataset;
    subset.images.truncate(limit * len);
    subset.labels.truncate(limit);
    subset
}

/// The corruption names asked for, checked, or all of them.
pub fn chosen_corruptions(asked: &[String]) -> Result<Vec<String>> {
    let known = corruption_names();
    if asked.is_empty() {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    for name in asked {
        if !known.contains(&name.as_str()) {
            bail!("unknown corruption '{name}'; known: {}", known.join(", "));
        }
    }
    Ok(asked.to_vec())
}

/// Builds the report of `errors`, with mCE against `baseline` when given.
pub fn report(
    model: &Path,
    test: &ImageDataset,
    seed: u64,
    errors: ErrorTable,
    baseline: Option<(&Path, &ErrorTable)>,
) -> Result<CorruptionReport> {
    let all: Vec<f64> = errors
        .corruptions
        .iter()
        .flat_map(|c| c.errors.iter().map(|e| 1.0 - e))
        .collect();
    let benchmark = baseline
        .map(|(path, table)| {
            corruption_benchmark(&errors, table)
                .with_context(|| format!("mCE against {}", path.display()))
        })
        .transpose()?;
    Ok(CorruptionReport {
        model: model.display().to_string(),
        dataset: test.name.clone(),
        images: test.len(),
        seed,
        clean_accuracy: 1.0 - errors.clean_error,
        mean_corruption_accuracy: all.iter().sum::<f64>() / all.len().max(1) as f64,
        errors,
        benchmark,
        baseline: baseline.map(|(p, _)| p.display().to_string()),
    })
}

/// The accuracy heat map (corruption × severity) of a report, as SVG.
pub fn accuracy_heat_map(report: &CorruptionReport, title: &str) -> Result<String> {
    Ok(heat_map(&HeatMap {
        title: title.to_string(),
        row_labels: report
            .errors
            .corruptions
            .iter()
            .map(|c| c.corruption.clone())
            .collect(),
        column_labels: (1..=5).map(|s| format!("severity {s}")).collect(),
        values: report
            .errors
            .corruptions
            .iter()
            .map(|c| c.errors.iter().map(|e| 1.0 - e).collect())
            .collect(),
        value_range: (0.0, 1.0),
        value_label: "accuracy".into(),
    })?)
}

fn baseline_table(
    path: &Path,
    test: &ImageDataset,
    names: &[String],
    seed: u64,
    progress: bool,
) -> Result<ErrorTable> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    if !is_json {
        return error_table(path, test, names, seed, progress);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let earlier: CorruptionReport = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a corruptions.json written by keen robust corruptions",
            path.display()
        )
    })?;
    if earlier.images != test.len() || earlier.seed != seed || earlier.dataset != test.name {
        bail!(
            "{}: measured on {} images of {} with seed {}, but this run uses {} images of {} with seed {}; pass the baseline model file instead",
            path.display(),
            earlier.images,
            earlier.dataset,
            earlier.seed,
            test.len(),
            test.name,
            seed
        );
    }
    Ok(earlier.errors)
}

/// Runs `keen robust corruptions`.
pub fn run(args: CorruptionArgs) -> Result<()> {
    let names = chosen_corruptions(&args.corruptions)?;
    let (dataset, _, _) = super::robust::dataset_of(&args.model)?;
    let test = first_images(
        load_split(&dataset, args.data.as_deref(), SplitName::Test)?,
        args.limit,
    );
    anyhow::ensure!(!test.is_empty(), "{dataset}: the test split is empty");
    let progress = !args.no_progress;
    let errors = error_table(&args.model, &test, &names, args.seed, progress)?;
    let baseline = match &args.baseline {
        Some(path) => Some((
            path.as_path(),
            baseline_table(path, &test, &names, args.seed, progress)?,
        )),
        None => None,
    };
    let report = report(
        &args.model,
        &test,
        args.seed,
        errors,
        baseline.as_ref().map(|(p, t)| (*p, t)),
    )?;

    let out = args.out.clone().unwrap_or_else(|| {
        args.model
            .parent()
            .unwrap_or(Path::new("."))
            .join("corruptions")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_json(&out.join("corruptions.json"), &report)?;
    let svg = accuracy_heat_map(&report, &format!("{}: accuracy", file_label(&args.model)))?;
    keen_models::weights::write_atomic(&out.join("accuracy.svg"), svg.as_bytes())
        .with_context(|| format!("{}: cannot write", out.display()))?;
    let shape = test.image_shape();
    let grid = corruption_grid(&test.images[..test.image_len()], shape, args.seed, 3)?;
    keen_models::weights::write_atomic(&out.join("examples.png"), &encode_png(&grid)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;

    println!(
        "{} on {} test images of {} (seed {})",
        args.model.display(),
        report.images,
        report.dataset,
        report.seed
    );
    println!(
        "{:<20} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "accuracy", "s1", "s2", "s3", "s4", "s5", "mean"
    );
    for row in &report.errors.corruptions {
        let acc: Vec<f64> = row.errors.iter().map(|e| 100.0 * (1.0 - e)).collect();
        println!(
            "{:<20} {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}%",
            row.corruption,
            acc[0],
            acc[1],
            acc[2],
            acc[3],
            acc[4],
            acc.iter().sum::<f64>() / 5.0
        );
    }
    println!(
        "clean {:.2}%, mean under corruption {:.2}%",
        100.0 * report.clean_accuracy,
        100.0 * report.mean_corruption_accuracy
    );
    if let (Some(b), Some(path)) = (&report.benchmark, &report.baseline) {
        println!(
            "mCE {:.1}% and relative mCE {:.1}% against {path} (100% = as bad as the baseline)",
            100.0 * b.mce,
            100.0 * b.relative_mce
        );
    }
    println!(
        "wrote {}/corruptions.json, accuracy.svg, examples.png",
        out.display()
    );
    Ok(())
}
