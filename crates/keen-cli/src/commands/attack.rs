//! `keen robust attack`: accuracy under FGSM, PGD or APGD-CE at several budgets, with the
//! gradient-masking checks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use keen_data::source::SplitName;
use keen_robust::attack::{
    clean_accuracy, masking_checks, robust_accuracy, AttackConfig, AttackKind, EpsPoint,
    InputGradient, MaskingReport, Norm,
};
use keen_robust::charts::{line_chart, LineChart, Series};
use keen_train::input_gradient::ModelInputGradient;
use serde::Serialize;

use super::{load_model, load_split};
use crate::output::write_json;

/// Options of `keen robust attack`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen robust attack --model runs/mnist-fgsm/model.safetensors --attack pgd --eps 0.1,0.2,0.3 \\
                     --steps 50 --restarts 10 --limit 1000
  keen robust attack --model runs/cnn-small/model.safetensors --attack apgd --norm l2 --eps 0.5,1,2
  keen robust attack --model runs/cnn-small/model.safetensors --attack fgsm --eps 0.05,0.1")]
pub struct AttackArgs {
    /// The model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The attack: fgsm, pgd or apgd (APGD-CE).
    #[arg(long, default_value = "pgd")]
    pub attack: String,
    /// The threat model: linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Budgets ε in pixel units (pixels in [0, 1]), comma-separated.
    #[arg(long, default_value = "0.1,0.2,0.3", value_delimiter = ',')]
    pub eps: Vec<f32>,
    /// Gradient steps of PGD and APGD.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Random restarts; each image keeps its worst case.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// PGD step size [default: 2.5·ε/steps].
    #[arg(long)]
    pub step_size: Option<f32>,
    /// Attack only the first N test images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the gradient-masking checks (FGSM at each ε and one unbounded attack).
    #[arg(long)]
    pub no_checks: bool,
    /// Dataset to attack [default: the one the model was trained on].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Output folder for the JSON and the SVG ε-curve [default: beside MODEL, attack/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Compute device: flex (CPU), or cuda[:N] / wgpu in builds with those features.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

#[derive(Serialize)]
struct AttackSummary {
    model: String,
    dataset: String,
    images: usize,
    first_images_of_test_split: bool,
    attack: AttackConfig,
    clean: EpsPoint,
    curve: Vec<EpsPoint>,
    fgsm: Vec<EpsPoint>,
    unbounded: Option<EpsPoint>,
    masking: Option<MaskingReport>,
}

/// Runs `keen robust attack`.
pub fn run(args: AttackArgs) -> Result<()> {
    let kind: AttackKind = args.attack.parse().map_err(anyhow::Error::msg)?;
    let norm: Norm = args.norm.parse().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!args.eps.is_empty(), "--eps needs at least one budget");
    for &eps in &args.eps {
        anyhow::ensure!(
            eps.is_finite() && eps > 0.0,
            "--eps: every budget must be positive, got {eps}"
        );
    }
    let mut eps_list = args.eps.clone();
    eps_list.sort_by(f32::total_cmp);
    let base = AttackConfig {
        steps: args.steps,
        step_size: args.step_size,
        restarts: args.restarts,
        seed: args.seed,
        ..AttackConfig::new(kind, norm, eps_list[0])
    };
    base.validate()?;
    let device = crate::device::parse_device(&args.device)?;
    let (loaded, normalization) = load_model(&args.model, &device)?;
    let dataset = match &args.dataset {
        Some(d) => d.clone(),
        None => keen_models::weights::read_metadata(&args.model)?
            .get(keen_train::trainer::meta::DATASET)
            .cloned()
            .with_context(|| {
                format!(
                    "{}: does not say which dataset it was trained on; pass --dataset",
                    args.model.display()
                )
            })?,
    };
    let test = load_split(&dataset, args.data.as_deref(), SplitName::Test)?;
    anyhow::ensure!(
        loaded.spec.input_shape() == test.image_shape(),
        "{} takes {:?} images but {} has {:?}",
        args.model.display(),
        loaded.spec.input_shape(),
        dataset,
        test.image_shape()
    );
    let count = args.limit.unwrap_or(test.len()).min(test.len());
    anyhow::ensure!(
        count > 0,
        "no images to attack (--limit 0 or an empty test split)"
    );
    let pixels: Vec<f32> = (0..count)
        .flat_map(|i| test.image(i).iter().map(|&v| v as f32 / 255.0))
        .collect();
    let labels = &test.labels[..count];
    let oracle =
        ModelInputGradient::new(&loaded.model, test.image_shape(), &normalization, &device)?;

