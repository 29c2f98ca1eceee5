//! The training loop: epochs of shuffled, augmented batches; validation; atomic checkpoints;
//! exact resume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keen_data::dataset::ImageDataset;
use keen_data::loader::{cycled_batches, num_batches, LoaderConfig, Normalization};
use keen_data::split::train_val_split;
use keen_data::subset::labelled_subset;
use keen_models::weights::{self, write_atomic};
use keen_models::{build_model, KeenModel, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{RunDir, RunState};
use crate::config::{OptimizerKind, TrainConfig};
use crate::curves::learning_curves_svg;
use crate::ema::{validate_decay, WeightAverage};
use crate::evaluate::evaluate;
use crate::fixmatch::{FixMatch, PseudoLabeller};
use crate::hooks::{PlainTraining, TrainHooks};
use crate::mixup::Mixing;
use crate::schedule::LrSchedule;
use crate::step::{train_step, StepDevices};
use crate::TrainError;

/// Metadata keys keen writes into every model file besides the model spec.
pub mod meta {
    /// Per-channel normalisation (JSON `{"mean": [...], "std": [...]}`).
    pub const NORMALIZATION: &str = "keen.normalization";
    /// Class names (JSON list).
    pub const CLASS_NAMES: &str = "keen.class_names";
    /// The dataset the model was trained on.
    pub const DATASET: &str = "keen.dataset";
    /// The training configuration (JSON).
    pub const TRAIN_CONFIG: &str = "keen.train_config";
}

/// How to run, as opposed to what to compute (that is the [`TrainConfig`]).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run folder.
    pub out_dir: PathBuf,
    /// Continue from the run folder's last checkpoint.
    pub resume: bool,
    /// The device to train on (autodiff is added here); it holds the model.
    pub device: Device,
    /// More devices for data-parallel training: each step splits its batch over `device` and
    /// these. Empty for single-device training.
    pub extra_devices: Vec<Device>,
    /// Show progress bars.
    pub progress: bool,
    /// Stop after this many epochs of this invocation (the run stays resumable).
    pub stop_after_epochs: Option<usize>,
}

/// One epoch's figures, as logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (augmented images, changing weights).
    pub train_accuracy: f64,
    /// Validation loss, when there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy, when there is a validation split.
    pub val_accuracy: Option<f64>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Seconds spent training (evaluation excluded).
    pub train_seconds: f64,
    /// Training throughput (labelled images).
    pub images_per_sec: f64,
    /// The hooks' own figures (FixMatch: `mask_rate`, `pseudo_label_accuracy`, ...), logged as
    /// fields of the same JSON line.
    #[serde(flatten)]
    pub extra: BTreeMap<String, f64>,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Epochs finished so far.
    pub completed_epochs: usize,
    /// Whether all configured epochs are done.
    pub finished: bool,
    /// Per-epoch records.
    pub history: Vec<EpochRecord>,
    /// The final model file, once finished.
    pub model_path: Option<PathBuf>,
}

fn build_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    match config.optimizer {
        OptimizerKind::Sgd => {
            let momentum = (config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(config.nesterov)
            });
            let decay = (config.weight_decay > 0.0)
                .then(|| WeightDecayConfig::new(config.weight_decay as f32));
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(decay)
                .init()
        }
        OptimizerKind::AdamW => AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .with_epsilon(1e-8)
            .init(),
    }
}

