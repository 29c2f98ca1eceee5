//! `keen report`: the report card. For each model (or each stage of a compression recipe):
//! clean accuracy, size, latency, corruption accuracy and mCE, adversarial accuracy with
//! gradient-masking checks, OOD detection and calibration, as HTML with inline SVG charts and
//! as JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use clap::Args;
use keen_data::dataset::ImageDataset;
use keen_data::source::SplitName;
use keen_models::{nonzero_trainable_params, trainable_params, ImageClassifier};
use keen_robust::attack::{
    clean_accuracy, masking_checks, robust_accuracy, AttackConfig, AttackKind, InputGradient, Norm,
};
use keen_robust::calibration::{
    apply_temperature, calibration_report, fit_temperature, DEFAULT_BINS,
};
use keen_robust::ood::{energy_scores, msp_scores, ood_metrics};
use keen_robust::report::{
    render_html, AdversarialSummary, CalibrationSummary, CorruptionSummary, ModelCard, OodSummary,
    ReportCard,
};
use keen_robust::ErrorTable;
use keen_train::input_gradient::ModelInputGradient;

use super::corruptions::{chosen_corruptions, error_table, first_images};
use super::{load_model, load_split};
use crate::output::write_json;

/// Options of `keen report`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen report runs/compress-fashion-mnist                  # every stage of a recipe run
  keen report runs/teacher/model.safetensors runs/student/model.safetensors --names teacher,student
  keen report runs/compress-fashion-mnist --corruption-images 500 --attack-images 200 --skip attack")]
