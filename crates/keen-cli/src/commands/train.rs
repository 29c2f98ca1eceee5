//! `keen train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use keen_data::augment::{RandAugment, StrongAugment};
use keen_data::dataset::ImageDataset;
use keen_data::source::SplitName;
use keen_train::fixmatch::{FixMatchConfig, PseudoLabeller};
use keen_train::schedule::Decay;
use keen_train::{evaluate_all, OptimizerKind, TrainConfig, TrainOptions, TrainSummary};

use super::load_split;
use crate::device::parse_devices;
use crate::output::write_json;

/// Learning-rate decay after warm-up.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// Half a cosine down to zero.
    Cosine,
    /// A straight line down to zero (with --warmup-epochs: the triangular one-cycle).
    Linear,
    /// Multiply by --gamma every --step-every epochs.
    Step,
    /// No decay.
    Constant,
}

/// Options of `keen train`. Unset options take the model's preset (see `keen info MODEL`).
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen train                                   # cnn-small on Fashion-MNIST
  keen train --model resnet20 --epochs 15 --out runs/resnet20
  keen train --model vit-tiny --randaugment 2,9 --label-smoothing 0.1
  keen train --model vit-tiny --mixup 0.8 --cutmix 1.0 --drop-path 0.1
  keen train --out runs/resnet20 --resume      # continue after an interruption
  keen train --labels-per-class 100 --fixmatch --steps-per-epoch 500 --epochs 6
  keen train --dataset folder:./my-images --model resnet8 --epochs 30")]
