//! Recipes: the action plan as one TOML file, run stage by stage with a stage table.
//!
//! A recipe names a teacher (trained here, or an existing file), then the stages that compress a
//! student: distillation, pruning (magnitude or channels), post-training quantization and
//! quantization-aware training with the teacher. Each stage writes its own run folder under the
//! recipe's output folder and, last, a `stage.json` with its figures: a stage with a `stage.json`
//! is done, and a rerun resumes at the first stage without one (inside a stage, training resumes
//! from its last finished epoch). The stage table is written as JSON and Markdown after every
//! stage.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use keen_data::augment::AugmentConfig;
use keen_data::dataset::ImageDataset;
use keen_models::{nonzero_trainable_params, trainable_params, ImageClassifier, KeenModel};
use keen_train::{evaluate_all, train, TrainConfig, TrainOptions};
use serde::{Deserialize, Serialize};

use crate::distill::DistillConfig;
use crate::prune::{ChannelCriterion, MagnitudePruneConfig, PruneScope, SparsityPattern};
use crate::quantize::{CalibrationConfig, RangeMethod};
use crate::stages;
use crate::teacher::SavedModel;
use crate::CompressError;

/// The teacher: trained by the recipe, or given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherStage {
    /// Registry name of the teacher.
    pub model: String,
    /// An existing teacher file: no training, and the recipe's time excludes it.
    pub path: Option<PathBuf>,
    /// Epochs when training it (else the model's preset).
    pub epochs: Option<usize>,
    /// Train it with the preset's augmentation (crop, flips); false trains without.
    #[serde(default = "default_true")]
    pub augment: bool,
}

fn default_true() -> bool {
    true
}

/// Distillation of the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillStage {
    /// Registry name of the student.
    pub student: String,
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate (SGD with Nesterov momentum, cosine).
    pub lr: f64,
    /// Softening temperature.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Weight of the soft targets.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Feature (hint) distillation as well (`[distill.hint]`, its keys optional).
    #[serde(default)]
    pub hint: Option<crate::hint::HintConfig>,
}

fn default_temperature() -> f32 {
    4.0
}
fn default_alpha() -> f32 {
    0.9
}

/// Pruning of the distilled student, fine-tuned with the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStage {
    /// Unstructured: final fraction of zero weights.
    pub sparsity: Option<f32>,
    /// Structured: fraction of channels removed from every prunable group.
    pub channels: Option<f32>,
    /// Semi-structured: an N:M pattern such as "2:4" (half the weights of every eligible layer).
    pub pattern: Option<String>,
    /// Fine-tuning epochs.
    pub epochs: usize,
    /// Peak fine-tuning learning rate.
    pub lr: f64,
}

/// Post-training quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeStage {
    /// Range method.
    #[serde(default = "default_method")]
    pub method: RangeMethod,
    /// Calibration batches of 128 images.
    #[serde(default = "default_batches")]
    pub batches: usize,
    /// Keep the costliest layers in float until the drop is at most this many points.
    pub max_drop: Option<f64>,
}

fn default_method() -> RangeMethod {
    RangeMethod::MinMax
}
fn default_batches() -> usize {
    8
}

/// Quantization-aware training with the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QatStage {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
}

/// A whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Dataset spec.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// Seed of every stage.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The teacher.
    pub teacher: TeacherStage,
    /// Distillation into the student.
    pub distill: DistillStage,
    /// Pruning (optional).
    pub prune: Option<PruneStage>,
    /// Post-training quantization (optional; with `qat` it is the comparison).
    pub quantize: Option<QuantizeStage>,
    /// Quantization-aware training (optional).
    pub qat: Option<QatStage>,
}

fn default_dataset() -> String {
    "fashion-mnist".into()
}
fn default_seed() -> u64 {
    42
}

