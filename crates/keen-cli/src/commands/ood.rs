//! `keen robust ood`: can the model tell its own test images from something else?
//!
//! Five scores (MSP, energy, max-logit, ODIN, Mahalanobis) against several OOD sets (another
//! dataset, the in-distribution test images under severe corruptions, noise), each reported as
//! AUROC, AUPR-in, AUPR-out and FPR at 95% TPR with the in-distribution test images as positives.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_data::source::SplitName;
use keen_models::KeenModel;
use keen_robust::ood::odin::{predicted_classes, ODIN_EPSILON_GRID};
use keen_robust::ood::{
    choose_odin_epsilon, energy_scores, max_logit_scores, msp_scores, odin_image_scores,
    ood_metrics, MahalanobisDetector, OdinConfig, OdinEpsilonChoice,
};
use keen_robust::OodMetrics;
use keen_train::features::FeatureExtractor;
use keen_train::input_gradient::ModelInputGradient;
use serde::Serialize;

use super::ood_sets::{build_set, OodSetSpec, SetContext};
use super::robust::dataset_of;
use super::{load_model, load_split};
use crate::output::write_json;

/// Options of `keen robust ood`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen robust ood runs/cnn-small/model.safetensors --ood-data ./mnist-files   # vs MNIST, corrupted, noise
  keen robust ood runs/cnn-small/model.safetensors --limit 2000 --odin-tune --output ood.json
  keen robust ood runs/cnn-small/model.safetensors --ood folder:./other-images,uniform-noise \\
                  --methods energy,mahalanobis --feature-layer fc1")]
pub struct OodArgs {
    /// The model file.
    pub model: PathBuf,
    /// OOD sets, comma-separated: any dataset keen loads (mnist, cifar10, folder:PATH, ...),
    /// `corrupted` (the in-distribution test images under gaussian_noise, motion_blur, fog and
    /// contrast), `corrupted:NAME` (one corruption), `noise` (= uniform-noise,gaussian-noise).
    #[arg(long, default_value = "mnist,corrupted,noise", value_delimiter = ',')]
    pub ood: Vec<String>,
    /// Folder holding the named OOD datasets' files.
    #[arg(long, value_name = "DIR")]
    pub ood_data: Option<PathBuf>,
    /// Scores, comma-separated: msp, energy, max-logit, odin, mahalanobis.
    #[arg(
        long,
        default_value = "msp,energy,max-logit,odin,mahalanobis",
        value_delimiter = ','
    )]
    pub methods: Vec<String>,
    /// Use the first N in-distribution test images and at most N images per OOD set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// ODIN's softmax temperature T.
    #[arg(long, default_value_t = 1000.0)]
    pub odin_temperature: f32,
    /// ODIN's input perturbation ε, in pixel units (pixels in [0, 1]; the paper's 0.0014 is
    /// this unit too: its code divides the step by the normalisation's std).
    #[arg(long, default_value_t = 0.0014)]
    pub odin_eps: f32,
    /// Choose ODIN's ε on in-distribution validation images instead (the ε of a grid that
    /// maximises their mean score, as Generalized ODIN does; no OOD data is looked at).
    #[arg(long)]
    pub odin_tune: bool,
    /// Validation images for --odin-tune.
    #[arg(long, default_value_t = 1000)]
    pub tune_images: usize,
    /// Mahalanobis features: a layer name from `keen info MODEL --layers` (needs the model's
    /// graph form; feature maps are averaged over positions) [default: the classifier head's
    /// input, i.e. the input of the final linear layer].
    #[arg(long)]
    pub feature_layer: Option<String>,
    /// Training images (evenly spread over the training part of the split) the Mahalanobis
    /// class means and shared covariance are fitted on.
    #[arg(long, default_value_t = 10_000)]
    pub fit_images: usize,
    /// Severity (1-5) of the `corrupted` sets.
    #[arg(long, default_value_t = 5)]
    pub severity: u32,
    /// Seed of the corruptions and noise images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Write the figures as JSON here (atomically).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Folder holding the in-distribution dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// One OOD score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Method {
    Msp,
    Energy,
    MaxLogit,
    Odin,
    Mahalanobis,
}

impl Method {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "msp" => Method::Msp,
            "energy" => Method::Energy,
            "max-logit" | "maxlogit" => Method::MaxLogit,
            "odin" => Method::Odin,
            "mahalanobis" => Method::Mahalanobis,
            other => bail!(
                "--methods: unknown score '{other}' (msp, energy, max-logit, odin, mahalanobis)"
            ),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Method::Msp => "MSP",
            Method::Energy => "energy",
            Method::MaxLogit => "max logit",
            Method::Odin => "ODIN",
            Method::Mahalanobis => "Mahalanobis",
        }
    }
}