fn validate_config(config: &TrainConfig, dataset: &ImageDataset) -> Result<(), TrainError> {
    if config.epochs == 0 {
        return Err(TrainError::BadConfig("epochs must be at least 1".into()));
    }
    if config.batch_size == 0 {
        return Err(TrainError::BadConfig(
            "batch size must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&config.val_fraction) {
        return Err(TrainError::BadConfig(format!(
            "validation fraction must be in [0, 1), got {}",
            config.val_fraction
        )));
    }
    if !(config.lr > 0.0 && config.lr.is_finite()) {
        return Err(TrainError::BadConfig(format!(
            "learning rate must be positive, got {}",
            config.lr
        )));
    }
    config.mix.validate().map_err(TrainError::BadConfig)?;
    if config.steps_per_epoch == Some(0) {
        return Err(TrainError::BadConfig(
            "steps per epoch must be at least 1".into(),
        ));
    }
    if config.labels_per_class == Some(0) {
        return Err(TrainError::BadConfig(
            "labels per class must be at least 1".into(),
        ));
    }
    if let Some(fixmatch) = &config.fixmatch {
        fixmatch.validate()?;
        if config.labels_per_class.is_none() {
            return Err(TrainError::BadConfig(
                "FixMatch needs a labelled subset (--labels-per-class); the rest of the training split is its unlabelled data".into(),
            ));
        }
        if config.mix.is_active() {
            return Err(TrainError::BadConfig(
                "FixMatch cannot be combined with mixup or CutMix".into(),
            ));
        }
        if fixmatch.pseudo_labeller == PseudoLabeller::Ema && config.ema_decay.is_none() {
            return Err(TrainError::BadConfig(
                "--fixmatch-pseudo-labels ema needs a weight average: add --ema-decay (e.g. 0.999)"
                    .into(),
            ));
        }
    }
    if let Some(decay) = config.ema_decay {
        validate_decay(decay)?;
    }
    if dataset.is_empty() {
        return Err(TrainError::BadConfig(format!(
            "dataset '{}' has no images",
            dataset.name
        )));
    }
    Ok(())
}

/// The facts stored with every model keen writes, so that eval and predict need nothing else.
pub fn model_metadata(
    config: &TrainConfig,
    dataset: &ImageDataset,
    normalization: &Normalization,
) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    let norm = serde_json::json!({ "mean": normalization.mean, "std": normalization.std });
    metadata.insert(meta::NORMALIZATION.to_string(), norm.to_string());
    metadata.insert(
        meta::CLASS_NAMES.to_string(),
        serde_json::to_string(&dataset.class_names).unwrap_or_default(),
    );
    metadata.insert(meta::DATASET.to_string(), config.dataset.clone());
    metadata.insert(
        meta::TRAIN_CONFIG.to_string(),
        serde_json::to_string(config).unwrap_or_default(),
    );
    metadata
}

/// Trains `config.model` on `dataset` (the full training split; the validation split is held
/// out from it by seed), writing the run folder `options.out_dir`.
pub fn train(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
) -> Result<TrainSummary, TrainError> {
    train_with(config, dataset, options, None, &mut PlainTraining)
}

/// [`train`] with a starting model and hooks. `initial` (on `options.device.autodiff()`)
/// replaces the freshly initialised `config.model`, e.g. a graph to fine-tune; `hooks` change the
/// loss and act after each step. Resuming needs the same `initial` and hooks settings.
pub fn train_with(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    initial: Option<KeenModel>,
    hooks: &mut dyn TrainHooks,
) -> Result<TrainSummary, TrainError> {
    validate_config(config, dataset)?;
    let run = RunDir::new(&options.out_dir);
    let device = options.device.clone();
    let autodiff = device.clone().autodiff();

    // The run's identity: refuse to resume a folder that was trained with something else.
    let config_path = run.config_path();
    let state = if options.resume {
        run.read_state()?
    } else {
        None
    };
    if options.resume && config_path.exists() {
        let stored: TrainConfig = RunDir::read_json(&config_path)?;
        if &stored != config {
            return Err(TrainError::BadRunFile {
                path: config_path,
                reason: "this run was started with a different configuration; resume it with the same options or choose another --out".into(),
            });
        }
    }
    run.write_json(&config_path, config)?;
    let hooks_path = options.out_dir.join("hooks.json");
    let hooks_settings = hooks.describe();
    if options.resume && hooks_path.exists() {
        let stored: serde_json::Value = RunDir::read_json(&hooks_path)?;
        if stored != hooks_settings {
            return Err(TrainError::BadRunFile {
                path: hooks_path,
                reason:
                    "this run was started with other distillation, quantization or pruning settings"
                        .into(),
            });
        }
    }
    run.write_json(&hooks_path, &hooks_settings)?;

    let (mut train_idx, val_idx) = train_val_split(dataset.len(), config.val_fraction, config.seed);
    if let Some(limit) = config.max_train_images {
        train_idx.truncate(limit);
    }
    let mut unlabelled_idx = Vec::new();
    if let Some(per_class) = config.labels_per_class {
        let split = labelled_subset(dataset, &train_idx, per_class, config.seed)?;
        train_idx = split.labelled;
        unlabelled_idx = split.unlabelled;
    }
    let normalization = Normalization::fit(dataset);
    // One copy shared with the loader threads for the whole run, rather than one per epoch.
    let shared = std::sync::Arc::new(dataset.clone());
    let spec = ModelSpec::new(&config.model, dataset.image_shape(), dataset.num_classes());
    let metadata = model_metadata(config, dataset, &normalization);

    let model: KeenModel = match initial {
        // Models loaded from files or made by compression may come in validation mode or on the
        // plain device: put them where training needs them, with gradients on.
        Some(model) => model.to_device(&autodiff).train(),
        None => seeded_model(&spec, config.seed, &autodiff)?,
    };
    // Stochastic depth is a training setting, not part of the architecture's file.
    let mut model = model
        .with_drop_path(config.drop_path)
        .map_err(|e| TrainError::BadConfig(e.to_string()))?;
    let loader = LoaderConfig {
        batch_size: config.batch_size,
        shuffle: true,
        drop_last: true,
        seed: config.seed,
        augment: config.augment.clone(),
        normalization: normalization.clone(),
    };
    // FixMatch wraps whatever hooks the run has: their loss applies to the labelled images.
    let mut fixmatch;
    let hooks: &mut dyn TrainHooks = match config.fixmatch {
        Some(fixmatch_config) => {
            fixmatch = FixMatch::new(
                fixmatch_config,
                shared.clone(),
                unlabelled_idx.clone(),
                &loader,
                hooks,
            )?;
            &mut fixmatch
        }
        None => hooks,
    };
    // Mixup/CutMix wrap whatever hooks the run has, mixing each batch before their loss,
    // unless the hooks mix for themselves.
    let mut mixing;
    let hooks: &mut dyn TrainHooks = if config.mix.is_active() && !hooks.mixes_batches() {
        mixing = Mixing::new(config.mix, config.seed, hooks);
        &mut mixing
    } else {
        hooks
    };
    let mut optimizer = build_optimizer(config);
    let mut average = config
        .ema_decay
        .map(|decay| WeightAverage::new(decay, &model))
        .transpose()?;
    let (mut start_epoch, mut global_step, mut history) = (0, 0, Vec::new());
    if let Some(state) = state {
        // Burnpack records keep parameter ids, which the optimizer state is keyed by.
        model = load_checkpoint_model(model, &run.checkpoint_model(&state.checkpoint))?;
        if let Some(average) = &mut average {
            let file = run.checkpoint_average(&state.checkpoint);
            average.set_model(load_checkpoint_model(average.model().clone(), &file)?);
        }
        let optim_file = run.checkpoint_optimizer(&state.checkpoint);
        let bytes = std::fs::read(&optim_file).map_err(TrainError::io(&optim_file))?;
        optimizer = optimizer
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| TrainError::BadRunFile {
                path: optim_file.clone(),
                reason: e.to_string(),
            })?;
        start_epoch = state.completed_epochs;
        global_step = state.global_step;
        history = state.history;
    }
    if let Some(average) = &average {
        hooks.weight_average_updated(average.model());
    }

    let batches_per_pass = num_batches(train_idx.len(), &loader);
    if batches_per_pass == 0 {
        return Err(TrainError::BadConfig(format!(
            "the training split has {} images, fewer than one batch of {}",
            train_idx.len(),
            config.batch_size
        )));
    }
    let steps_per_epoch = match (config.steps_per_epoch, &config.fixmatch) {
        (Some(steps), _) => steps,
        // A FixMatch epoch is one pass over the unlabelled images (at μ·B per step), the
        // labelled ones cycling many times meanwhile.
        (None, Some(fixmatch)) => fixmatch
            .steps_per_pass(unlabelled_idx.len(), config.batch_size)
            .max(1),
        (None, None) => batches_per_pass,
    };
    let schedule = LrSchedule {
        peak_lr: config.lr,
        warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as usize,
        total_steps: steps_per_epoch * config.epochs,
        steps_per_epoch,
        decay: config.decay,
    };
    let mut devices = vec![autodiff.clone()];
    devices.extend(options.extra_devices.iter().map(|d| d.clone().autodiff()));
    let step_devices = StepDevices::new(devices, config.label_smoothing);

    let end_epoch = match options.stop_after_epochs {
        Some(n) => (start_epoch + n).min(config.epochs),
        None => config.epochs,
    };
    for epoch in start_epoch..end_epoch {
        let bar = progress_bar(options.progress, steps_per_epoch, epoch + 1, config.epochs);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let mut lr = schedule.lr_at(global_step);
        let first_batch = epoch * steps_per_epoch;
        for batch in cycled_batches(&shared, &train_idx, &loader, first_batch, steps_per_epoch) {
            let batch_len = batch.labels.len();
            lr = schedule.lr_at(global_step);
            hooks.before_step(global_step);
            let (updated, outcome) =
                train_step(model, &mut optimizer, batch, &step_devices, lr, &*hooks);
            global_step += 1;
            model = hooks.after_step(updated, global_step, schedule.total_steps);
            if let Some(average) = &mut average {
                average.update(&model, global_step - 1);
                hooks.weight_average_updated(average.model());
            }
            let (batch_loss, batch_correct) = (outcome.loss, outcome.correct);
            if !batch_loss.is_finite() {
                return Err(TrainError::BadConfig(format!(
                    "loss became {batch_loss} at epoch {} step {global_step}; lower the learning rate",
                    epoch + 1
                )));
            }
            loss_sum += batch_loss * batch_len as f64;
            correct += batch_correct;
            seen += batch_len;
            bar.inc(1);
            let secs = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / secs
            ));
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let mut extra = hooks.epoch_metrics();
        let (val_loss, val_accuracy) = if val_idx.is_empty() {
            (None, None)
        } else {
            // With a weight average, the average is the model being validated (and saved);
            // the trained weights' accuracy is logged beside it.
            let validated = average.as_ref().map_or(&model, WeightAverage::model);
            let report = evaluate(validated, &shared, &val_idx, &normalization, 256, &device);
            if average.is_some() {
                let raw = evaluate(&model, &shared, &val_idx, &normalization, 256, &device);
                extra.insert("raw_val_accuracy".into(), raw.accuracy);
            }
            (Some(report.loss), Some(report.accuracy))
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            lr,
            train_seconds,
            images_per_sec: seen as f64 / train_seconds.max(1e-9),
            extra,
        };
        eprintln!("{}", describe(&record, config.epochs));
        history.push(record);

        // Checkpoint files first, state.json last: state.json is the commit point.
        let stem = RunDir::checkpoint_stem(epoch + 1);
        save_checkpoint_model(&model, &run.checkpoint_model(&stem))?;
        if let Some(average) = &average {
            save_checkpoint_model(average.model(), &run.checkpoint_average(&stem))?;
        }
        let optim_bytes = optimizer.into_bytes().map_err(|e| TrainError::BadRunFile {
            path: run.checkpoint_optimizer(&stem),
            reason: e.to_string(),
        })?;
        let optim_path = run.checkpoint_optimizer(&stem);
        write_atomic(&optim_path, &optim_bytes).map_err(TrainError::io(&optim_path))?;
        run.commit(&RunState {
            completed_epochs: epoch + 1,
            global_step,
            checkpoint: stem,
            history: history.clone(),
        })?;
        let svg = learning_curves_svg(&config.model, &history);
        write_atomic(&run.curves_path(), svg.as_bytes())
            .map_err(TrainError::io(run.curves_path()))?;
    }

    let completed_epochs = history.len();
    let finished = completed_epochs >= config.epochs;
    let model_path = if finished {
        let path = run.model_path();
        let trained = average.as_ref().map_or(&model, WeightAverage::model);
        weights::save(&trained.valid(), &spec, &metadata, &path)?;
        Some(path)
    } else {
        None
    };
    Ok(TrainSummary {
        completed_epochs,
        finished,
        history,
        model_path,
    })
}