pub struct TrainArgs {
    /// Model from the registry (`keen info --list`).
    #[arg(long, default_value = "cnn-small")]
    pub model: String,
    /// Dataset: fashion-mnist, mnist, cifar10 or folder:PATH.
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Folder holding the dataset files (else $KEEN_DATA, system paths, the cache).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Run folder for checkpoints, logs and the final model [default: runs/MODEL].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last finished epoch.
    #[arg(long)]
    pub resume: bool,
    /// Passes over the training split (or, with --steps-per-epoch, that many steps each).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimizer steps per epoch, cycling through the labelled images as often as needed
    /// [default: one pass over them; with --fixmatch one pass over the unlabelled images].
    #[arg(long, value_name = "N")]
    pub steps_per_epoch: Option<usize>,
    /// Images per optimizer step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer: sgd (with momentum) or adamw.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate decay after warm-up.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Epochs between step decays (with --schedule step).
    #[arg(long, default_value_t = 30)]
    pub step_every: usize,
    /// Step-decay factor (with --schedule step).
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// Linear warm-up length in epochs (fractions allowed).
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Label smoothing factor (0 = off).
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Zero padding of the random crop (0 = no crop).
    #[arg(long)]
    pub crop_padding: Option<usize>,
    /// Random horizontal flips: true or false.
    #[arg(long)]
    pub hflip: Option<bool>,
    /// RandAugment as N,M (N ops of magnitude M in 0..=10); "off" disables.
    #[arg(long, value_name = "N,M")]
    pub randaugment: Option<String>,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of the training set held out for validation.
    #[arg(long)]
    pub val_fraction: Option<f32>,
    /// Train on at most this many images (quick experiments).
    #[arg(long)]
    pub max_train_images: Option<usize>,
    /// Mixup with Beta(A, A) blending weights (0 = off; DeiT uses 0.8).
    #[arg(long, value_name = "A")]
    pub mixup: Option<f32>,
    /// CutMix with Beta(A, A) box areas (0 = off; DeiT uses 1.0). With --mixup too, each
    /// mixed batch picks one (see --mix-switch-prob).
    #[arg(long, value_name = "A")]
    pub cutmix: Option<f32>,
    /// Probability that a batch is mixed at all (with --mixup / --cutmix).
    #[arg(long, value_name = "P")]
    pub mix_prob: Option<f32>,
    /// Probability of CutMix rather than mixup when both are on.
    #[arg(long, value_name = "P")]
    pub mix_switch_prob: Option<f32>,
    /// AugMix consistency (Hendrycks et al. 2020): two AugMix views of every image join it in
    /// the batch, and a Jensen-Shannon term ties the three predictions together (keen train
    /// only; triples the cost of a step).
    #[arg(long)]
    pub augmix: bool,
    /// Weight of the Jensen-Shannon term (with --augmix; the paper's 12).
    #[arg(long, value_name = "LAMBDA", requires = "augmix")]
    pub augmix_lambda: Option<f32>,
    /// Largest AugMix op magnitude on RandAugment's 0..=10 scale (with --augmix; the paper's 3).
    #[arg(long, value_name = "S", requires = "augmix")]
    pub augmix_severity: Option<u32>,
    /// Stochastic depth: drop-path rate of the last transformer block, linearly less before
    /// (ViT and DeiT models; 0 = off; DeiT-tiny uses 0.1).
    #[arg(long, value_name = "P")]
    pub drop_path: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay (timm's
    /// --model-ema-decay; FixMatch uses 0.999), warmed up as min(D, (1+t)/(10+t)) over the steps
    /// t. Validation and model.safetensors use the average; log.jsonl also has the trained
    /// weights' raw_val_accuracy.
    #[arg(long, value_name = "D")]
    pub ema_decay: Option<f64>,
    /// Stop after this many epochs of this invocation; the run stays resumable.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// Compute device: flex (CPU), or cuda[:N] / wgpu in builds with those features. A comma
    /// list (cuda:0,cuda:1) trains data-parallel over all of them.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Adversarial training (keen train only).
    #[command(flatten)]
    pub adversarial: AdversarialArgs,
    /// Few labels: a labelled subset and FixMatch.
    #[command(flatten)]
    pub semi: SemiSupervisedArgs,
}

/// Options of training from few labels.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Few labels and FixMatch")]
pub struct SemiSupervisedArgs {
    /// Keep only N labelled training images per class (stratified, chosen by --seed after the
    /// validation split is held out); alone, this is the supervised baseline.
    #[arg(long, value_name = "N")]
    pub labels_per_class: Option<usize>,
    /// FixMatch (Sohn et al. 2020): the rest of the training split becomes unlabelled data,
    /// pseudo-labelled from weak views and learnt from strong views (RandAugment + Cutout).
    /// Needs --labels-per-class.
    #[arg(long)]
    pub fixmatch: bool,
    /// Unlabelled images per labelled image in a step (μ) [default: 7].
    #[arg(long, value_name = "MU")]
    pub fixmatch_mu: Option<usize>,
    /// Confidence a pseudo-label needs (τ) [default: 0.95].
    #[arg(long, value_name = "TAU")]
    pub fixmatch_threshold: Option<f32>,
    /// Weight of the unlabelled loss (λ_u) [default: 1].
    #[arg(long, value_name = "LAMBDA")]
    pub fixmatch_lambda: Option<f32>,
    /// Side of the strong view's Cutout square as a fraction of the image side, 0 for none
    /// [default: 0.5].
    #[arg(long, value_name = "FRACTION")]
    pub fixmatch_cutout: Option<f32>,
    /// The strong view's RandAugment: N ops per image (each applied with probability 1/2) at
    /// magnitudes drawn from 1..=M, or off for Cutout alone [default: 2,10].
    #[arg(long, value_name = "N,M")]
    pub fixmatch_strong: Option<String>,
    /// Which model pseudo-labels the weak views: model (the one being trained, as the paper)
    /// or ema (the weight average of --ema-decay, in inference mode: Mean Teacher / EMAN)
    /// [default: model].
    #[arg(long, value_name = "WHO")]
    pub fixmatch_pseudo_labels: Option<String>,
}

impl SemiSupervisedArgs {
    /// FixMatch's settings, when it is on.
    fn fixmatch_config(&self) -> Result<Option<FixMatchConfig>> {
        let tuned = self.fixmatch_mu.is_some()
            || self.fixmatch_threshold.is_some()
            || self.fixmatch_lambda.is_some()
            || self.fixmatch_cutout.is_some()
            || self.fixmatch_strong.is_some()
            || self.fixmatch_pseudo_labels.is_some();
        if !self.fixmatch {
            anyhow::ensure!(
                !tuned,
                "--fixmatch-mu, --fixmatch-threshold, --fixmatch-lambda, --fixmatch-cutout, --fixmatch-strong and --fixmatch-pseudo-labels need --fixmatch"
            );
            return Ok(None);
        }
        anyhow::ensure!(
            self.labels_per_class.is_some(),
            "--fixmatch needs --labels-per-class N (e.g. 100): the labelled subset; the rest of the training split is its unlabelled data"
        );
        let defaults = FixMatchConfig::default();
        let (ops, max_magnitude) = match &self.fixmatch_strong {
            // Off: no ops, so the magnitude is never drawn; the paper's is kept for the record.
            Some(text) => parse_ops_magnitude("--fixmatch-strong", "2,10", text)?
                .unwrap_or((0, defaults.strong.max_magnitude)),
            None => (defaults.strong.ops, defaults.strong.max_magnitude),
        };
        let pseudo_labeller = match &self.fixmatch_pseudo_labels {
            Some(name) => PseudoLabeller::from_name(name).with_context(|| {
                format!("--fixmatch-pseudo-labels must be model or ema, got {name:?}")
            })?,
            None => defaults.pseudo_labeller,
        };
        Ok(Some(FixMatchConfig {
            mu: self.fixmatch_mu.unwrap_or(defaults.mu),
            threshold: self.fixmatch_threshold.unwrap_or(defaults.threshold),
            lambda_u: self.fixmatch_lambda.unwrap_or(defaults.lambda_u),
            strong: StrongAugment {
                cutout_fraction: self
                    .fixmatch_cutout
                    .unwrap_or(defaults.strong.cutout_fraction),
                ops,
                max_magnitude,
            },
            pseudo_labeller,
        }))
    }
}

/// Options of adversarial training.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Adversarial training (keen train only)")]
pub struct AdversarialArgs {
    /// Train on attacked images: pgd (Madry), trades, or fgsm-rs (fast FGSM, random start).
    #[arg(long, value_name = "METHOD")]
    pub adversarial: Option<String>,
    /// L∞ budget in pixel units (pixels in [0, 1]).
    #[arg(long, default_value_t = 0.3)]
    pub adv_eps: f32,
    /// Attack steps per training step [default: 10 for pgd and trades, 1 for fgsm-rs].
    #[arg(long)]
    pub adv_steps: Option<usize>,
    /// Attack step size [default: 1.25·ε for fgsm-rs, 2.5·ε/steps otherwise].
    #[arg(long)]
    pub adv_alpha: Option<f32>,
    /// TRADES' β (weight of the KL term).
    #[arg(long, default_value_t = 6.0)]
    pub trades_beta: f32,
    /// Grow ε linearly from 0 over this many epochs (fractions allowed).
    #[arg(long, default_value_t = 0.0)]
    pub adv_ramp_epochs: f64,
    /// After every epoch, PGD-10 accuracy on this many validation images; the most robust
    /// epoch is kept as model-best-robust.safetensors (0 = off).
    #[arg(long, default_value_t = 0)]
    pub adv_val_images: usize,
}

fn parse_randaugment(text: &str) -> Result<Option<RandAugment>> {
    Ok(parse_ops_magnitude("--randaugment", "2,9", text)?.map(|(n, m)| RandAugment { n, m }))
}

/// `N,M` (ops per image, magnitude) of `option`, or `None` for off/none.
fn parse_ops_magnitude(option: &str, example: &str, text: &str) -> Result<Option<(usize, u32)>> {
    if text == "off" || text == "none" {
        return Ok(None);
    }
    let (n, m) = text
        .split_once(',')
        .with_context(|| format!("{option} expects N,M (e.g. {example}) or off, got '{text}'"))?;
    let n = n
        .trim()
        .parse()
        .with_context(|| format!("{option}: N '{n}' is not a count"))?;
    let m = m
        .trim()
        .parse()
        .with_context(|| format!("{option}: M '{m}' is not a magnitude"))?;
    Ok(Some((n, m)))
}

/// The preset for the model, overridden by every option the user set.
fn resolve_config(args: &TrainArgs) -> Result<TrainConfig> {
    keen_models::find_model(&args.model)?;
    let mut config = TrainConfig::preset(&args.model);
    config.dataset = args.dataset.clone();
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = &args.optimizer {
        config.optimizer = v.parse::<OptimizerKind>().map_err(anyhow::Error::msg)?;
    }
    if let Some(v) = args.lr {
        config.lr = v;
    }
    if let Some(v) = args.momentum {
        config.momentum = v;
    }
    if let Some(v) = args.weight_decay {
        config.weight_decay = v;
    }
    if let Some(v) = args.warmup_epochs {
        config.warmup_epochs = v;
    }
    if let Some(v) = args.label_smoothing {
        config.label_smoothing = v;
    }
    if let Some(v) = args.crop_padding {
        config.augment.random_crop_padding = v;
    }
    if let Some(v) = args.hflip {
        config.augment.horizontal_flip = v;
    } else if config.dataset == "mnist" {
        // A mirrored digit is another glyph (or none): the presets' flip is for clothes and
        // CIFAR objects, not for digits.
        config.augment.horizontal_flip = false;
    }
    if let Some(v) = &args.randaugment {
        config.augment.rand_augment = parse_randaugment(v)?;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = args.val_fraction {
        config.val_fraction = v;
    }
    if args.max_train_images.is_some() {
        config.max_train_images = args.max_train_images;
    }
    if let Some(v) = args.mixup {
        config.mix.mixup_alpha = v;
    }
    if let Some(v) = args.cutmix {
        config.mix.cutmix_alpha = v;
    }
    if let Some(v) = args.mix_prob {
        config.mix.prob = v;
    }
    if let Some(v) = args.mix_switch_prob {
        config.mix.switch_prob = v;
    }
    if let Some(v) = args.drop_path {
        config.drop_path = v;
    }
    config.ema_decay = args.ema_decay;
    config.steps_per_epoch = args.steps_per_epoch;
    config.labels_per_class = args.semi.labels_per_class;
    config.fixmatch = args.semi.fixmatch_config()?;
    let augmentation_set = args.crop_padding.is_some() || args.hflip.is_some();
    if config.fixmatch.is_some() && config.augment.is_identity() && !augmentation_set {
        // FixMatch's weak view is the labelled augmentation; without one the pseudo-labels come
        // from the very images the strong view distorts, and the paper's recipe is crop + flip.
        config.augment.random_crop_padding = 2;
        config.augment.horizontal_flip = true;
        eprintln!(
            "note: {} has no augmentation preset; FixMatch's weak view (and the labelled images) get --crop-padding 2 --hflip true",
            args.model
        );
    }
    if let Some(schedule) = args.schedule {
        config.decay = match schedule {
            ScheduleArg::Cosine => Decay::Cosine { min_factor: 0.0 },
            ScheduleArg::Constant => Decay::Constant,
            ScheduleArg::Linear => Decay::Linear,
            ScheduleArg::Step => Decay::Step {
                every_epochs: args.step_every,
                gamma: args.gamma,
            },
        };
    }
    Ok(config)
}

/// Runs `keen train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.adversarial.adversarial.is_some() {
        return run_with(&args, "adversarial training", |config, dataset, options| {
            adversarial_training(&args.adversarial, config, dataset, options)
        });
    }
    if args.augmix {
        return run_with(
            &args,
            "AugMix consistency training",
            |config, dataset, options| augmix_training(&args, config, dataset, options),
        );
    }
    run_with(&args, "training", |config, dataset, options| {
        Ok(keen_train::train(config, dataset, options)?)
    })
}