impl Recipe {
    /// Parses a recipe, naming the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, CompressError> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| CompressError::BadModel {
            path: path.to_path_buf(),
            reason: format!("not a valid recipe: {e}"),
        })?;
        if let Some(prune) = &recipe.prune {
            let chosen = [
                prune.sparsity.is_some(),
                prune.channels.is_some(),
                prune.pattern.is_some(),
            ];
            if chosen.iter().filter(|c| **c).count() != 1 {
                return Err(CompressError::BadModel {
                    path: path.to_path_buf(),
                    reason: "[prune] needs exactly one of `sparsity` (unstructured), `channels` (structured) or `pattern` (N:M, e.g. \"2:4\")".into(),
                });
            }
            if let Some(pattern) = &prune.pattern {
                SparsityPattern::parse(pattern).map_err(|reason| CompressError::BadModel {
                    path: path.to_path_buf(),
                    reason: format!("[prune] pattern: {reason}"),
                })?;
            }
        }
        Ok(recipe)
    }
}

/// One row of the stage table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRow {
    /// Stage name.
    pub stage: String,
    /// Its model file.
    pub model_path: PathBuf,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Trainable parameters.
    pub params: usize,
    /// Non-zero trainable parameters.
    pub nonzero_params: usize,
    /// MACs per image.
    pub macs: u64,
    /// Size of the model file (fp32 safetensors).
    pub file_bytes: u64,
    /// Size of the weights stored as INT8 (weights 1 byte, biases and per-channel scales 4
    /// bytes), for quantized stages.
    pub int8_bytes: Option<u64>,
    /// Median milliseconds of a 256-image inference batch in burn (fp32, or simulated INT8).
    pub batch256_latency_ms: f64,
    /// Seconds the stage took.
    pub seconds: f64,
    /// The recipe settings the stage ran with: a rerun with other settings redoes the stage
    /// and every stage after it.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// INT8 storage of a quantized graph: 1 byte per conv/linear weight, 4 per bias and per-channel
/// scale.
pub fn int8_bytes(model: &KeenModel) -> Option<u64> {
    let KeenModel::Graph(graph) = model else {
        return None;
    };
    if !graph.quant_state().config.enabled {
        return None;
    }
    let mut bytes = 0u64;
    for conv in &graph.convs {
        let dims = conv.weight.dims();
        bytes += dims.iter().product::<usize>() as u64 + 4 * dims[0] as u64;
        bytes += conv.bias.as_ref().map_or(0, |b| 4 * b.dims()[0] as u64);
    }
    for linear in &graph.linears {
        let [i, o] = linear.weight.dims();
        bytes += (i * o) as u64 + 4 * o as u64;
        bytes += linear.bias.as_ref().map_or(0, |b| 4 * b.dims()[0] as u64);
    }
    Some(bytes)
}

fn row(
    stage: &str,
    path: &Path,
    test: &ImageDataset,
    seconds: f64,
    device: &Device,
) -> Result<StageRow, CompressError> {
    let saved = SavedModel::load(path, device)?;
    let model = &saved.loaded.model;
    let input = saved.loaded.spec.input_shape();
    let report = evaluate_all(model, test, &saved.normalization, 256, device);
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(StageRow {
        stage: stage.to_string(),
        model_path: path.to_path_buf(),
        test_accuracy: report.accuracy,
        params: trainable_params(model),
        nonzero_params: nonzero_trainable_params(model),
        macs: model.macs(input),
        file_bytes,
        int8_bytes: int8_bytes(model),
        batch256_latency_ms: stages::batch_latency_ms(model, input, device),
        seconds,
        settings: serde_json::Value::Null,
    })
}

/// The stage table as Markdown.
pub fn markdown_table(rows: &[StageRow]) -> String {
    let mut out = String::from(
        "| stage | test acc | params | non-zero | MACs | fp32 file | INT8 weights | batch-256 ms | stage s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.2}% | {} | {} | {} | {} | {} | {:.1} | {:.0} |\n",
            r.stage,
            100.0 * r.test_accuracy,
            r.params,
            r.nonzero_params,
            r.macs,
            r.file_bytes,
            r.int8_bytes.map_or("—".to_string(), |b| b.to_string()),
            r.batch256_latency_ms,
            r.seconds
        ));
    }
    out
}

/// How to run a recipe.
pub struct RecipeOptions {
    /// Output folder.
    pub out_dir: PathBuf,
    /// Compute device.
    pub device: Device,
    /// Progress bars.
    pub progress: bool,
}