pub struct ReportArgs {
    /// Model files, or the output folder of `keen compress` (its stages.json lists the stages).
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Comma-separated names for the models [default: stage names, or the model folders].
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Output folder for report.html and report.json [default: the recipe folder's report/,
    /// or the first model's folder's report/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Page title.
    #[arg(long)]
    pub title: Option<String>,
    /// Test images for the corruption benchmark (15 corruptions × 5 severities each).
    #[arg(long, default_value_t = 1000)]
    pub corruption_images: usize,
    /// Test images to attack.
    #[arg(long, default_value_t = 500)]
    pub attack_images: usize,
    /// L∞ budgets of the PGD attack, in pixel units of [0, 1].
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.02,0.05,0.1")]
    pub eps: Vec<f32>,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    /// Out-of-distribution dataset.
    #[arg(long, default_value = "mnist")]
    pub ood: String,
    /// Folder holding the OOD dataset's files.
    #[arg(long, value_name = "DIR")]
    pub ood_data: Option<PathBuf>,
    /// Folder holding the in-distribution dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Sections to leave out: corruptions, attack, ood, calibration (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// Models named by the arguments: files as given, a recipe folder as its stages.
fn resolve_models(args: &ReportArgs) -> Result<Vec<(String, PathBuf)>> {
    let mut models = Vec::new();
    for path in &args.models {
        let stages = path.join("stages.json");
        if path.is_dir() {
            let text = std::fs::read_to_string(&stages).with_context(|| {
                format!(
                    "{}: a folder must be a `keen compress` output with stages.json",
                    path.display()
                )
            })?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a stage table", stages.display()))?;
            for row in rows {
                let name = row["stage"].as_str().unwrap_or("stage").to_string();
                let file = row["model_path"]
                    .as_str()
                    .with_context(|| format!("{}: a row has no model_path", stages.display()))?;
                models.push((name, PathBuf::from(file)));
            }
        } else {
            anyhow::ensure!(path.exists(), "{}: no such model file", path.display());
            let name = path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            models.push((name, path.clone()));
        }
    }
    if !args.names.is_empty() {
        anyhow::ensure!(
            args.names.len() == models.len(),
            "--names gives {} names for {} models",
            args.names.len(),
            models.len()
        );
        for ((name, _), given) in models.iter_mut().zip(&args.names) {
            *name = given.clone();
        }
    }
    Ok(models)
}

struct Logits {
    values: Vec<f32>,
    labels: Vec<u32>,
}

fn logits_of(
    model: &keen_models::KeenModel,
    normalization: &keen_data::loader::Normalization,
    dataset: &ImageDataset,
    indices: Vec<usize>,
    device: &Device,
) -> Logits {
    let values = keen_train::predict_logits(model, dataset, &indices, normalization, 256, device);
    Logits {
        values,
        labels: indices.iter().map(|&i| dataset.labels[i]).collect(),
    }
}

fn accuracy(logits: &Logits, classes: usize) -> f64 {
    let correct = logits
        .values
        .chunks(classes)
        .zip(&logits.labels)
        .filter(|(row, label)| keen_train::evaluate::argmax(row) as u32 == **label)
        .count();
    correct as f64 / logits.labels.len().max(1) as f64
}

fn adversarial(
    oracle: &dyn InputGradient,
    test: &ImageDataset,
    args: &ReportArgs,
) -> Result<AdversarialSummary> {
    let count = args.attack_images.min(test.len()).max(1);
    let pixels: Vec<f32> = (0..count)
        .flat_map(|i| test.image(i).iter().map(|&v| v as f32 / 255.0))
        .collect();
    let labels = &test.labels[..count];
    let mut eps = args.eps.clone();
    eps.sort_by(f32::total_cmp);
    let pgd = |eps: f32, kind: AttackKind, steps: usize| AttackConfig {
        steps,
        ..AttackConfig::new(kind, Norm::Linf, eps)
    };
    let batch = 100;
    let clean = clean_accuracy(oracle, &pixels, labels, batch)?;
    let mut curve = vec![clean.clone()];
    let mut fgsm = Vec::new();
    for &e in &eps {
        curve.push(robust_accuracy(
            oracle,
            &pixels,
            labels,
            &pgd(e, AttackKind::Pgd, args.attack_steps),
            batch,
            &mut |_| {},
        )?);
        fgsm.push(robust_accuracy(
            oracle,
            &pixels,
            labels,
            &pgd(e, AttackKind::Fgsm, 1),
            batch,
            &mut |_| {},
        )?);
    }
    let far = Norm::Linf.unbounded_eps(oracle.image_len());
    let unbounded = robust_accuracy(
        oracle,
        &pixels,
        labels,
        &pgd(far, AttackKind::Pgd, args.attack_steps),
        batch,
        &mut |_| {},
    )?;
    let checks = masking_checks(&curve, &unbounded, &fgsm);
    Ok(AdversarialSummary {
        attack: format!("PGD-{} L∞", args.attack_steps),
        images: count,
        // Through the shortest decimal of the f32, so 0.05 is not 0.05000000074505806.
        curve: curve
            .iter()
            .map(|p| {
                (
                    p.eps.to_string().parse().unwrap_or(p.eps as f64),
                    p.accuracy,
                )
            })
            .collect(),
        masking_warnings: checks
            .checks
            .iter()
            .filter(|c| c.passed == Some(false))
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect(),
    })
}

/// Runs `keen report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let models = resolve_models(&args)?;
    for section in &args.skip {
        anyhow::ensure!(
            ["corruptions", "attack", "ood", "calibration"].contains(&section.as_str()),
            "--skip: unknown section '{section}' (corruptions, attack, ood, calibration)"
        );
    }
    let skip = |section: &str| args.skip.iter().any(|s| s == section);
    let device = Device::flex();
    let (dataset, fraction, seed) = super::robust::dataset_of(&models[0].1)?;
    let train = load_split(&dataset, args.data.as_deref(), SplitName::Train)?;
    let test = load_split(&dataset, args.data.as_deref(), SplitName::Test)?;
    let outside = if skip("ood") {
        None
    } else {
        Some(load_split(
            &args.ood,
            args.ood_data.as_deref(),
            SplitName::Test,
        )?)
    };
    let (_, mut val_idx) = keen_data::split::train_val_split(train.len(), fraction, seed);
    if val_idx.is_empty() {
        val_idx = keen_data::split::train_val_split(train.len(), 0.1, seed).1;
    }
    let corruption_test = first_images(test.clone(), Some(args.corruption_images));
    let corruption_names = chosen_corruptions(&[])?;
    let mut baseline: Option<ErrorTable> = None;
    let mut cards = Vec::with_capacity(models.len());
    for (index, (name, path)) in models.iter().enumerate() {
        eprintln!(
            "[{}/{}] {name}: {}",
            index + 1,
            models.len(),
            path.display()
        );
        let (loaded, normalization) = load_model(path, &device)?;
        let (model_dataset, _, _) = super::robust::dataset_of(path)?;
        anyhow::ensure!(
            model_dataset == dataset,
            "{} was trained on {model_dataset}, but the report is on {dataset}",
            path.display()
        );
        let classes = loaded.spec.num_classes;
        let input = loaded.spec.input_shape();
        let model = &loaded.model;
        let tested = logits_of(
            model,
            &normalization,
            &test,
            (0..test.len()).collect(),
            &device,
        );
        let file_bytes = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read", path.display()))?
            .len();
        let latency_ms = keen_compress::stages::batch_latency_ms(model, input, &device) / 256.0;

        let calibration = if skip("calibration") {
            None
        } else {
            let val = logits_of(model, &normalization, &train, val_idx.clone(), &device);
            let fit = fit_temperature(&val.values, classes, &val.labels)?;
            let before = calibration_report(&tested.values, classes, &tested.labels, DEFAULT_BINS)?;
            let scaled = apply_temperature(&tested.values, fit.temperature)?;
            let after = calibration_report(&scaled, classes, &tested.labels, DEFAULT_BINS)?;
            Some(CalibrationSummary {
                ece: before.ece,
                ece_scaled: after.ece,
                temperature: fit.temperature,
                nll: before.nll,
                brier: before.brier,
                bins: before.bins,
            })
        };
        let ood = match &outside {
            Some(outside) => {
                let out = logits_of(
                    model,
                    &normalization,
                    outside,
                    (0..outside.len()).collect(),
                    &device,
                );
                let msp = ood_metrics(
                    &msp_scores(&tested.values, classes)?,
                    &msp_scores(&out.values, classes)?,
                )?;
                let energy = ood_metrics(
                    &energy_scores(&tested.values, classes, 1.0)?,
                    &energy_scores(&out.values, classes, 1.0)?,
                )?;
                Some(OodSummary {
                    dataset: args.ood.clone(),
                    msp_auroc: msp.auroc,
                    energy_auroc: energy.auroc,
                    msp_fpr95: msp.fpr_at_95_tpr,
                    energy_fpr95: energy.fpr_at_95_tpr,
                })
            }
            None => None,
        };
        let corruption = if skip("corruptions") {
            None
        } else {
            let table = error_table(
                path,
                &corruption_test,
                &corruption_names,
                0,
                !args.no_progress,
            )?;
            let benchmark = match &baseline {
                Some(base) => Some(keen_robust::corruption_benchmark(&table, base)?),
                None => None,
            };
            let cells: Vec<f64> = table
                .corruptions
                .iter()
                .flat_map(|c| c.errors.iter().map(|e| 1.0 - e))
                .collect();
            let summary = CorruptionSummary {
                images: corruption_test.len(),
                mean_accuracy: cells.iter().sum::<f64>() / cells.len().max(1) as f64,
                per_corruption: table
                    .corruptions
                    .iter()
                    .map(|c| {
                        (
                            c.corruption.clone(),
                            c.errors.iter().map(|e| 1.0 - e).sum::<f64>() / 5.0,
                        )
                    })
                    .collect(),
                mce: Some(benchmark.as_ref().map_or(1.0, |b| b.mce)),
                relative_mce: Some(benchmark.as_ref().map_or(1.0, |b| b.relative_mce)),
            };
            baseline.get_or_insert(table);
            Some(summary)
        };
        let adversarial = if skip("attack") {
            None
        } else {
            let oracle = ModelInputGradient::new(model, input, &normalization, &device)?;
            Some(adversarial(&oracle, &test, &args)?)
        };
        cards.push(ModelCard {
            name: name.clone(),
            file: path.display().to_string(),
            int8: matches!(model, keen_models::KeenModel::Graph(g) if g.quant_state().config.enabled),
            accuracy: accuracy(&tested, classes),
            params: trainable_params(model),
            nonzero_params: nonzero_trainable_params(model),
            macs: model.macs(input),
            file_bytes,
            int8_bytes: keen_compress::recipe::int8_bytes(model),
            latency_ms,
            corruption,
            adversarial,
            ood,
            calibration,
        });
    }
    let mut notes = vec![format!(
        "Accuracy, calibration and OOD on all {} test images; latency: burn on this machine's CPU, a batch of 256, per image.",
        test.len()
    )];
    if !skip("corruptions") {
        notes.push(format!(
            "Corruptions: the first {} test images, 15 corruptions × 5 severities, seed 0; mCE relative to {}.",
            corruption_test.len(),
            models[0].0
        ));
    }
    if !skip("attack") {
        notes.push(format!(
            "Attack: PGD-{} L∞ (step 2.5ε/steps, random start) on the first {} test images, normalisation inside the model; gradient-masking checks: accuracy falls with ε, an unbounded attack reaches ~0%, PGD is no weaker than FGSM.",
            args.attack_steps,
            args.attack_images.min(test.len())
        ));
    }
    if let Some(o) = &outside {
        notes.push(format!(
            "OOD: {} test images of {} against the {dataset} test set.",
            o.len(),
            args.ood
        ));
    }
    let card = ReportCard {
        title: args
            .title
            .clone()
            .unwrap_or_else(|| format!("keen report card: {dataset}")),
        dataset: dataset.clone(),
        notes,
        models: cards,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let first = &args.models[0];
        if first.is_dir() {
            first.join("report")
        } else {
            first.parent().unwrap_or(Path::new(".")).join("report")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_json(&out.join("report.json"), &card)?;
    let html = render_html(&card)?;
    let html_path = out.join("report.html");
    keen_models::weights::write_atomic(&html_path, html.as_bytes())
        .with_context(|| format!("{}: cannot write", html_path.display()))?;
    println!(
        "{:<14} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>7}",
        "model", "acc", "size kB", "corr acc", "mCE", "adv acc", "AUROC", "ECE"
    );
    for m in &card.models {
        println!(
            "{:<14} {:>7.2}% {:>8.1} {:>9} {:>9} {:>9} {:>8} {:>7}",
            m.name,
            100.0 * m.accuracy,
            m.deploy_bytes() as f64 / 1024.0,
            m.corruption
                .as_ref()
                .map_or("—".into(), |c| format!("{:.2}%", 100.0 * c.mean_accuracy)),
            m.corruption
                .as_ref()
                .and_then(|c| c.mce)
                .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
            m.adversarial
                .as_ref()
                .and_then(|a| a.curve.last())
                .map_or("—".into(), |(_, a)| format!("{:.2}%", 100.0 * a)),
            m.ood
                .as_ref()
                .map_or("—".into(), |o| format!("{:.3}", o.energy_auroc)),
            m.calibration
                .as_ref()
                .map_or("—".into(), |c| format!("{:.4}", c.ece)),
        );
    }
    println!("wrote {} and report.json", html_path.display());
    Ok(())
}
