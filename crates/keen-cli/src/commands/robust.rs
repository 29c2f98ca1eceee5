//! `keen robust`: does the model know when it is wrong?

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keen_data::source::SplitName;
use keen_robust::calibration::{
    apply_temperature, calibration_report, choose_threshold, confidence_and_correctness,
    fit_temperature, DEFAULT_BINS,
};
use serde::Serialize;

use super::{load_model, load_split};
use crate::output::write_json;

/// `keen robust` subcommands.
#[derive(Subcommand, Debug)]
pub enum RobustCommand {
    /// Calibration: ECE, MCE, NLL, Brier; temperature scaling fitted on the validation split;
    /// reliability diagrams; an abstain threshold for a target risk.
    Calibrate(CalibrateArgs),
    /// Out-of-distribution detection: MSP, energy, max-logit, ODIN and Mahalanobis scores
    /// against another dataset, corrupted test images and noise.
    Ood(super::ood::OodArgs),
    /// Adversarial attacks (FGSM, PGD, APGD-CE): accuracy at each ε, gradient-masking checks.
    Attack(super::attack::AttackArgs),
    /// Common corruptions (15 types × 5 severities): accuracy, mCE against a baseline model,
    /// heat map and example grid.
    Corruptions(super::corruptions::CorruptionArgs),
}

/// Options of `keen robust calibrate`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen robust calibrate runs/cnn-small/model.safetensors
  keen robust calibrate runs/cnn-small/model.safetensors --max-risk 0.02 --out runs/cnn-small/calibration")]