/// What `--output` holds.
#[derive(Serialize)]
struct OodReport {
    model: String,
    in_distribution: String,
    in_images: usize,
    in_accuracy: f64,
    /// How to read the metrics.
    convention: &'static str,
    odin: Option<OdinSummary>,
    mahalanobis: Option<MahalanobisSummary>,
    sets: Vec<SetReport>,
}

#[derive(Serialize)]
struct OdinSummary {
    temperature: f32,
    epsilon_pixels: f32,
    tuned: Option<OdinEpsilonChoice>,
}

#[derive(Serialize)]
struct MahalanobisSummary {
    layer: String,
    dims: usize,
    fit_images: usize,
    relative_ridge: f64,
}

#[derive(Serialize)]
struct SetReport {
    name: String,
    description: String,
    images: usize,
    scores: Vec<MethodMetrics>,
}

#[derive(Serialize)]
struct MethodMetrics {
    method: Method,
    #[serde(flatten)]
    metrics: OodMetrics,
}

const CONVENTION: &str = "in-distribution test images are the positives and every score is \
    higher for in-distribution; aupr_in = average precision with in-distribution as positives, \
    aupr_out = with OOD as positives; fpr_at_95_tpr = fraction of OOD images accepted at the \
    threshold that keeps 95% of in-distribution images";

/// Ridge on the Mahalanobis covariance, relative to the mean feature variance: enough to invert
/// the covariance of post-ReLU features with dead channels, too small to change the others.
const RELATIVE_RIDGE: f64 = 1e-6;

/// Every score of one set of images.
struct SetScores {
    logits: Vec<f32>,
    scores: Vec<(Method, Vec<f32>)>,
}

/// The model and the detectors fitted for it.
struct Scorer {
    model: KeenModel,
    normalization: Normalization,
    classes: usize,
    methods: Vec<Method>,
    extractor: Option<FeatureExtractor>,
    mahalanobis: Option<MahalanobisDetector>,
    odin: Option<(ModelInputGradient, OdinConfig)>,
    batch_size: usize,
    device: burn::prelude::Device,
}

impl Scorer {
    fn score(&self, set: &ImageDataset) -> Result<SetScores> {
        let indices: Vec<usize> = (0..set.len()).collect();
        let (logits, features) = match &self.extractor {
            Some(extractor) => {
                let out = extractor.predict(
                    set,
                    &indices,
                    &self.normalization,
                    self.batch_size,
                    &self.device,
                );
                (out.logits, Some(out.features))
            }
            None => (
                keen_train::predict_logits(
                    &self.model,
                    set,
                    &indices,
                    &self.normalization,
                    self.batch_size,
                    &self.device,
                ),
                None,
            ),
        };
        let k = self.classes;
        let mut scores = Vec::with_capacity(self.methods.len());
        for &method in &self.methods {
            let values = match method {
                Method::Msp => msp_scores(&logits, k)?,
                Method::Energy => energy_scores(&logits, k, 1.0)?,
                Method::MaxLogit => max_logit_scores(&logits, k)?,
                Method::Odin => {
                    let (oracle, config) = self.odin.as_ref().context("ODIN was not set up")?;
                    let pixels = pixels_of(set);
                    let predicted = predicted_classes(&logits, k);
                    odin_image_scores(oracle, &pixels, &predicted, config, self.batch_size)?
                }
                Method::Mahalanobis => {
                    let detector = self.mahalanobis.as_ref().context("no Mahalanobis fit")?;
                    detector.score(features.as_deref().context("no features")?)?
                }
            };
            scores.push((method, values));
        }
        Ok(SetScores { logits, scores })
    }
}

/// Pixels in `[0, 1]`, as the input-gradient models take them.
fn pixels_of(set: &ImageDataset) -> Vec<f32> {
    set.images.iter().map(|&v| v as f32 / 255.0).collect()
}