/// AugMix consistency hooks from the options, then the run.
fn augmix_training(
    args: &TrainArgs,
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
) -> Result<TrainSummary> {
    use keen_train::consistency::{AugMixConsistency, AugMixTraining};
    let mut consistency = AugMixConsistency::default();
    if let Some(lambda) = args.augmix_lambda {
        consistency.lambda = lambda;
    }
    if let Some(severity) = args.augmix_severity {
        consistency.augmix.severity = severity;
    }
    let normalization = keen_data::loader::Normalization::fit(dataset);
    let mut hooks = AugMixTraining::new(
        consistency,
        normalization,
        dataset.image_shape(),
        config.seed,
    )?;
    eprintln!("AugMix consistency: {consistency:?}");
    Ok(keen_train::train_with(
        config, dataset, options, None, &mut hooks,
    )?)
}

/// Resolves `args`, loads the data, runs `trainer` (plain training, distillation, ...), then
/// evaluates the saved model on the test split.
pub fn run_with(
    args: &TrainArgs,
    verb: &str,
    trainer: impl FnOnce(&TrainConfig, &ImageDataset, &TrainOptions) -> Result<TrainSummary>,
) -> Result<()> {
    anyhow::ensure!(
        args.adversarial.adversarial.is_none() || verb == "adversarial training",
        "--adversarial is only supported by keen train"
    );
    anyhow::ensure!(
        args.adversarial.adversarial.is_none() || (args.mixup.is_none() && args.cutmix.is_none()),
        "--mixup/--cutmix cannot be combined with --adversarial"
    );
    anyhow::ensure!(
        args.adversarial.adversarial.is_none()
            || (args.semi.labels_per_class.is_none() && args.steps_per_epoch.is_none()),
        "--labels-per-class, --fixmatch and --steps-per-epoch cannot be combined with --adversarial yet"
    );
    anyhow::ensure!(
        !args.augmix || verb == "AugMix consistency training",
        "--augmix is only supported by keen train"
    );
    anyhow::ensure!(
        !args.augmix
            || (args.adversarial.adversarial.is_none()
                && !args.semi.fixmatch
                && args.mixup.is_none()
                && args.cutmix.is_none()),
        "--augmix cannot be combined with --adversarial, --fixmatch, --mixup or --cutmix"
    );
    let config = resolve_config(args)?;
    let (device, extra_devices) = parse_devices(&args.device)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&args.model));
    if !args.resume && out.join("state.json").exists() {
        eprintln!(
            "note: {} holds an earlier run; starting over (pass --resume to continue it instead)",
            out.display()
        );
    }
    let train_set = load_split(&config.dataset, args.data.as_deref(), SplitName::Train)?;
    eprintln!(
        "{verb} {} on {} ({} images, {} classes) -> {}",
        config.model,
        config.dataset,
        train_set.len(),
        train_set.num_classes(),
        out.display()
    );
    let options = TrainOptions {
        out_dir: out.clone(),
        resume: args.resume,
        device: device.clone(),
        extra_devices,
        progress: !args.no_progress,
        stop_after_epochs: args.stop_after_epochs,
    };
    let summary = trainer(&config, &train_set, &options)?;
    let Some(model_path) = summary.model_path else {
        eprintln!(
            "stopped after {} of {} epochs; continue with: keen train --out {} --resume (and the same options)",
            summary.completed_epochs,
            config.epochs,
            out.display()
        );
        return Ok(());
    };
    // The held-out test split is only touched once, after training.
    let test_set = load_split(&config.dataset, args.data.as_deref(), SplitName::Test)?;
    let (loaded, normalization) = super::load_model(&model_path, &device)?;
    let report = evaluate_all(&loaded.model, &test_set, &normalization, 256, &device);
    write_json(&out.join("eval.json"), &report)?;
    println!(
        "{}: test accuracy {:.2}% ({} images), loss {:.4}; model saved to {}",
        config.model,
        100.0 * report.accuracy,
        report.images,
        report.loss,
        model_path.display()
    );
    Ok(())
}

