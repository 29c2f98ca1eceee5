//! The action plan's stages as functions: each reads models from files, trains or transforms,
//! and writes a model file, so that each stands alone (`keen distill`, `keen quantize`,
//! `keen prune`) and a recipe can chain them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keen_data::dataset::ImageDataset;
use keen_train::{train_with, TrainConfig, TrainOptions, TrainSummary};

use burn::module::Module;
use keen_data::augment::AugmentConfig;
use keen_data::loader::Normalization;

use keen_models::KeenModel;

use crate::distill::{DistillConfig, Distiller, TeacherLogits, TeacherSource};
use crate::hint::{finished_student, HintConfig, HintDistiller};
use crate::prune::{
    plan_channels, plan_transformer, prune_transformer, remove_channels, ChannelCriterion,
    GradualMagnitudePruner, MagnitudePruneConfig, TransformerPrunePlan,
};
use crate::quantize::{
    calibrate, enable, prepare, sensitivity_scan, CalibrationConfig, SensitivityReport,
};
use crate::quantize_linear::{calibrate_linear, enable_linear, quantizes_in_place};
use crate::teacher::SavedModel;
use crate::CompressError;

/// Trains `config.model` (from scratch) as a student of the model saved at `teacher_path`,
/// from its logits and, with `hint`, from one of its feature maps.
pub fn distill(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    teacher_path: &Path,
    settings: &DistillConfig,
    hint: Option<&HintConfig>,
) -> Result<TrainSummary, CompressError> {
    settings.validate().map_err(CompressError::BadConfig)?;
    let source = teacher_source(config, dataset, options, teacher_path)?;
    let logits = Distiller {
        config: settings.clone(),
        teacher: source,
        teacher_name: display_name(teacher_path),
    };
    let Some(hint) = hint else {
        let mut hooks = logits;
        return Ok(train_with(config, dataset, options, None, &mut hooks)?);
    };
    let teacher = SavedModel::load(teacher_path, &options.device)?;
    if teacher.normalization != Normalization::fit(dataset) {
        return Err(CompressError::BadModel {
            path: teacher_path.to_path_buf(),
            reason: "hint distillation runs the teacher on the student's inputs, but the teacher was trained with another normalisation than this dataset's".into(),
        });
    }
    // Built on the plain device: lowering to a graph copies parameters, and the trainer makes
    // the copies trainable leaves on its autodiff device.
    let spec =
        keen_models::ModelSpec::new(&config.model, dataset.image_shape(), dataset.num_classes());
    let student = keen_train::trainer::seeded_model(&spec, config.seed, &options.device)?;
    let (mut hooks, student) = HintDistiller::new(
        hint.clone(),
        &teacher.loaded.model,
        student,
        dataset.image_shape(),
        Box::new(logits),
        &options.device,
    )?;
    let summary = train_with(config, dataset, options, Some(student), &mut hooks)?;
    if let Some(path) = &summary.model_path {
        // The saved model still carries the regressor: the student is the graph without it.
        let saved = keen_models::weights::load(path, &options.device)?;
        let student = finished_student(saved.model);
        keen_models::weights::save(&student, &saved.spec, &saved.metadata, path)?;
    }
    Ok(summary)
}

/// The loss of a fine-tuning run: distillation from `teacher` when one is given, else plain
/// cross-entropy.
fn loss_hooks(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    teacher: Option<(&Path, &DistillConfig)>,
) -> Result<Box<dyn keen_train::TrainHooks>, CompressError> {
    Ok(match teacher {
        Some((teacher_path, settings)) => {
            settings.validate().map_err(CompressError::BadConfig)?;
            Box::new(Distiller {
                config: settings.clone(),
                teacher: teacher_source(config, dataset, options, teacher_path)?,
                teacher_name: display_name(teacher_path),
            })
        }
        None => Box::new(keen_train::PlainTraining),
    })
}

