//! The training configuration: every choice of a run, serialisable, with per-model presets.

use keen_data::augment::{AugmentConfig, RandAugment};
use serde::{Deserialize, Serialize};

use crate::fixmatch::FixMatchConfig;
use crate::mixup::MixConfig;
use crate::schedule::Decay;

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// SGD with (Nesterov) momentum and L2 weight decay.
    Sgd,
    /// AdamW: Adam with decoupled weight decay.
    AdamW,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adamw" => Ok(Self::AdamW),
            other => Err(format!(
                "unknown optimizer '{other}'; expected 'sgd' or 'adamw'"
            )),
        }
    }
}

/// Everything that decides what a training run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Registry name of the model.
    pub model: String,
    /// Dataset spec (`fashion-mnist`, `mnist`, `cifar10`, `folder:PATH`).
    pub dataset: String,
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum (ignored by AdamW).
    pub momentum: f64,
    /// Use Nesterov momentum with SGD.
    pub nesterov: bool,
    /// Weight decay (L2 for SGD, decoupled for AdamW).
    pub weight_decay: f64,
    /// Warm-up length in epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub decay: Decay,
    /// Label smoothing factor (0 = off).
    pub label_smoothing: f32,
    /// Seed of every random choice: initialisation, split, shuffling, augmentation.
    pub seed: u64,
    /// Fraction of the training set held out for validation.
    pub val_fraction: f32,
    /// Augmentation of training images.
    pub augment: AugmentConfig,
    /// Train on at most this many images of the training split (quick runs and tests).
    pub max_train_images: Option<usize>,
    /// Mixup and CutMix of training batches (off by default; absent in older run configs).
    #[serde(default)]
    pub mix: MixConfig,
    /// Stochastic depth: drop-path rate of the last transformer block, linearly less before
    /// (0 = off; ViT and DeiT models only).
    #[serde(default)]
    pub drop_path: f64,
    /// Optimizer steps per epoch; `None`: one pass over the labelled images (or, with
    /// FixMatch, over the unlabelled ones). When set, the labelled images are cycled through,
    /// pass after pass, as many times as the steps need.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// Keep only this many labelled images of every class from the training split (chosen by
    /// the seed after the validation split is held out); the rest is unlabelled data for
    /// FixMatch, or unused.
    #[serde(default)]
    pub labels_per_class: Option<usize>,
    /// FixMatch semi-supervised training on the images left out of `labels_per_class`.
    #[serde(default)]
    pub fixmatch: Option<FixMatchConfig>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999), and
    /// validate and save the average instead of the last weights.
    #[serde(default)]
    pub ema_decay: Option<f64>,
}

impl TrainConfig {
    /// The recipe keen uses for `model` unless told otherwise: tuned for Fashion-MNIST on a CPU.
    pub fn preset(model: &str) -> Self {
        let base = Self {
            model: model.to_string(),
            dataset: "fashion-mnist".to_string(),
            epochs: 10,
            batch_size: 128,
            optimizer: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            warmup_epochs: 1.0,
            decay: Decay::Cosine { min_factor: 0.0 },
            label_smoothing: 0.0,
            seed: 42,
            val_fraction: 0.1,
            augment: AugmentConfig {
                random_crop_padding: 2,
                horizontal_flip: true,
                rand_augment: None,
            },
            max_train_images: None,
            mix: MixConfig::default(),
            drop_path: 0.0,
            steps_per_epoch: None,
            labels_per_class: None,
            fixmatch: None,
            ema_decay: None,
        };
        match model {
            // Small and fast: Adam converges in a few epochs without augmentation.
            "cnn-small" | "cnn-madry" | "cnn-wong" => Self {
                epochs: 4,
                optimizer: OptimizerKind::AdamW,
                lr: 2e-3,
                weight_decay: 1e-4,
                warmup_epochs: 0.2,
                augment: AugmentConfig::none(),
                ..base
            },
            // Transformers want AdamW, warm-up and label smoothing on small data.
            name if name.starts_with("vit") || name.starts_with("deit") => Self {
                epochs: 10,
                optimizer: OptimizerKind::AdamW,
                lr: 2e-3,
                weight_decay: 0.05,
                warmup_epochs: 1.0,
                label_smoothing: 0.1,
                augment: AugmentConfig {
                    random_crop_padding: 2,
                    horizontal_flip: true,
                    rand_augment: Some(RandAugment { n: 2, m: 5 }),
                },
                ..base
            },
            _ => base,
        }
    }
}
