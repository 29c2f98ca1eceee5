//! DeiT distillation (Touvron et al. 2021): a two-head student (`deit-tiny`) whose class head
//! learns from the labels and whose distillation head learns from a teacher.
//!
//! `loss = (1 − α)·CE(cls, y) + α·teacher_term(dist)`, with
//! - hard (the paper's better variant, and keen's default for two-head students): the teacher's
//!   argmax as a label, `CE(dist, argmax t)`, with α = ½ as the paper defines it;
//! - soft: `T²·KL(softmax(t/T) ‖ softmax(dist/T))` at the distillation settings' T and α (the
//!   paper uses T = 3, α = 0.1).
//!
//! The label term keeps the run's label smoothing; the teacher term has none (as in DeiT's
//! `DistillationLoss`). At inference the model averages its two heads (see
//! [`keen_models::deit`]), which is also what the training accuracy is measured on.

use std::path::Path;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use keen_data::dataset::ImageDataset;
use keen_models::{ImageClassifier, KeenModel, ModelSpec};
use keen_train::{ShardInputs, TrainConfig, TrainHooks, TrainOptions, TrainSummary};
use serde::{Deserialize, Serialize};

use crate::distill::{DistillConfig, TeacherSource};
use crate::CompressError;

/// What the distillation head learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeitMode {
    /// The teacher's softened distribution (KL at temperature T).
    Soft,
    /// The teacher's top-1 class as a label.
    Hard,
}

impl std::str::FromStr for DeitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "soft" => Ok(Self::Soft),
            "hard" => Ok(Self::Hard),
            other => Err(format!(
                "unknown DeiT distillation '{other}'; expected 'soft' or 'hard'"
            )),
        }
    }
}

/// DeiT distillation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeitConfig {
    /// Soft or hard distillation.
    pub mode: DeitMode,
    /// Temperature (soft only).
    pub temperature: f32,
    /// Weight of the teacher term; `1 − alpha` weighs the labels.
    pub alpha: f32,
}

impl DeitConfig {
    /// DeiT's settings for `mode`: hard is ½/½ by the paper's definition; soft takes `T` and
    /// `α` from `soft`.
    pub fn new(mode: DeitMode, soft: &DistillConfig) -> Self {
        match mode {
            DeitMode::Hard => Self {
                mode,
                temperature: 1.0,
                alpha: 0.5,
            },
            DeitMode::Soft => Self {
                mode,
                temperature: soft.temperature,
                alpha: soft.alpha,
            },
        }
    }
}

/// Cross-entropy of `logits` against integer `labels`, without smoothing.
fn plain_cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([batch, 1]))
        .mean()
        .neg()
}

/// The DeiT loss of a batch from the two heads' logits and the teacher's.
pub fn deit_loss(
    cls: Tensor<2>,
    dist: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &DeitConfig,
    cross_entropy: &CrossEntropyLoss,
) -> Tensor<1> {
    let label_term = cross_entropy.forward(cls, labels);
    let teacher_term = match config.mode {
        DeitMode::Hard => {
            let [batch, _] = teacher.dims();
            plain_cross_entropy(dist, teacher.argmax(1).reshape([batch]))
        }
        DeitMode::Soft => {
            let t = config.temperature as f64;
            let [batch, _] = dist.dims();
            let p = softmax(teacher.clone().div_scalar(t), 1);
            let kl =
                p * (log_softmax(teacher.div_scalar(t), 1) - log_softmax(dist.div_scalar(t), 1));
            kl.sum().div_scalar(batch as f64).mul_scalar(t * t)
        }
    };
    let alpha = config.alpha as f64;
    label_term.mul_scalar(1.0 - alpha) + teacher_term.mul_scalar(alpha)
}

/// Training hooks of DeiT distillation.
pub struct DeitDistiller {
    /// The settings.
    pub config: DeitConfig,
    /// The teacher's logits.
    pub teacher: TeacherSource,
    /// Where the teacher came from (for the run's identity).
    pub teacher_name: String,
}

impl TrainHooks for DeitDistiller {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "deit": self.config, "teacher": self.teacher_name })
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        // A one-head model (refused by `distill_deit`) would distil its only head.
        let (cls, dist) = model
            .forward_heads(shard.images.clone())
            .unwrap_or_else(|| {
                let logits = model.forward(shard.images.clone());
                (logits.clone(), logits)
            });
        let device = cls.device();
        let teacher = match &self.teacher {
            TeacherSource::Cached(cache) => cache.batch(shard.indices, &device),
            TeacherSource::Live(teacher) => teacher.forward(shard.images.clone().inner()).detach(),
        };
        let loss = deit_loss(
            cls.clone(),
            dist.clone(),
            teacher,
            shard.labels,
            &self.config,
            cross_entropy,
        );
        ((cls + dist).div_scalar(2.0), loss)
    }
}