/// The teacher's logits for training: cached once when the student trains without
/// augmentation, else computed live on each augmented batch.
pub(crate) fn teacher_source(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    teacher_path: &Path,
) -> Result<TeacherSource, CompressError> {
    let teacher = SavedModel::load(teacher_path, &options.device)?;
    teacher.check_fits(dataset, teacher_path)?;
    let augmented = config.augment != AugmentConfig::none();
    let source = if augmented {
        // The teacher must see the student's augmented images, normalised the same way.
        let student_normalization = Normalization::fit(dataset);
        if student_normalization != teacher.normalization {
            return Err(CompressError::BadModel {
                path: teacher_path.to_path_buf(),
                reason: "the teacher was trained with another normalisation than this dataset's; distil without augmentation (its logits are then computed on the teacher's own normalisation)".into(),
            });
        }
        eprintln!("augmentation is on: the teacher runs on every augmented batch");
        TeacherSource::Live(Box::new(teacher.loaded.model.valid()))
    } else {
        TeacherSource::Cached(cached_teacher_logits(
            &teacher,
            teacher_path,
            dataset,
            &options.out_dir,
            &options.device,
        )?)
    };
    Ok(source)
}

/// The teacher's logits for every image of `dataset`, computed once and kept in `dir` (keyed by
/// the teacher file's size and modification time and the dataset), so that a resumed run or a
/// later stage does not pay for them again.
pub fn cached_teacher_logits(
    teacher: &SavedModel,
    teacher_path: &Path,
    dataset: &ImageDataset,
    dir: &Path,
    device: &burn::prelude::Device,
) -> Result<TeacherLogits, CompressError> {
    let meta = std::fs::metadata(teacher_path).map_err(|source| CompressError::Io {
        path: teacher_path.to_path_buf(),
        source,
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(
        "{}|{}|{}|{}|{}",
        display_name(teacher_path),
        meta.len(),
        modified,
        dataset.name,
        dataset.len()
    );
    let path = dir.join("teacher-logits.bin");
    // A recipe's stages are sibling folders: a cache any of them wrote for this teacher serves.
    let mut candidates = vec![path.clone()];
    if let Some(Ok(siblings)) = dir.parent().map(std::fs::read_dir) {
        let mut others: Vec<PathBuf> = siblings
            .filter_map(|e| e.ok().map(|e| e.path().join("teacher-logits.bin")))
            .filter(|p| p != &path && p.exists())
            .collect();
        others.sort();
        candidates.extend(others);
    }
    for candidate in &candidates {
        if let Some(logits) = TeacherLogits::read(candidate, &key, dataset.len()) {
            eprintln!(
                "using the teacher's cached logits in {}",
                candidate.display()
            );
            return Ok(logits);
        }
    }
    let shared = Arc::new(dataset.clone());
    let all: Vec<usize> = (0..dataset.len()).collect();
    eprintln!(
        "computing the teacher's logits for {} images (once; cached in {})",
        all.len(),
        path.display()
    );
    let logits = TeacherLogits::compute(
        &teacher.loaded.model,
        &shared,
        &all,
        &teacher.normalization,
        device,
    );
    logits
        .write(&path, &key)
        .map_err(|source| CompressError::Io { path, source })?;
    Ok(logits)
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// What post-training quantization did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PtqReport {
    /// Calibration settings.
    pub calibration: CalibrationConfig,
    /// Batch norms folded into convolutions.
    pub folded_batch_norms: usize,
    /// The sensitivity scan, when one ran.
    pub sensitivity: Option<SensitivityReport>,
    /// The quantized model's file.
    pub model_path: PathBuf,
}

/// Post-training quantization of the model saved at `model_path`: lower, fold, calibrate on
/// training images (a ViT or DeiT: calibrate its layers in place, no scan), optionally scan layer sensitivity on the validation split and keep the
/// costliest layers in float (`max_drop`, in accuracy points as a fraction, e.g. 0.005), and save
/// the fake-quantized graph to `out_path`.
pub fn post_training_quantize(
    model_path: &Path,
    dataset: &ImageDataset,
    calibration: &CalibrationConfig,
    scan: bool,
    max_drop: Option<f64>,
    out_path: &Path,
    device: &burn::prelude::Device,
) -> Result<PtqReport, CompressError> {
    let saved = SavedModel::load(model_path, device)?;
    saved.check_fits(dataset, model_path)?;
    if quantizes_in_place(&saved.loaded.model) {
        if scan || max_drop.is_some() {
            return Err(CompressError::BadConfig(
                "the sensitivity scan (--scan, --max-drop) needs a graph form; vit and deit \
                 models quantize every layer with weights"
                    .into(),
            ));
        }
        let shared = Arc::new(dataset.clone());
        let (train_idx, _) = split_for(&saved, dataset);
        let ranges = calibrate_linear(
            &saved.loaded.model,
            &shared,
            &train_idx,
            &saved.normalization,
            calibration,
            device,
        )?;
        let quantized = enable_linear(saved.loaded.model.valid(), ranges, false)?;
        let metadata = ptq_metadata(&saved, model_path, calibration);
        keen_models::weights::save(&quantized, &saved.loaded.spec, &metadata, out_path)?;
        return Ok(PtqReport {
            calibration: calibration.clone(),
            folded_batch_norms: 0,
            sensitivity: None,
            model_path: out_path.to_path_buf(),
        });
    }
    let input = saved.loaded.spec.input_shape();
    let lowered = saved.loaded.model.valid().to_graph(input)?;
    let norms = lowered.norms.len();
    let graph = crate::fold::fold_batch_norms(lowered).0;
    let folded = norms - graph.norms.len();
    let shared = Arc::new(dataset.clone());
    let (train_idx, val_idx) = split_for(&saved, dataset);
    let ranges = calibrate(
        &graph,
        &shared,
        &train_idx,
        &saved.normalization,
        calibration,
        device,
    );
    let mut graph = enable(graph, ranges, false);
    let mut sensitivity = None;
    if scan || max_drop.is_some() {
        let (scanned, report) = sensitivity_scan(
            &graph,
            &shared,
            &val_idx,
            &saved.normalization,
            max_drop,
            device,
        );
        graph = scanned;
        sensitivity = Some(report);
    }
    let metadata = ptq_metadata(&saved, model_path, calibration);
    keen_models::weights::save(
        &KeenModel::Graph(graph),
        &saved.loaded.spec,
        &metadata,
        out_path,
    )?;
    Ok(PtqReport {
        calibration: calibration.clone(),
        folded_batch_norms: folded,
        sensitivity,
        model_path: out_path.to_path_buf(),
    })
}

/// The float model's metadata plus what post-training quantization did.
fn ptq_metadata(
    saved: &SavedModel,
    model_path: &Path,
    calibration: &CalibrationConfig,
) -> std::collections::BTreeMap<String, String> {
    let mut metadata = saved.loaded.metadata.clone();
    metadata.insert(
        "keen.compression".into(),
        serde_json::json!({ "stage": "ptq", "source": display_name(model_path), "calibration": calibration })
            .to_string(),
    );
    metadata
}

/// The training and validation indices the model's own run used (from its stored config), or
/// the default split when it has none.
fn split_for(saved: &SavedModel, dataset: &ImageDataset) -> (Vec<usize>, Vec<usize>) {
    let config: Option<TrainConfig> = saved
        .loaded
        .metadata
        .get(keen_train::trainer::meta::TRAIN_CONFIG)
        .and_then(|text| serde_json::from_str(text).ok());
    let (fraction, seed) = config
        .map(|c| (c.val_fraction, c.seed))
        .unwrap_or((0.1, 42));
    let (train, val) = keen_data::split::train_val_split(dataset.len(), fraction, seed);
    if val.is_empty() {
        // No validation split: scan on the last tenth of the training images.
        let (train2, val2) = keen_data::split::train_val_split(dataset.len(), 0.1, seed);
        return (train2, val2);
    }
    (train, val)
}

/// Quantization-aware training: the model saved at `student_path` is lowered, folded,
/// calibrated, and trained through fake quantization (observers on) with `config`'s schedule,
/// distilling from `teacher` when one is given. A ViT or DeiT is not lowered: its layers with
/// weights are fake-quantized in place.
pub fn quantization_aware_training(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    student_path: &Path,
    teacher: Option<(&Path, &DistillConfig)>,
    calibration: &CalibrationConfig,
) -> Result<TrainSummary, CompressError> {
    let student = SavedModel::load(student_path, &options.device)?;
    student.check_fits(dataset, student_path)?;
    let shared = Arc::new(dataset.clone());
    let (train_idx, _) =
        keen_data::split::train_val_split(dataset.len(), config.val_fraction, config.seed);
    let quantized = if quantizes_in_place(&student.loaded.model) {
        let ranges = calibrate_linear(
            &student.loaded.model,
            &shared,
            &train_idx,
            &student.normalization,
            calibration,
            &options.device,
        )?;
        enable_linear(student.loaded.model, ranges, true)?
    } else {
        let graph = prepare(&student.loaded.model, student.loaded.spec.input_shape())?;
        let ranges = calibrate(
            &graph,
            &shared,
            &train_idx,
            &student.normalization,
            calibration,
            &options.device,
        );
        KeenModel::Graph(enable(graph, ranges, true))
    };
    let initial = quantized.to_device(&options.device.clone().autodiff());
    let inner = loss_hooks(config, dataset, options, teacher)?;
    // A pruned student stays pruned: its zeros become fixed masks for the whole run.
    let sparsity = crate::prune::magnitude::weight_sparsity(&initial);
    if sparsity > 0.01 {
        let hold = MagnitudePruneConfig {
            final_sparsity: sparsity,
            scope: crate::prune::PruneScope::Global,
            end_fraction: 0.0,
            updates: 1,
            pattern: crate::prune::SparsityPattern::Unstructured,
        };
        let mut hooks = GradualMagnitudePruner::new(hold, inner);
        return Ok(train_with(
            config,
            dataset,
            options,
            Some(initial),
            &mut hooks,
        )?);
    }
    let mut hooks = inner;
    Ok(train_with(
        config,
        dataset,
        options,
        Some(initial),
        &mut *hooks,
    )?)
}

/// Gradual magnitude pruning of the model saved at `model_path` while fine-tuning it with
/// `config`'s schedule, distilling from `teacher` when one is given.
pub fn prune_magnitude(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    model_path: &Path,
    settings: &MagnitudePruneConfig,
    teacher: Option<(&Path, &DistillConfig)>,
) -> Result<TrainSummary, CompressError> {
    if !(0.0..1.0).contains(&settings.final_sparsity) {
        return Err(CompressError::BadConfig(format!(
            "sparsity must be in [0, 1), got {}",
            settings.final_sparsity
        )));
    }
    let saved = SavedModel::load(model_path, &options.device)?;
    saved.check_fits(dataset, model_path)?;
    let inner = loss_hooks(config, dataset, options, teacher)?;
    let mut hooks = GradualMagnitudePruner::new(settings.clone(), inner);
    Ok(train_with(
        config,
        dataset,
        options,
        Some(saved.loaded.model),
        &mut hooks,
    )?)
}

/// What structured pruning removed, before fine-tuning.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChannelPruneReport {
    /// Fraction of each prunable group's channels removed.
    pub ratio: f32,
    /// Size and speed before and after.
    #[serde(flatten)]
    pub cost: PruneCost,
}

/// Size and speed of a model before and after a structured pruning (before fine-tuning).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PruneCost {
    /// Trainable parameters before and after.
    pub params: [usize; 2],
    /// MACs per image before and after.
    pub macs: [u64; 2],
    /// Median milliseconds of an inference batch of 256 images before and after.
    pub batch256_latency_ms: [f64; 2],
}