/// Writes `model`'s record (burnpack, keeping parameter ids) to a checkpoint file, atomically.
fn save_checkpoint_model(model: &KeenModel, path: &std::path::Path) -> Result<(), TrainError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::BadRunFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_atomic(path, &bytes).map_err(TrainError::io(path))
}

/// Loads a checkpoint file written by [`save_checkpoint_model`] into `model`.
fn load_checkpoint_model(
    model: KeenModel,
    path: &std::path::Path,
) -> Result<KeenModel, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let bad_checkpoint = |e: burn::store::RecordError| TrainError::BadRunFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(bad_checkpoint)?;
    model.try_load_record(record).map_err(bad_checkpoint)
}

/// burn's random generator is global to the process; holding this lock from seeding to the
/// last initialised weight makes initialisation depend on the seed alone, even while other
/// threads (parallel tests, a server) build models too.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds `spec`'s model with weights drawn from `seed`.
pub fn seeded_model(spec: &ModelSpec, seed: u64, device: &Device) -> Result<KeenModel, TrainError> {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let model = build_model(spec, device)?;
    // burn initialises parameters lazily, on first use; draw them all now, under the lock.
    model.visit(&mut InitialiseAll);
    Ok(model)
}

struct InitialiseAll;

impl burn::module::ModuleVisitor for InitialiseAll {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

fn describe(record: &EpochRecord, epochs: usize) -> String {
    let val = match (record.val_loss, record.val_accuracy) {
        (Some(loss), Some(acc)) => format!(" | val loss {loss:.4} acc {:.2}%", 100.0 * acc),
        _ => String::new(),
    };
    let extra: String = record
        .extra
        .iter()
        .map(|(name, value)| format!(" {name} {value:.4}"))
        .collect();
    let extra = if extra.is_empty() {
        extra
    } else {
        format!(" |{extra}")
    };
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}%{val}{extra} | lr {:.2e} | {:.1}s, {:.0} img/s",
        record.epoch,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.lr,
        record.train_seconds,
        record.images_per_sec
    )
}

fn progress_bar(enabled: bool, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