fn student_config(
    recipe: &Recipe,
    model: &str,
    epochs: usize,
    lr: f64,
    warmup: f64,
) -> TrainConfig {
    TrainConfig {
        dataset: recipe.dataset.clone(),
        epochs,
        lr,
        seed: recipe.seed,
        warmup_epochs: warmup,
        // Without augmentation the teacher's logits are computed once and cached.
        augment: AugmentConfig::none(),
        ..TrainConfig::preset(model)
    }
}

/// Runs `recipe` on `train_set`, evaluating every stage on `test_set`; returns the stage table.
pub fn run_recipe(
    recipe: &Recipe,
    train_set: &ImageDataset,
    test_set: &ImageDataset,
    options: &RecipeOptions,
) -> Result<Vec<StageRow>, CompressError> {
    let device = &options.device;
    let mut rows: Vec<StageRow> = Vec::new();
    let write_table = |rows: &[StageRow]| -> Result<(), CompressError> {
        let io = |path: PathBuf| move |source| CompressError::Io { path, source };
        let json = serde_json::to_vec_pretty(rows).unwrap_or_default();
        let json_path = options.out_dir.join("stages.json");
        keen_models::weights::write_atomic(&json_path, &json).map_err(io(json_path.clone()))?;
        let md_path = options.out_dir.join("stages.md");
        keen_models::weights::write_atomic(&md_path, markdown_table(rows).as_bytes())
            .map_err(io(md_path.clone()))
    };
    // Once a stage runs, every later stage must run too: its input changed.
    let mut redo_rest = false;
    // Runs one stage unless its stage.json exists with the same settings; returns its model file.
    let mut stage = |name: &str,
                     settings: serde_json::Value,
                     rows: &mut Vec<StageRow>,
                     body: &mut dyn FnMut(&Path) -> Result<PathBuf, CompressError>|
     -> Result<PathBuf, CompressError> {
        let dir = options.out_dir.join(name);
        let done = dir.join("stage.json");
        let settings = serde_json::json!({
            "dataset": recipe.dataset,
            "seed": recipe.seed,
            "stage": settings,
        });
        if let Ok(text) = std::fs::read_to_string(&done) {
            if let Ok(row) = serde_json::from_str::<StageRow>(&text) {
                // A stage.json without settings was written before keen recorded them: trusted.
                if !redo_rest && (row.settings == settings || row.settings.is_null()) {
                    eprintln!("stage {name}: done earlier ({})", done.display());
                    let path = row.model_path.clone();
                    rows.push(row);
                    write_table(rows)?;
                    return Ok(path);
                }
                // Keep the old results beside the new ones rather than training over them.
                let previous = options.out_dir.join(format!("{name}.previous"));
                let _ = std::fs::remove_dir_all(&previous);
                std::fs::rename(&dir, &previous).map_err(|source| CompressError::Io {
                    path: dir.clone(),
                    source,
                })?;
                eprintln!(
                    "stage {name}: {}; running it again (the old results are in {})",
                    if redo_rest {
                        "an earlier stage ran again"
                    } else {
                        "the recipe's settings changed"
                    },
                    previous.display()
                );
            }
        }
        redo_rest = true;
        eprintln!("stage {name}: running in {}", dir.display());
        let start = std::time::Instant::now();
        let path = body(&dir)?;
        let mut row = row(name, &path, test_set, start.elapsed().as_secs_f64(), device)?;
        row.settings = settings;
        eprintln!(
            "stage {name}: test accuracy {:.2}%, {} parameters ({} non-zero), {:.1}s",
            100.0 * row.test_accuracy,
            row.params,
            row.nonzero_params,
            row.seconds
        );
        let json = serde_json::to_vec_pretty(&row).unwrap_or_default();
        keen_models::weights::write_atomic(&done, &json).map_err(|source| CompressError::Io {
            path: done.clone(),
            source,
        })?;
        rows.push(row);
        write_table(rows)?;
        Ok(path)
    };
    fn json<T: Serialize>(stage: &T) -> serde_json::Value {
        serde_json::to_value(stage).unwrap_or_default()
    }
    let train_options = |dir: &Path| TrainOptions {
        out_dir: dir.to_path_buf(),
        resume: dir.join("state.json").exists(),
        device: device.clone(),
        extra_devices: Vec::new(),
        progress: options.progress,
        stop_after_epochs: None,
    };
    let finished = |summary: keen_train::TrainSummary, dir: &Path| {
        summary.model_path.ok_or_else(|| {
            CompressError::BadConfig(format!("the run in {} did not finish", dir.display()))
        })
    };

    let teacher = stage(
        "teacher",
        serde_json::to_value(&recipe.teacher).unwrap_or_default(),
        &mut rows,
        &mut |dir| match &recipe.teacher.path {
            Some(path) => Ok(path.clone()),
            None => {
                let mut config = TrainConfig::preset(&recipe.teacher.model);
                config.dataset = recipe.dataset.clone();
                config.seed = recipe.seed;
                if let Some(epochs) = recipe.teacher.epochs {
                    config.epochs = epochs;
                }
                if !recipe.teacher.augment {
                    config.augment = AugmentConfig::none();
                }
                finished(train(&config, train_set, &train_options(dir))?, dir)
            }
        },
    )?;
    let d = &recipe.distill;
    let distill_settings = DistillConfig {
        temperature: d.temperature,
        alpha: d.alpha,
    };
    let mut student = stage("distill", json(d), &mut rows, &mut |dir| {
        let config = student_config(recipe, &d.student, d.epochs, d.lr, 0.3);
        let summary = stages::distill(
            &config,
            train_set,
            &train_options(dir),
            &teacher,
            &distill_settings,
            d.hint.as_ref(),
        )?;
        finished(summary, dir)
    })?;
    if let Some(p) = &recipe.prune {
        student = stage("prune", json(p), &mut rows, &mut |dir| {
            let config = student_config(recipe, &d.student, p.epochs, p.lr, 0.0);
            let opts = train_options(dir);
            let pattern = match &p.pattern {
                Some(text) => SparsityPattern::parse(text).map_err(CompressError::BadConfig)?,
                None => SparsityPattern::Unstructured,
            };
            let summary = match (p.sparsity, p.channels) {
                (_, Some(ratio)) => {
                    stages::prune_channels_and_finetune(
                        &config,
                        train_set,
                        &opts,
                        &student,
                        ratio,
                        ChannelCriterion::BnScale,
                        Some((&teacher, &distill_settings)),
                    )?
                    .0
                }
                (sparsity, None) => stages::prune_magnitude(
                    &config,
                    train_set,
                    &opts,
                    &student,
                    &MagnitudePruneConfig {
                        final_sparsity: sparsity.unwrap_or(0.5),
                        scope: PruneScope::Global,
                        pattern,
                        ..MagnitudePruneConfig::default()
                    },
                    Some((&teacher, &distill_settings)),
                )?,
            };
            finished(summary, dir)
        })?;
    }
    if let Some(q) = &recipe.quantize {
        stage("ptq", json(q), &mut rows, &mut |dir| {
            let out = dir.join("model.safetensors");
            let calibration = CalibrationConfig {
                batches: q.batches,
                method: q.method,
                ..CalibrationConfig::default()
            };
            let report = stages::post_training_quantize(
                &student,
                train_set,
                &calibration,
                q.max_drop.is_some(),
                q.max_drop.map(|p| p / 100.0),
                &out,
                device,
            )?;
            let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
            let path = dir.join("ptq.json");
            keen_models::weights::write_atomic(&path, &json)
                .map_err(|source| CompressError::Io { path, source })?;
            Ok(out)
        })?;
    }
    if let Some(q) = &recipe.qat {
        stage("qat", json(q), &mut rows, &mut |dir| {
            let config = student_config(recipe, &d.student, q.epochs, q.lr, 0.0);
            let summary = stages::quantization_aware_training(
                &config,
                train_set,
                &train_options(dir),
                &student,
                Some((&teacher, &distill_settings)),
                &CalibrationConfig::default(),
            )?;
            finished(summary, dir)
        })?;
    }
    Ok(rows)
}