impl PruneCost {
    /// Measures `before` and `after` on `input`-shaped images.
    pub fn measure(
        before: &KeenModel,
        after: &KeenModel,
        input: [usize; 3],
        device: &burn::prelude::Device,
    ) -> Self {
        use keen_models::ImageClassifier;
        Self {
            params: [
                keen_models::trainable_params(before),
                keen_models::trainable_params(after),
            ],
            macs: [before.macs(input), after.macs(input)],
            batch256_latency_ms: [
                batch_latency_ms(before, input, device),
                batch_latency_ms(after, input, device),
            ],
        }
    }
}

impl std::fmt::Display for PruneCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "parameters {} -> {}, MACs {} -> {}, batch-256 latency {:.1} -> {:.1} ms",
            self.params[0],
            self.params[1],
            self.macs[0],
            self.macs[1],
            self.batch256_latency_ms[0],
            self.batch256_latency_ms[1]
        )
    }
}

/// Fine-tunes a pruned model with `config`'s schedule, distilling from `teacher` when given.
fn finetune_pruned(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    pruned: KeenModel,
    teacher: Option<(&Path, &DistillConfig)>,
) -> Result<TrainSummary, CompressError> {
    let initial = pruned.to_device(&options.device.clone().autodiff());
    let mut hooks = loss_hooks(config, dataset, options, teacher)?;
    Ok(train_with(
        config,
        dataset,
        options,
        Some(initial),
        &mut *hooks,
    )?)
}