    let clean = clean_accuracy(&oracle, &pixels, labels, args.batch_size)?;
    println!(
        "{} on {dataset}: {count} test images{}, clean accuracy {:.2}%",
        args.model.display(),
        if count < test.len() {
            format!(" (the first {count} of {})", test.len())
        } else {
            String::new()
        },
        100.0 * clean.accuracy
    );
    let attack_at = |config: &AttackConfig, label: &str| -> Result<EpsPoint> {
        let started = std::time::Instant::now();
        let point = robust_accuracy(
            &oracle,
            &pixels,
            labels,
            config,
            args.batch_size,
            &mut |d| {
                if !args.no_progress {
                    let secs = started.elapsed().as_secs_f64();
                    let eta = secs / d as f64 * (count - d) as f64;
                    eprint!("\r{label}: {d}/{count} images, {secs:.0}s, ~{eta:.0}s left   ");
                }
            },
        )?;
        if !args.no_progress {
            eprint!("\r{:width$}\r", "", width = label.len() + 60);
        }
        Ok(point)
    };
    let mut curve = Vec::new();
    for &eps in &eps_list {
        let config = AttackConfig {
            eps,
            ..base.clone()
        };
        let point = attack_at(&config, &format!("{kind} ε={eps}"))?;
        eprintln!(
            "  {kind} ε = {eps}: {:.2}% ({:.0}s)",
            100.0 * point.accuracy,
            point.seconds
        );
        curve.push(point);
    }
    let (mut fgsm, mut unbounded, mut masking) = (Vec::new(), None, None);
    if !args.no_checks {
        if kind != AttackKind::Fgsm {
            for &eps in &eps_list {
                let config = AttackConfig {
                    eps,
                    ..AttackConfig::new(AttackKind::Fgsm, norm, eps)
                };
                fgsm.push(attack_at(&config, &format!("fgsm ε={eps}"))?);
            }
        }
        let far = norm.unbounded_eps(oracle.image_len());
        let config = AttackConfig {
            eps: far,
            restarts: 1,
            ..base.clone()
        };
        let point = attack_at(&config, &format!("{kind} ε={far} (unbounded)"))?;
        let mut with_clean = vec![clean.clone()];
        with_clean.extend(curve.iter().cloned());
        masking = Some(masking_checks(&with_clean, &point, &fgsm));
        unbounded = Some(point);
    }

    print_table(kind, &clean, &curve, &fgsm);
    if let Some(report) = &masking {
        println!("gradient-masking checks:");
        for check in &report.checks {
            let verdict = match check.passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "n/a ",
            };
            println!("  [{verdict}] {}: {}", check.name, check.detail);
        }
        if report.suspected {
            println!(
                "  warning: a check failed; the accuracy under attack may be an overestimate (gradient masking)"
            );
        }
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.parent().unwrap_or(Path::new(".")).join("attack"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!("{kind}-{norm}");
    let summary = AttackSummary {
        model: args.model.display().to_string(),
        dataset: dataset.clone(),
        images: count,
        first_images_of_test_split: count < test.len(),
        attack: base,
        clean: clean.clone(),
        curve: curve.clone(),
        fgsm: fgsm.clone(),
        unbounded,
        masking,
    };
    write_json(&out.join(format!("{stem}.json")), &summary)?;
    let svg = curve_svg(kind, norm, &clean, &curve, &fgsm, count)?;
    let svg_path = out.join(format!("{stem}.svg"));
    keen_models::weights::write_atomic(&svg_path, svg.as_bytes())
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    println!(
        "written: {} and {}",
        out.join(format!("{stem}.json")).display(),
        svg_path.display()
    );
    Ok(())
}

fn print_table(kind: AttackKind, clean: &EpsPoint, curve: &[EpsPoint], fgsm: &[EpsPoint]) {
    let with_fgsm = !fgsm.is_empty();
    println!(
        "ε        {:<10} mean loss   {}seconds",
        format!("{kind} acc"),
        if with_fgsm { "FGSM acc   " } else { "" }
    );
    println!(
        "{:<8} {:>7.2}%   {:>9.4}   {}",
        0,
        100.0 * clean.accuracy,
        clean.mean_loss,
        if with_fgsm { "           " } else { "" }
    );
    for (i, p) in curve.iter().enumerate() {
        let f = fgsm
            .get(i)
            .map(|f| format!("{:>7.2}%    ", 100.0 * f.accuracy))
            .unwrap_or_default();
        println!(
            "{:<8} {:>7.2}%   {:>9.4}   {f}{:.0}",
            p.eps,
            100.0 * p.accuracy,
            p.mean_loss,
            p.seconds
        );
    }
}

fn curve_svg(
    kind: AttackKind,
    norm: Norm,
    clean: &EpsPoint,
    curve: &[EpsPoint],
    fgsm: &[EpsPoint],
    images: usize,
) -> Result<String> {
    let series = |name: String, points: &[EpsPoint]| Series {
        name,
        points: std::iter::once((0.0, clean.accuracy))
            .chain(points.iter().map(|p| (p.eps as f64, p.accuracy)))
            .collect(),
    };
    let mut all = vec![series(kind.to_string(), curve)];
    if !fgsm.is_empty() {
        all.push(series("fgsm".into(), fgsm));
    }
    Ok(line_chart(&LineChart {
        title: format!("accuracy under {kind} ({norm}), {images} images"),
        x_label: "ε".into(),
        y_label: "accuracy".into(),
        series: all,
        y_range: Some((0.0, 1.0)),
    })?)
}