/// Runs `keen robust ood`.
pub fn run(args: OodArgs) -> Result<()> {
    let started = Instant::now();
    let mut methods = Vec::new();
    for m in &args.methods {
        let m = Method::parse(m)?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    anyhow::ensure!(!methods.is_empty(), "--methods: name at least one score");
    let mut specs = Vec::new();
    for item in &args.ood {
        specs.extend(OodSetSpec::parse(item)?);
    }
    anyhow::ensure!(!specs.is_empty(), "--ood: name at least one set");
    let odin_config = OdinConfig {
        temperature: args.odin_temperature,
        epsilon: args.odin_eps,
    };
    odin_config.validate()?;
    anyhow::ensure!(
        (1..=5).contains(&args.severity),
        "--severity must be 1 to 5"
    );

    let (dataset, fraction, split_seed) = dataset_of(&args.model)?;
    let device = burn::prelude::Device::flex();
    let (loaded, normalization) = load_model(&args.model, &device)?;
    let shape = loaded.spec.input_shape();
    let test = load_split(&dataset, args.data.as_deref(), SplitName::Test)?;
    anyhow::ensure!(
        shape == test.image_shape(),
        "{} takes {:?} images but {dataset} has {:?}",
        args.model.display(),
        shape,
        test.image_shape()
    );
    let limit = args.limit.unwrap_or(test.len());
    anyhow::ensure!(limit > 0, "--limit must be at least 1");
    let in_test = test.subset(&(0..limit.min(test.len())).collect::<Vec<_>>());

    let needs_train = methods.contains(&Method::Mahalanobis)
        || (methods.contains(&Method::Odin) && args.odin_tune);
    let train = if needs_train {
        Some(load_split(
            &dataset,
            args.data.as_deref(),
            SplitName::Train,
        )?)
    } else {
        None
    };
    let (train_idx, val_idx) = match &train {
        Some(t) => keen_data::split::train_val_split(t.len(), fraction, split_seed),
        None => (Vec::new(), Vec::new()),
    };

    let mut scorer = Scorer {
        model: loaded.model.clone(),
        normalization: normalization.clone(),
        classes: loaded.spec.num_classes,
        methods: methods.clone(),
        extractor: None,
        mahalanobis: None,
        odin: None,
        batch_size: args.batch_size.max(1),
        device: device.clone(),
    };

    let mut mahalanobis_summary = None;
    if let (true, Some(train)) = (methods.contains(&Method::Mahalanobis), &train) {
        let extractor =
            FeatureExtractor::new(&loaded.model, shape, args.feature_layer.as_deref(), &device)?;
        let fit_idx = evenly_spread(&train_idx, args.fit_images);
        anyhow::ensure!(
            !fit_idx.is_empty(),
            "--fit-images: no training images to fit Mahalanobis on"
        );
        let t = Instant::now();
        let out = extractor.predict(train, &fit_idx, &normalization, scorer.batch_size, &device);
        let labels: Vec<u32> = fit_idx.iter().map(|&i| train.labels[i]).collect();
        let detector =
            MahalanobisDetector::fit(&out.features, extractor.dims(), &labels, RELATIVE_RIDGE)?;
        eprintln!(
            "Mahalanobis: {} features of '{}' fitted on {} training images ({:.0} s)",
            extractor.dims(),
            extractor.layer(),
            fit_idx.len(),
            t.elapsed().as_secs_f64()
        );
        mahalanobis_summary = Some(MahalanobisSummary {
            layer: extractor.layer().to_string(),
            dims: extractor.dims(),
            fit_images: fit_idx.len(),
            relative_ridge: RELATIVE_RIDGE,
        });
        scorer.mahalanobis = Some(detector);
        scorer.extractor = Some(extractor);
    }

    let mut odin_summary = None;
    if methods.contains(&Method::Odin) {
        let oracle = ModelInputGradient::new(&loaded.model, shape, &normalization, &device)?;
        let mut config = odin_config;
        let mut tuned = None;
        if let (true, Some(train)) = (args.odin_tune, &train) {
            let val = if val_idx.is_empty() {
                &train_idx
            } else {
                &val_idx
            };
            let chosen = evenly_spread(val, args.tune_images);
            anyhow::ensure!(!chosen.is_empty(), "--tune-images must be at least 1");
            let t = Instant::now();
            let val_set = train.subset(&chosen);
            let logits = keen_train::predict_logits(
                &loaded.model,
                &val_set,
                &(0..val_set.len()).collect::<Vec<_>>(),
                &normalization,
                scorer.batch_size,
                &device,
            );
            let choice = choose_odin_epsilon(
                &oracle,
                &pixels_of(&val_set),
                &predicted_classes(&logits, scorer.classes),
                config.temperature,
                &ODIN_EPSILON_GRID,
                scorer.batch_size,
            )?;
            eprintln!(
                "ODIN: ε = {} chosen on {} validation images ({:.0} s)",
                choice.epsilon,
                choice.images,
                t.elapsed().as_secs_f64()
            );
            config.epsilon = choice.epsilon;
            tuned = Some(choice);
        }
        odin_summary = Some(OdinSummary {
            temperature: config.temperature,
            epsilon_pixels: config.epsilon,
            tuned,
        });
        scorer.odin = Some((oracle, config));
    }

    let t = Instant::now();
    let inside = scorer.score(&in_test)?;
    let in_accuracy = accuracy(&inside.logits, scorer.classes, &in_test.labels);
    eprintln!(
        "{dataset}: {} test images scored ({:.0} s), accuracy {:.2}%",
        in_test.len(),
        t.elapsed().as_secs_f64(),
        100.0 * in_accuracy
    );

    let ctx = SetContext {
        in_test: &in_test,
        ood_data: args.ood_data.as_deref(),
        limit,
        severity: args.severity,
        seed: args.seed,
    };
    let mut sets = Vec::with_capacity(specs.len());
    for (name, spec) in &specs {
        let t = Instant::now();
        let set = build_set(spec, &ctx)?;
        let outside = scorer.score(&set)?;
        let mut scores = Vec::with_capacity(methods.len());
        for ((method, in_scores), (_, out_scores)) in inside.scores.iter().zip(&outside.scores) {
            scores.push(MethodMetrics {
                method: *method,
                metrics: ood_metrics(in_scores, out_scores)
                    .with_context(|| format!("{} on {name}", method.label()))?,
            });
        }
        eprintln!(
            "{name}: {} images scored ({:.0} s)",
            set.len(),
            t.elapsed().as_secs_f64()
        );
        sets.push(SetReport {
            name: name.clone(),
            description: spec.describe(&dataset, args.severity),
            images: set.len(),
            scores,
        });
    }

    let report = OodReport {
        model: args.model.display().to_string(),
        in_distribution: dataset,
        in_images: in_test.len(),
        in_accuracy,
        convention: CONVENTION,
        odin: odin_summary,
        mahalanobis: mahalanobis_summary,
        sets,
    };
    print_report(&report);
    if let Some(path) = &args.output {
        write_json(path, &report)?;
        println!("written: {}", path.display());
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// At most `count` of `indices`, evenly spaced over the whole list (the split's indices are
/// sorted, so a prefix would take the start of the file only).
fn evenly_spread(indices: &[usize], count: usize) -> Vec<usize> {
    let count = count.min(indices.len());
    (0..count)
        .map(|j| indices[j * indices.len() / count])
        .collect()
}

fn accuracy(logits: &[f32], classes: usize, labels: &[u32]) -> f64 {
    let right = predicted_classes(logits, classes)
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    right as f64 / labels.len().max(1) as f64
}

fn print_report(report: &OodReport) {
    println!(
        "{} (in, {} test images, accuracy {:.2}%) against {} OOD sets",
        report.in_distribution,
        report.in_images,
        100.0 * report.in_accuracy,
        report.sets.len()
    );
    if let Some(odin) = &report.odin {
        println!(
            "ODIN: T = {}, ε = {} (pixels in [0, 1]){}",
            odin.temperature,
            odin.epsilon_pixels,
            if odin.tuned.is_some() {
                ", chosen on validation"
            } else {
                ""
            }
        );
    }
    if let Some(m) = &report.mahalanobis {
        println!(
            "Mahalanobis: {} ({} values), fitted on {} training images",
            m.layer, m.dims, m.fit_images
        );
    }
    println!("AUPR-in: in-distribution as positives; AUPR-out: OOD as positives");
    println!(
        "{:<16} {:>6}  {:<12} {:>7} {:>8} {:>8} {:>10}",
        "OOD set", "images", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR@95TPR"
    );
    for set in &report.sets {
        for m in &set.scores {
            println!(
                "{:<16} {:>6}  {:<12} {:>7.4} {:>8.4} {:>8.4} {:>10.4}",
                set.name,
                set.images,
                m.method.label(),
                m.metrics.auroc,
                m.metrics.aupr_in,
                m.metrics.aupr_out,
                m.metrics.fpr_at_95_tpr
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spread_covers_the_list_and_methods_parse() {
        let indices: Vec<usize> = (0..10).map(|i| i * 3).collect();
        assert_eq!(evenly_spread(&indices, 4), vec![0, 6, 15, 21]);
        assert_eq!(evenly_spread(&indices, 50).len(), 10);
        assert!(evenly_spread(&indices, 0).is_empty());
        assert_eq!(Method::parse(" ODIN").unwrap(), Method::Odin);
        assert!(Method::parse("knn").is_err());
    }
}