/// Median wall-clock milliseconds of `model`'s inference on a batch of 256 images.
pub fn batch_latency_ms(
    model: &KeenModel,
    input: [usize; 3],
    device: &burn::prelude::Device,
) -> f64 {
    use keen_models::ImageClassifier;
    let model = model.valid();
    let images = burn::prelude::Tensor::<4>::zeros([256, input[0], input[1], input[2]], device);
    let _ = model.forward(images.clone()).into_data();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            let _ = model.forward(images.clone()).into_data();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Structured pruning of the model saved at `model_path`: removes `ratio` of the channels of
/// every prunable dependency group (ranked by `criterion`), then fine-tunes with `config`'s
/// schedule, distilling from `teacher` when one is given.
pub fn prune_channels_and_finetune(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    model_path: &Path,
    ratio: f32,
    criterion: ChannelCriterion,
    teacher: Option<(&Path, &DistillConfig)>,
) -> Result<(TrainSummary, ChannelPruneReport), CompressError> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(CompressError::BadConfig(format!(
            "channel ratio must be in [0, 1), got {ratio}"
        )));
    }
    let saved = SavedModel::load(model_path, &options.device)?;
    saved.check_fits(dataset, model_path)?;
    let input = saved.loaded.spec.input_shape();
    let graph = saved.loaded.model.valid().to_graph(input)?;
    let plan = plan_channels(&graph, ratio, criterion);
    let pruned = KeenModel::Graph(remove_channels(graph, &plan));
    let report = ChannelPruneReport {
        ratio,
        cost: PruneCost::measure(&saved.loaded.model, &pruned, input, &options.device),
    };
    eprintln!("removed {:.0}% of channels: {}", 100.0 * ratio, report.cost);
    let summary = finetune_pruned(config, dataset, options, pruned, teacher)?;
    Ok((summary, report))
}