/// Trains `config.model` (a two-head model such as `deit-tiny`) from scratch with DeiT
/// distillation from the model saved at `teacher_path`.
pub fn distill_deit(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    teacher_path: &Path,
    settings: &DeitConfig,
) -> Result<TrainSummary, CompressError> {
    if !(settings.temperature > 0.0 && (0.0..=1.0).contains(&settings.alpha)) {
        return Err(CompressError::BadConfig(format!(
            "DeiT distillation needs T > 0 and alpha in [0, 1], got T {} and alpha {}",
            settings.temperature, settings.alpha
        )));
    }
    if config.mix.is_active() {
        return Err(CompressError::BadConfig(
            "mixup/cutmix with DeiT distillation is not supported yet (the teacher term would \
             need the mixed teacher targets); train without --mixup/--cutmix"
                .into(),
        ));
    }
    let spec = ModelSpec::new(&config.model, dataset.image_shape(), dataset.num_classes());
    let probe = keen_models::build_model(&spec, &options.device)?;
    if !matches!(probe, KeenModel::Deit(_)) {
        return Err(CompressError::BadConfig(format!(
            "DeiT distillation needs a student with a distillation token (deit-tiny), not '{}'",
            config.model
        )));
    }
    let teacher = crate::stages::teacher_source(config, dataset, options, teacher_path)?;
    let mut hooks = DeitDistiller {
        config: settings.clone(),
        teacher,
        teacher_name: teacher_path.display().to_string(),
    };
    Ok(keen_train::train_with(
        config, dataset, options, None, &mut hooks,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;

    #[test]
    fn hard_mode_learns_the_teachers_argmax_on_the_distillation_head() {
        let device = Device::flex();
        let ce = CrossEntropyLossConfig::new().init(&device);
        let cls = Tensor::<2>::from_floats([[2.0, 0.0, 0.0]], &device);
        let dist = Tensor::<2>::from_floats([[0.0, 1.0, 0.0]], &device);
        let teacher = Tensor::<2>::from_floats([[0.0, 5.0, 1.0]], &device);
        let labels = Tensor::<1, Int>::from_ints([0], &device);
        let hard = DeitConfig::new(DeitMode::Hard, &DistillConfig::default());
        let loss = deit_loss(
            cls.clone(),
            dist.clone(),
            teacher,
            labels.clone(),
            &hard,
            &ce,
        );
        let expected = 0.5 * ce.forward(cls, labels).into_scalar::<f32>()
            + 0.5
                * ce.forward(dist, Tensor::<1, Int>::from_ints([1], &device))
                    .into_scalar::<f32>();
        assert!((loss.into_scalar::<f32>() - expected).abs() < 1e-5);
    }

    #[test]
    fn soft_mode_vanishes_when_the_distillation_head_matches_the_teacher() {
        let device = Device::flex();
        let ce = CrossEntropyLossConfig::new().init(&device);
        let logits = Tensor::<2>::from_floats([[1.0, -2.0, 0.5], [0.0, 0.3, 2.0]], &device);
        let labels = Tensor::<1, Int>::from_ints([0, 2], &device);
        let soft = DeitConfig {
            mode: DeitMode::Soft,
            temperature: 3.0,
            alpha: 1.0,
        };
        let same = deit_loss(
            logits.clone(),
            logits.clone(),
            logits.clone(),
            labels.clone(),
            &soft,
            &ce,
        );
        assert!(same.into_scalar::<f32>().abs() < 1e-6);
        let other = logits.clone().flip([1]);
        let differ = deit_loss(logits.clone(), other, logits, labels, &soft, &ce);
        assert!(differ.into_scalar::<f32>() > 0.01);
    }

    #[test]
    fn a_deit_student_trains_end_to_end_with_a_live_teacher() {
        use keen_data::augment::AugmentConfig;
        use keen_train::{OptimizerKind, TrainOptions};
        let data = keen_data::toy::halves_dataset(64, 4, keen_data::toy::Halves::LeftRight);
        let device = Device::flex();
        let spec = ModelSpec::new("vit-tiny", data.image_shape(), data.num_classes());
        let teacher = keen_models::build_model(&spec, &device).expect("teacher");
        let mut hooks = DeitDistiller {
            config: DeitConfig::new(DeitMode::Hard, &DistillConfig::default()),
            teacher: TeacherSource::Live(Box::new(teacher.valid())),
            teacher_name: "random vit-tiny".into(),
        };
        let config = TrainConfig {
            model: "deit-tiny".into(),
            dataset: "halves".into(),
            epochs: 1,
            batch_size: 16,
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            warmup_epochs: 0.0,
            decay: keen_train::schedule::Decay::Constant,
            label_smoothing: 0.1,
            seed: 1,
            val_fraction: 0.25,
            augment: AugmentConfig::none(),
            max_train_images: None,
            mix: Default::default(),
            drop_path: 0.1,
            steps_per_epoch: None,
            labels_per_class: None,
            fixmatch: None,
            ema_decay: None,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TrainOptions {
            out_dir: dir.path().to_path_buf(),
            resume: false,
            device,
            extra_devices: vec![],
            progress: false,
            stop_after_epochs: None,
        };
        let summary =
            keen_train::train_with(&config, &data, &options, None, &mut hooks).expect("train");
        assert!(summary.finished && summary.history[0].train_loss.is_finite());
        let hooks_json = std::fs::read_to_string(dir.path().join("hooks.json")).expect("hooks");
        assert!(hooks_json.contains("hard"), "{hooks_json}");
    }

    #[test]
    fn modes_parse_and_bad_ones_are_named() {
        assert_eq!("hard".parse::<DeitMode>(), Ok(DeitMode::Hard));
        assert_eq!("soft".parse::<DeitMode>(), Ok(DeitMode::Soft));
        assert!("medium".parse::<DeitMode>().unwrap_err().contains("medium"));
    }
}