pub struct CalibrateArgs {
    /// The model file.
    pub model: PathBuf,
    /// Selective risk the abstain threshold must keep (chosen on validation, reported on test).
    #[arg(long, default_value_t = 0.02)]
    pub max_risk: f64,
    /// Output folder for JSON and reliability diagrams [default: beside MODEL, calibration/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Runs `keen robust ...`.
pub fn run(command: RobustCommand) -> Result<()> {
    match command {
        RobustCommand::Calibrate(args) => calibrate(args),
        RobustCommand::Ood(args) => super::ood::run(args),
        RobustCommand::Attack(args) => super::attack::run(args),
        RobustCommand::Corruptions(args) => super::corruptions::run(args),
    }
}

/// The model, its dataset name, and its logits on `split` at `indices` (all when `None`).
struct Scored {
    logits: Vec<f32>,
    labels: Vec<u32>,
    classes: usize,
}

fn score(
    model_path: &Path,
    dataset: &keen_data::dataset::ImageDataset,
    indices: Option<Vec<usize>>,
) -> Result<Scored> {
    let device = burn::prelude::Device::flex();
    let (loaded, normalization) = load_model(model_path, &device)?;
    anyhow::ensure!(
        loaded.spec.input_shape() == dataset.image_shape(),
        "{} takes {:?} images but {} has {:?}",
        model_path.display(),
        loaded.spec.input_shape(),
        dataset.name,
        dataset.image_shape()
    );
    let indices = indices.unwrap_or_else(|| (0..dataset.len()).collect());
    let logits = keen_train::predict_logits(
        &loaded.model,
        dataset,
        &indices,
        &normalization,
        256,
        &device,
    );
    Ok(Scored {
        logits,
        labels: indices.iter().map(|&i| dataset.labels[i]).collect(),
        classes: loaded.spec.num_classes,
    })
}

pub(super) fn dataset_of(model: &Path) -> Result<(String, f32, u64)> {
    let metadata = keen_models::weights::read_metadata(model)?;
    let dataset = metadata
        .get(keen_train::trainer::meta::DATASET)
        .cloned()
        .with_context(|| {
            format!(
                "{}: does not say which dataset it was trained on",
                model.display()
            )
        })?;
    let config: Option<keen_train::TrainConfig> = metadata
        .get(keen_train::trainer::meta::TRAIN_CONFIG)
        .and_then(|t| serde_json::from_str(t).ok());
    let (fraction, seed) = config
        .map(|c| (c.val_fraction, c.seed))
        .unwrap_or((0.1, 42));
    Ok((dataset, fraction, seed))
}

#[derive(Serialize)]
struct CalibrationSummary {
    temperature: keen_robust::calibration::TemperatureFit,
    test_before: keen_robust::CalibrationReport,
    test_after: keen_robust::CalibrationReport,
    abstain: keen_robust::calibration::SelectiveThreshold,
    test_coverage_at_threshold: f64,
    test_risk_at_threshold: f64,
    /// Area under the test risk–coverage curve (after temperature scaling; lower is better).
    test_aurc: f64,
    /// The test risk–coverage curve, thinned to at most [`CURVE_POINTS`] points.
    test_risk_coverage: Vec<keen_robust::calibration::selective::RiskCoveragePoint>,
}

/// Points kept of a risk–coverage curve in JSON and charts (the full curve has one per image).
const CURVE_POINTS: usize = 200;

/// Every `len / CURVE_POINTS`-th point of `curve`, always with its last (coverage 1).
fn thinned<T: Clone>(curve: &[T]) -> Vec<T> {
    let stride = curve.len().div_ceil(CURVE_POINTS).max(1);
    let mut kept: Vec<T> = curve.iter().step_by(stride).cloned().collect();
    if !(curve.len() - 1).is_multiple_of(stride) {
        kept.extend(curve.last().cloned());
    }
    kept
}

fn calibrate(args: CalibrateArgs) -> Result<()> {
    let (dataset, fraction, seed) = dataset_of(&args.model)?;
    let train = load_split(&dataset, args.data.as_deref(), SplitName::Train)?;
    let test = load_split(&dataset, args.data.as_deref(), SplitName::Test)?;
    let (_, mut val_idx) = keen_data::split::train_val_split(train.len(), fraction, seed);
    if val_idx.is_empty() {
        val_idx = keen_data::split::train_val_split(train.len(), 0.1, seed).1;
    }
    let val = score(&args.model, &train, Some(val_idx))?;
    let tst = score(&args.model, &test, None)?;
    let fit = fit_temperature(&val.logits, val.classes, &val.labels)?;
    let before = calibration_report(&tst.logits, tst.classes, &tst.labels, DEFAULT_BINS)?;
    let scaled = apply_temperature(&tst.logits, fit.temperature)?;
    let after = calibration_report(&scaled, tst.classes, &tst.labels, DEFAULT_BINS)?;
    let val_scaled = apply_temperature(&val.logits, fit.temperature)?;
    let (val_conf, val_ok) = confidence_and_correctness(&val_scaled, val.classes, &val.labels)?;
    let abstain = choose_threshold(&val_conf, &val_ok, args.max_risk)?;
    let (conf, ok) = confidence_and_correctness(&scaled, tst.classes, &tst.labels)?;
    let (answered, wrong) = match abstain.threshold {
        Some(t) => conf
            .iter()
            .zip(&ok)
            .filter(|(c, _)| **c >= t)
            .fold((0usize, 0usize), |(a, w), (_, ok)| {
                (a + 1, w + usize::from(!ok))
            }),
        None => (0, 0),
    };
    let curve = keen_robust::calibration::selective::risk_coverage_curve(&conf, &ok)?;
    let aurc = keen_robust::calibration::selective::area_under_risk_coverage(&curve);
    let summary = CalibrationSummary {
        temperature: fit.clone(),
        test_before: before.clone(),
        test_after: after.clone(),
        abstain: abstain.clone(),
        test_coverage_at_threshold: answered as f64 / conf.len().max(1) as f64,
        test_risk_at_threshold: wrong as f64 / answered.max(1) as f64,
        test_aurc: aurc,
        test_risk_coverage: thinned(&curve),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        args.model
            .parent()
            .unwrap_or(Path::new("."))
            .join("calibration")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_json(&out.join("calibration.json"), &summary)?;
    for (name, report) in [("before", &before), ("after", &after)] {
        let svg = keen_robust::charts::reliability_diagram(
            &report.bins,
            &format!("test, {name} temperature scaling"),
        )?;
        let path = out.join(format!("reliability-{name}.svg"));
        keen_models::weights::write_atomic(&path, svg.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let png = keen_robust::charts::png::encode_png(
            &keen_robust::charts::png::reliability_png(&report.bins, 400)?,
        )?;
        let path = out.join(format!("reliability-{name}.png"));
        keen_models::weights::write_atomic(&path, &png)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let chart = keen_robust::charts::line_chart(&keen_robust::charts::LineChart {
        title: format!("test risk-coverage after temperature scaling (AURC {aurc:.4})"),
        x_label: "coverage (fraction answered)".into(),
        y_label: "selective risk (error rate of the answered)".into(),
        series: vec![keen_robust::charts::Series {
            name: "risk".into(),
            points: summary
                .test_risk_coverage
                .iter()
                .map(|p| (p.coverage, p.risk))
                .collect(),
        }],
        y_range: None,
    })?;
    let path = out.join("risk-coverage.svg");
    keen_models::weights::write_atomic(&path, chart.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "temperature {:.3} (validation NLL {:.4} -> {:.4})",
        fit.temperature, fit.nll_before, fit.nll_after
    );
    println!("test      ECE      MCE      NLL      Brier    accuracy");
    for (name, r) in [("before", &before), ("after", &after)] {
        println!(
            "{name:<8}  {:.4}   {:.4}   {:.4}   {:.4}   {:.2}%",
            r.ece,
            r.mce,
            r.nll,
            r.brier,
            100.0 * r.accuracy
        );
    }
    println!("test risk-coverage: AURC {aurc:.4} (risk-coverage.svg)");
    match abstain.threshold {
        Some(t) => println!(
            "abstain below confidence {t:.4}: test coverage {:.1}%, risk {:.2}% (target {:.2}%)",
            100.0 * summary.test_coverage_at_threshold,
            100.0 * summary.test_risk_at_threshold,
            100.0 * args.max_risk
        ),
        None => println!(
            "no threshold keeps the risk under {:.2}%",
            100.0 * args.max_risk
        ),
    }
    println!("written: {}", out.display());
    Ok(())
}