/// Adversarial training hooks from the options, then the run.
fn adversarial_training(
    args: &AdversarialArgs,
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
) -> Result<TrainSummary> {
    use keen_train::adversarial::{
        AdversarialConfig, AdversarialMethod, AdversarialTraining, RobustValidation,
    };
    let method: AdversarialMethod = args
        .adversarial
        .as_deref()
        .unwrap_or("pgd")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let mut adv = AdversarialConfig::new(method, args.adv_eps);
    if let Some(steps) = args.adv_steps {
        adv.steps = steps;
        if method != AdversarialMethod::FgsmRs {
            adv.step_size = 2.5 * args.adv_eps / steps.max(1) as f32;
        }
    }
    if let Some(alpha) = args.adv_alpha {
        adv.step_size = alpha;
    }
    adv.trades_beta = args.trades_beta;
    adv.seed = config.seed;
    let (mut train_idx, val_idx) =
        keen_data::split::train_val_split(dataset.len(), config.val_fraction, config.seed);
    if let Some(limit) = config.max_train_images {
        train_idx.truncate(limit);
    }
    let steps_per_epoch = (train_idx.len() / config.batch_size.max(1)).max(1);
    adv.ramp_steps = (args.adv_ramp_epochs * steps_per_epoch as f64).round() as usize;
    let normalization = keen_data::loader::Normalization::fit(dataset);
    let mut hooks = AdversarialTraining::new(adv, normalization.clone(), dataset.image_shape())?;
    if options.resume {
        let state = keen_train::checkpoint::RunDir::new(&options.out_dir).read_state()?;
        hooks = hooks.starting_at(state.map(|s| s.global_step).unwrap_or(0));
    }
    if args.adv_val_images > 0 {
        anyhow::ensure!(
            !val_idx.is_empty(),
            "--adv-val-images needs a validation split (--val-fraction > 0)"
        );
        let images = &val_idx[..args.adv_val_images.min(val_idx.len())];
        let spec = keen_models::ModelSpec::new(
            &config.model,
            dataset.image_shape(),
            dataset.num_classes(),
        );
        let metadata = keen_train::trainer::model_metadata(config, dataset, &normalization);
        hooks = hooks.with_validation(RobustValidation::new(
            dataset,
            images,
            args.adv_eps,
            10,
            steps_per_epoch,
            options.out_dir.clone(),
            spec,
            metadata,
        ));
    }
    eprintln!("adversarial training: {:?}", hooks.config());
    let summary = keen_train::train_with(config, dataset, options, None, &mut hooks)?;
    if let Some(e) = hooks.validation_error.take() {
        return Err(e.into());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixmatch_with(strong: Option<&str>) -> Result<Option<FixMatchConfig>> {
        SemiSupervisedArgs {
            labels_per_class: Some(100),
            fixmatch: true,
            fixmatch_strong: strong.map(str::to_owned),
            ..Default::default()
        }
        .fixmatch_config()
    }

    #[test]
    fn fixmatch_strong_sets_the_strong_views_randaugment() {
        let paper = fixmatch_with(None).unwrap().expect("on");
        assert_eq!(paper.strong, FixMatchConfig::default().strong);
        let milder = fixmatch_with(Some("1,5")).unwrap().expect("on");
        assert_eq!((milder.strong.ops, milder.strong.max_magnitude), (1, 5));
        assert_eq!(milder.strong.cutout_fraction, paper.strong.cutout_fraction);
        let off = fixmatch_with(Some("off")).unwrap().expect("on");
        assert_eq!(off.strong.ops, 0);
        let error = fixmatch_with(Some("2")).unwrap_err().to_string();
        assert!(error.contains("--fixmatch-strong expects N,M"), "{error}");
        let error = fixmatch_with(Some("2,x")).unwrap_err().to_string();
        assert!(error.contains("--fixmatch-strong: M 'x'"), "{error}");
        // Without --fixmatch the option is refused by name, not ignored.
        let alone = SemiSupervisedArgs {
            fixmatch_strong: Some("2,5".into()),
            ..Default::default()
        };
        let error = alone.fixmatch_config().unwrap_err().to_string();
        assert!(
            error.contains("--fixmatch-strong and --fixmatch-pseudo-labels need --fixmatch"),
            "{error}"
        );
    }

    #[test]
    fn fixmatch_pseudo_labels_picks_the_labeller_by_name() {
        let with = |who: &str| {
            SemiSupervisedArgs {
                labels_per_class: Some(100),
                fixmatch: true,
                fixmatch_pseudo_labels: Some(who.into()),
                ..Default::default()
            }
            .fixmatch_config()
        };
        let ema = with("ema").unwrap().expect("on");
        assert_eq!(ema.pseudo_labeller, PseudoLabeller::Ema);
        assert_eq!(
            with("model").unwrap().expect("on").pseudo_labeller,
            PseudoLabeller::Model
        );
        let error = with("teacher").unwrap_err().to_string();
        assert!(error.contains("must be model or ema"), "{error}");
    }
}