/// What head and MLP pruning removed, before fine-tuning.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TransformerPruneReport {
    /// Fraction of each block's heads removed.
    pub heads_ratio: f32,
    /// Fraction of each block's MLP hidden units removed.
    pub mlp_ratio: f32,
    /// The heads and units kept in every block.
    pub plan: TransformerPrunePlan,
    /// Size and speed before and after.
    #[serde(flatten)]
    pub cost: PruneCost,
}

/// Structured pruning of the ViT or DeiT saved at `model_path`: removes `heads_ratio` of every
/// block's attention heads and `mlp_ratio` of its MLP hidden units (lowest L2 norm first), then
/// fine-tunes with `config`'s schedule, distilling from `teacher` when one is given.
pub fn prune_heads_and_finetune(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    model_path: &Path,
    heads_ratio: f32,
    mlp_ratio: f32,
    teacher: Option<(&Path, &DistillConfig)>,
) -> Result<(TrainSummary, TransformerPruneReport), CompressError> {
    let saved = SavedModel::load(model_path, &options.device)?;
    saved.check_fits(dataset, model_path)?;
    let input = saved.loaded.spec.input_shape();
    let original = saved.loaded.model.valid();
    let plan = plan_transformer(&original, heads_ratio, mlp_ratio)?;
    let pruned = prune_transformer(original.clone(), &plan)?;
    let report = TransformerPruneReport {
        heads_ratio,
        mlp_ratio,
        cost: PruneCost::measure(&original, &pruned, input, &options.device),
        plan,
    };
    eprintln!(
        "removed {:.0}% of heads and {:.0}% of MLP units: {}",
        100.0 * heads_ratio,
        100.0 * mlp_ratio,
        report.cost
    );
    let summary = finetune_pruned(config, dataset, options, pruned, teacher)?;
    Ok((summary, report))
}
