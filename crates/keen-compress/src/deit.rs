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
//!
//! Mixup and CutMix (DeiT trains with both) are applied here rather than by the trainer's
//! generic wrapper, because the teacher term needs the student's two heads: a live teacher
//! labels the mixed images themselves, as in DeiT; with cached logits (of the unmixed images)
//! the loss is `λ·loss(y, t) + (1 − λ)·loss(y_flip, t_flip)`, the form the other distillers
//! take under mixing.

use std::path::Path;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use keen_data::dataset::ImageDataset;
use keen_models::{ImageClassifier, KeenModel, ModelSpec};
use keen_train::mixup::{self, MixConfig};
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

/// The teacher's logits for the images at the given dataset positions, within one batch.
type TeacherFor<'a> = Box<dyn Fn(&[usize]) -> Tensor<2> + 'a>;

/// Training hooks of DeiT distillation.
pub struct DeitDistiller {
    /// The settings.
    pub config: DeitConfig,
    /// The teacher's logits.
    pub teacher: TeacherSource,
    /// Where the teacher came from (for the run's identity).
    pub teacher_name: String,
    /// The run's mixup/CutMix settings (off by default).
    pub mix: MixConfig,
    /// The run's seed, which keys each batch's mix draw.
    pub seed: u64,
}

impl TrainHooks for DeitDistiller {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "deit": self.config, "teacher": self.teacher_name })
    }

    fn mixes_batches(&self) -> bool {
        true
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let [_, _, h, w] = shard.images.dims();
        let mix = mixup::draw(&self.mix, self.seed, shard.indices, [h, w]);
        let images = mixup::mix_images(shard.images.clone(), &mix);
        // A one-head model (refused by `distill_deit`) would distil its only head.
        let (cls, dist) = model.forward_heads(images.clone()).unwrap_or_else(|| {
            let logits = model.forward(images.clone());
            (logits.clone(), logits)
        });
        let device = cls.device();
        // A live teacher labels the (mixed) images the student sees; cached logits belong to
        // the unmixed images, found by their dataset positions.
        let teacher_for: TeacherFor<'_> = match &self.teacher {
            TeacherSource::Live(teacher) => {
                let logits = teacher.forward(images.inner()).detach();
                Box::new(move |_| logits.clone())
            }
            TeacherSource::Cached(cache) => Box::new(|indices| cache.batch(indices, &device)),
        };
        let total = mixup::mixed_loss(&mix, shard.labels, shard.indices, |labels, indices| {
            deit_loss(
                cls.clone(),
                dist.clone(),
                teacher_for(indices),
                labels,
                &self.config,
                cross_entropy,
            )
        });
        ((cls + dist).div_scalar(2.0), total)
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
        mix: config.mix,
        seed: config.seed,
    };
    Ok(keen_train::train_with(
        config, dataset, options, None, &mut hooks,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::TeacherLogits;
    use burn::nn::loss::CrossEntropyLossConfig;
    use keen_train::mixup::MixDraw;

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
    fn a_deit_student_trains_end_to_end_with_a_live_teacher_with_and_without_mixing() {
        use keen_data::augment::AugmentConfig;
        use keen_train::TrainOptions;
        let data = keen_data::toy::halves_dataset(64, 4, keen_data::toy::Halves::LeftRight);
        let device = Device::flex();
        let spec = ModelSpec::new("vit-tiny", data.image_shape(), data.num_classes());
        let teacher = keen_models::build_model(&spec, &device).expect("teacher");
        let mixing = MixConfig {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            ..MixConfig::default()
        };
        for mix in [MixConfig::default(), mixing] {
            let mut hooks = DeitDistiller {
                config: DeitConfig::new(DeitMode::Hard, &DistillConfig::default()),
                teacher: TeacherSource::Live(Box::new(teacher.clone().valid())),
                teacher_name: "random vit-tiny".into(),
                mix,
                seed: 1,
            };
            let config = TrainConfig {
                dataset: "halves".into(),
                epochs: 1,
                batch_size: 16,
                lr: 1e-3,
                warmup_epochs: 0.0,
                val_fraction: 0.25,
                augment: AugmentConfig::none(),
                mix,
                drop_path: 0.1,
                ..TrainConfig::preset("deit-tiny")
            };
            let dir = tempfile::tempdir().expect("tempdir");
            let options = TrainOptions {
                out_dir: dir.path().to_path_buf(),
                resume: false,
                device: device.clone(),
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
    }

    #[test]
    fn a_mixed_batch_with_cached_logits_weighs_both_images_losses_by_lambda() {
        // Cached logits belong to the unmixed images, so a mixed batch's loss must be
        // λ·loss(y, t) + (1 − λ)·loss(y_flip, t_flip), with the heads run on the mixed images.
        let device = Device::flex();
        // A freshly initialised student predicts almost uniformly for every image, which would
        // make the two parts equal: its weights are scaled up so its outputs differ by image.
        struct Scale;
        impl burn::module::ModuleMapper for Scale {
            fn map_float<const D: usize>(
                &mut self,
                param: burn::module::Param<Tensor<D>>,
            ) -> burn::module::Param<Tensor<D>> {
                param.map(|t| t.mul_scalar(3.0))
            }
        }
        let spec = ModelSpec::new("deit-tiny", [1, 28, 28], 3);
        let model = burn::module::Module::map(
            keen_models::build_model(&spec, &device).expect("student"),
            &mut Scale,
        );
        let ce = CrossEntropyLossConfig::new().init(&device);
        let rows = 6;
        let logits: Vec<f32> = (0..rows * 3).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let cache = TeacherLogits::from_rows(logits, 3);
        let mix = MixConfig {
            mixup_alpha: 0.8,
            ..MixConfig::default()
        };
        let indices = [5usize, 0, 3, 2];
        // λ near ½ would make image i and image n−1−i mix into the same picture, and the two
        // parts equal: take the first seed whose draw is well away from it.
        let seed = (0..100u64)
            .find(|&seed| {
                (0.15..0.35).contains(&mixup::draw(&mix, seed, &indices, [28, 28]).lambda())
            })
            .expect("a seed with lambda in [0.15, 0.35)");
        let hooks = DeitDistiller {
            config: DeitConfig::new(DeitMode::Hard, &DistillConfig::default()),
            teacher: TeacherSource::Cached(cache.clone()),
            teacher_name: "cached".into(),
            mix,
            seed,
        };
        let pixels: Vec<f32> = (0..4 * 28 * 28)
            .map(|i| 3.0 * ((i as f32) * 0.37).sin() * ((i / 784) as f32 - 1.5))
            .collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [4, 1, 28, 28]), &device);
        let labels = Tensor::<1, Int>::from_ints([0, 2, 1, 1], &device);
        let shard = ShardInputs {
            images: &images,
            labels: labels.clone(),
            indices: &indices,
            batch_offset: 0,
            batch_len: 4,
        };
        let (_, loss) = hooks.forward_loss(&model, shard, &ce);
        let draw = mixup::draw(&mix, seed, &indices, [28, 28]);
        let lambda = draw.lambda() as f64;
        assert!(draw != MixDraw::None && lambda < 1.0, "{draw:?}");
        let (cls, dist) = model
            .forward_heads(mixup::mix_images(images, &draw))
            .expect("two heads");
        let flipped = [2usize, 3, 0, 5];
        let part = |teacher, labels| {
            deit_loss(
                cls.clone(),
                dist.clone(),
                teacher,
                labels,
                &hooks.config,
                &ce,
            )
            .into_scalar::<f32>() as f64
        };
        let own = part(cache.batch(&indices, &device), labels.clone());
        let other = part(cache.batch(&flipped, &device), labels.flip([0]));
        let expected = lambda * own + (1.0 - lambda) * other;
        let got = loss.into_scalar::<f32>() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        assert!(
            (own - other).abs() > 1e-3,
            "the test needs the two parts to differ: {own} {other} {lambda}"
        );
    }

    #[test]
    fn modes_parse_and_bad_ones_are_named() {
        assert_eq!("hard".parse::<DeitMode>(), Ok(DeitMode::Hard));
        assert_eq!("soft".parse::<DeitMode>(), Ok(DeitMode::Soft));
        assert!("medium".parse::<DeitMode>().unwrap_err().contains("medium"));
    }
}
