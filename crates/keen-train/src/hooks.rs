//! Hooks: how other crates change what a training run optimises without copying the loop.
//!
//! Distillation replaces the loss (the teacher's soft targets join the labels), pruning re-applies
//! its masks after every optimizer step. The loop, checkpoints, logging and resume stay in
//! [`crate::trainer`].

use std::collections::BTreeMap;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use keen_models::{ImageClassifier, KeenModel};

/// What the loss of one shard of a batch sees.
pub struct LossInputs<'a> {
    /// The model's logits `[n, classes]` (tracked for autodiff).
    pub logits: Tensor<2>,
    /// The normalised images the logits came from `[n, c, h, w]`.
    pub images: &'a Tensor<4>,
    /// The labels `[n]`.
    pub labels: Tensor<1, Int>,
    /// Positions of the images in the dataset (for per-image caches such as teacher logits).
    pub indices: &'a [usize],
}

/// One shard of a batch, before the forward pass.
pub struct ShardInputs<'a> {
    /// The normalised images `[n, c, h, w]`.
    pub images: &'a Tensor<4>,
    /// The labels `[n]`.
    pub labels: Tensor<1, Int>,
    /// Positions of the images in the dataset.
    pub indices: &'a [usize],
    /// Position of the shard's first image in the step's whole batch (data-parallel steps split
    /// one batch into shards; hooks with per-step data of their own split it alike).
    pub batch_offset: usize,
    /// Images in the step's whole batch, over all shards.
    pub batch_len: usize,
}

/// Changes to the training loop. Every method has the plain behaviour as its default.
pub trait TrainHooks {
    /// The hooks' settings, stored beside the run's config so that `--resume` refuses a run
    /// started with other settings.
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The loss of one shard; by default cross-entropy (with the run's label smoothing).
    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        cross_entropy.forward(inputs.logits, inputs.labels)
    }

    /// Forward pass and loss of one shard: returns the logits (for the step's accuracy) and the
    /// loss to differentiate. By default the model's logits and [`Self::loss`]. Override it to
    /// change what the model sees (adversarial training perturbs the images first) or to read
    /// intermediate features (hint distillation).
    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let logits = model.forward(shard.images.clone());
        let loss = self.loss(
            LossInputs {
                logits: logits.clone(),
                images: shard.images,
                labels: shard.labels,
                indices: shard.indices,
            },
            cross_entropy,
        );
        (logits, loss)
    }

    /// Whether [`Self::forward_loss`] applies the run's mixup/CutMix itself. The trainer wraps
    /// other hooks in [`crate::mixup::Mixing`], which calls their [`Self::loss`] on the mixed
    /// images; hooks whose loss needs more than one logits tensor (DeiT's two heads) mix
    /// instead.
    fn mixes_batches(&self) -> bool {
        false
    }

    /// Called before every optimizer step with its 0-based number (the count of steps taken
    /// before it, resumed runs included), so hooks can fetch what the step's shards read:
    /// FixMatch takes the step's unlabelled batch here.
    fn before_step(&mut self, _step: usize) {}

    /// Figures of the epoch just finished, to log beside the loss (e.g. FixMatch's mask rate),
    /// and a fresh start for the next epoch. Keys are log field names.
    fn epoch_metrics(&mut self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }

    /// Called after every optimizer step with the 1-based step number and the run's total.
    fn after_step(&mut self, model: KeenModel, _step: usize, _total_steps: usize) -> KeenModel {
        model
    }

    /// Called with the run's weight average (`--ema-decay`) when the run starts or resumes and
    /// after every update of it, for hooks that take targets from it (FixMatch's pseudo-labels
    /// with `--fixmatch-pseudo-labels ema`). The model is a handle: keeping a clone is cheap.
    fn weight_average_updated(&mut self, _average: &KeenModel) {}
}

/// Plain supervised training.
pub struct PlainTraining;

impl TrainHooks for PlainTraining {}
