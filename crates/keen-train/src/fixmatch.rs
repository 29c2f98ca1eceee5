//! FixMatch (Sohn et al. 2020): semi-supervised training from a few labels and many unlabelled
//! images, as [`TrainHooks`] around the run's own hooks.
//!
//! Every step sees the labelled batch of B images (weakly augmented, cross-entropy through the
//! wrapped hooks' loss, so logit distillation composes) and an unlabelled batch of μ·B images in
//! two views. The weak view's prediction, without gradient, gives each image a pseudo-label —
//! its argmax — kept only where its largest probability reaches the threshold τ; the strong view
//! (RandAugment with random magnitudes, then Cutout) is trained towards it:
//!
//! `loss = CE(labelled) + λ_u · mean over the μ·B images of 1[max p_weak ≥ τ] · CE(strong, argmax p_weak)`
//!
//! The mean runs over all μ·B images, not the confident ones, as in the paper: early on few
//! images pass τ and the unlabelled term is small by itself, which is FixMatch's implicit
//! curriculum. The labelled images and the strong views go through the model as one batch (as
//! the reference code does, so batch-norm statistics cover both); the weak views go through a
//! separate forward pass whose logits are detached, so they cost no backward pass.
//!
//! The pseudo-labels come from the model being trained, as in the paper, or, with
//! [`PseudoLabeller::Ema`], from the run's weight average in inference mode (its averaged
//! batch-norm statistics included): Mean Teacher's teacher, which EMAN (Cai et al. 2021) uses
//! for FixMatch. The average moves slowly, so a wrong pseudo-label the model has just taught
//! itself does not come straight back as next step's target; but its targets are also ~1/(1−d)
//! steps stale, and on Fashion-MNIST with 1,000 labels at 24,000 steps that cost more than it
//! saved (0.3 points below the model's own pseudo-labels; docs/RESULTS.md).
//!
//! The unlabelled batch of step k is a function of the seed and k
//! ([`keen_data::loader::two_view_batches`]), so a resumed run sees what an uninterrupted run
//! would; in a data-parallel step each shard takes the share of the unlabelled batch that
//! matches its share of the labelled batch. The images' true labels never enter the loss: they
//! only measure pseudo-label accuracy for the log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use keen_data::augment::{StrongAugment, MAX_MAGNITUDE};
use keen_data::dataset::ImageDataset;
use keen_data::loader::{
    two_view_batches, two_view_batches_per_pass, LoaderConfig, TwoViewBatch, TwoViewConfig,
    TwoViewStream,
};
use keen_models::{ImageClassifier, KeenModel};
use serde::{Deserialize, Serialize};

use crate::hooks::{LossInputs, ShardInputs, TrainHooks};
use crate::tensors::{images_tensor, labels_tensor, to_f32_vec};
use crate::TrainError;

/// FixMatch's settings (stored in the run's config: `--resume` refuses others).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixMatchConfig {
    /// Unlabelled images per labelled image in a step (μ; the paper uses 7).
    pub mu: usize,
    /// Confidence a weak-view prediction needs to become a pseudo-label (τ; 0.95).
    pub threshold: f32,
    /// Weight of the unlabelled loss (λ_u; 1).
    pub lambda_u: f32,
    /// The strong view.
    pub strong: StrongAugment,
    /// Which model's weak-view prediction becomes the pseudo-label (absent from configs
    /// written before it existed, which used the model).
    #[serde(default)]
    pub pseudo_labeller: PseudoLabeller,
}

/// Which model pseudo-labels the unlabelled images (`--fixmatch-pseudo-labels`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PseudoLabeller {
    /// The model being trained, in training mode (the paper).
    #[default]
    Model,
    /// The run's weight average (`--ema-decay`), in inference mode.
    Ema,
}

impl PseudoLabeller {
    /// The name the command line and run configs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Ema => "ema",
        }
    }

    /// Parses [`Self::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Model, Self::Ema]
            .into_iter()
            .find(|labeller| labeller.name() == name)
    }
}

impl Default for FixMatchConfig {
    /// The paper's settings: μ = 7, τ = 0.95, λ_u = 1, RandAugment(2, random magnitude) + Cutout.
    fn default() -> Self {
        Self {
            mu: 7,
            threshold: 0.95,
            lambda_u: 1.0,
            strong: StrongAugment::default(),
            pseudo_labeller: PseudoLabeller::Model,
        }
    }
}

impl FixMatchConfig {
    /// Checks μ, τ, λ_u, the strong view's largest magnitude and the Cutout fraction.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::BadConfig(what));
        if self.mu == 0 {
            return bad("--fixmatch-mu must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!(
                "--fixmatch-threshold must be in [0, 1], got {}",
                self.threshold
            ));
        }
        if !(self.lambda_u.is_finite() && self.lambda_u >= 0.0) {
            return bad(format!(
                "--fixmatch-lambda must be non-negative, got {}",
                self.lambda_u
            ));
        }
        if !(1..=MAX_MAGNITUDE).contains(&self.strong.max_magnitude) {
            return bad(format!(
                "--fixmatch-strong: the largest magnitude must be in 1..={MAX_MAGNITUDE}, got {}",
                self.strong.max_magnitude
            ));
        }
        if !(0.0..=1.0).contains(&self.strong.cutout_fraction) {
            return bad(format!(
                "--fixmatch-cutout must be in [0, 1], got {}",
                self.strong.cutout_fraction
            ));
        }
        Ok(())
    }

    /// Unlabelled images per step for labelled batches of `batch_size`.
    pub fn unlabelled_batch(&self, batch_size: usize) -> usize {
        self.mu * batch_size
    }

    /// Steps of one pass over `unlabelled` images: what an epoch of a FixMatch run is unless
    /// `--steps-per-epoch` says otherwise.
    pub fn steps_per_pass(&self, unlabelled: usize, batch_size: usize) -> usize {
        unlabelled
            .checked_div(self.unlabelled_batch(batch_size))
            .unwrap_or(0)
    }
}

/// The unlabelled term of one batch and what it decided.
pub struct UnlabelledLoss {
    /// `mean_i mask_i · CE(strong_i, pseudo_i)` over all images, shape `[1]`; 0 when no image
    /// passes the threshold.
    pub loss: Tensor<1>,
    /// 1 where the weak prediction reached the threshold, else 0, shape `[n]`.
    pub mask: Tensor<1>,
    /// Argmax of the weak prediction, shape `[n]`.
    pub pseudo_labels: Tensor<1, Int>,
}

/// FixMatch's unlabelled loss from the weak and strong views' logits `[n, classes]`.
///
/// The weak logits are detached here, whatever the caller passes: the pseudo-labels are
/// targets, and a gradient through them would let the model lower the loss by changing its
/// targets instead of its strong-view predictions.
pub fn unlabelled_loss(
    weak_logits: Tensor<2>,
    strong_logits: Tensor<2>,
    threshold: f32,
) -> UnlabelledLoss {
    let (confidence, pseudo) = softmax(weak_logits.detach(), 1).max_dim_with_indices(1);
    let mask = confidence.greater_equal_elem(threshold).float();
    let nll = log_softmax(strong_logits, 1)
        .gather(1, pseudo.clone())
        .neg();
    let loss = (nll * mask.clone()).mean();
    UnlabelledLoss {
        loss,
        mask: mask.flatten(0, 1),
        pseudo_labels: pseudo.flatten(0, 1),
    }
}

/// Running sums over an epoch's unlabelled images.
#[derive(Debug, Default, Clone, Copy)]
struct EpochSums {
    images: f64,
    confident: f64,
    confident_correct: f64,
    correct: f64,
    loss_sum: f64,
}

/// FixMatch hooks around the run's own hooks.
pub struct FixMatch<'a> {
    config: FixMatchConfig,
    dataset: Arc<ImageDataset>,
    unlabelled: Vec<usize>,
    views: TwoViewConfig,
    stream: Option<TwoViewStream>,
    /// The current step's unlabelled batch, read by every shard's forward pass.
    batch: Option<TwoViewBatch>,
    /// The run's weight average, kept only when it gives the pseudo-labels.
    teacher: Option<KeenModel>,
    /// Filled from `forward_loss`, which takes `&self`; shards run one after another, so the
    /// lock is never contended.
    sums: Mutex<EpochSums>,
    inner: &'a mut dyn TrainHooks,
}

impl<'a> FixMatch<'a> {
    /// FixMatch over `unlabelled` (positions in `dataset`) beside the labelled batches of
    /// `labelled`, whose seed, augmentation (the weak view) and normalization the unlabelled
    /// stream shares. Fails when there are fewer unlabelled images than one unlabelled batch.
    pub fn new(
        config: FixMatchConfig,
        dataset: Arc<ImageDataset>,
        unlabelled: Vec<usize>,
        labelled: &LoaderConfig,
        inner: &'a mut dyn TrainHooks,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        let views = TwoViewConfig {
            batch_size: config.unlabelled_batch(labelled.batch_size),
            seed: labelled.seed,
            weak: labelled.augment.clone(),
            strong: config.strong,
            normalization: labelled.normalization.clone(),
        };
        if two_view_batches_per_pass(unlabelled.len(), &views) == 0 {
            return Err(TrainError::BadConfig(format!(
                "FixMatch needs at least μ·B = {} unlabelled images, and only {} are left after the labelled subset",
                views.batch_size,
                unlabelled.len()
            )));
        }
        Ok(Self {
            config,
            dataset,
            unlabelled,
            views,
            stream: None,
            batch: None,
            teacher: None,
            sums: Mutex::new(EpochSums::default()),
            inner,
        })
    }

    /// The unlabelled term of one shard: its share of the step's unlabelled batch, through the
    /// model with the labelled images. Returns the labelled logits and the total loss.
    fn shard_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        batch: &TwoViewBatch,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let [unlabelled, c, h, w] = batch.shape;
        let n = shard.indices.len();
        let total = shard.batch_len.max(1);
        let (lo, hi) = (
            shard.batch_offset * unlabelled / total,
            (shard.batch_offset + n) * unlabelled / total,
        );
        if lo >= hi {
            return self.inner.forward_loss(model, shard, cross_entropy);
        }
        let device = shard.images.device();
        let per_image = c * h * w;
        let view = |values: &[f32], device: &Device| {
            images_tensor(
                values[lo * per_image..hi * per_image].to_vec(),
                [hi - lo, c, h, w],
                device,
            )
        };
        let weak_logits = match &self.teacher {
            // The average has no autodiff; its logits enter the loss as constants.
            Some(teacher) => {
                let plain = device.clone().inner();
                teacher
                    .clone()
                    .to_device(&plain)
                    .forward(view(&batch.weak, &plain))
                    .autodiff()
            }
            None => model.forward(view(&batch.weak, &device)).detach(),
        };
        let logits = model.forward(Tensor::cat(
            vec![shard.images.clone(), view(&batch.strong, &device)],
            0,
        ));
        let labelled_logits = logits.clone().narrow(0, 0, n);
        let strong_logits = logits.narrow(0, n, hi - lo);
        let labelled_loss = self.inner.loss(
            LossInputs {
                logits: labelled_logits.clone(),
                images: shard.images,
                labels: shard.labels,
                indices: shard.indices,
            },
            cross_entropy,
        );
        let unl = unlabelled_loss(weak_logits, strong_logits, self.config.threshold);
        let truth = labels_tensor(&batch.labels[lo..hi], &device);
        let correct = unl.pseudo_labels.equal(truth).float();
        // One read from the device per shard for all four figures.
        let figures = to_f32_vec(Tensor::cat(
            vec![
                unl.mask.clone().sum(),
                (unl.mask * correct.clone()).sum(),
                correct.sum(),
                unl.loss.clone().detach(),
            ],
            0,
        ));
        if let [confident, confident_correct, correct, loss] = figures[..] {
            let mut sums = self.sums.lock().unwrap_or_else(|p| p.into_inner());
            let images = (hi - lo) as f64;
            sums.images += images;
            sums.confident += confident as f64;
            sums.confident_correct += confident_correct as f64;
            sums.correct += correct as f64;
            sums.loss_sum += loss as f64 * images;
        }
        let loss = labelled_loss + unl.loss.mul_scalar(self.config.lambda_u as f64);
        (labelled_logits, loss)
    }
}

impl TrainHooks for FixMatch<'_> {
    fn describe(&self) -> serde_json::Value {
        // FixMatch's settings are in the run's config already; the identity is the inner hooks'.
        self.inner.describe()
    }

    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        self.inner.loss(inputs, cross_entropy)
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        match &self.batch {
            Some(batch) => self.shard_loss(model, shard, batch, cross_entropy),
            None => self.inner.forward_loss(model, shard, cross_entropy),
        }
    }

    fn before_step(&mut self, step: usize) {
        // A new stream when the run starts or resumes (or a step is skipped): the stream is
        // indexed by step, so starting it anywhere gives that step's batch.
        if self.stream.as_ref().is_none_or(|s| s.next_step() != step) {
            self.stream = None; // Stop the old thread before starting another.
            self.stream = Some(two_view_batches(
                &self.dataset,
                &self.unlabelled,
                &self.views,
                step,
            ));
        }
        self.batch = self.stream.as_mut().and_then(Iterator::next);
        self.inner.before_step(step);
    }

    fn epoch_metrics(&mut self) -> BTreeMap<String, f64> {
        let mut metrics = self.inner.epoch_metrics();
        let sums = std::mem::take(&mut *self.sums.lock().unwrap_or_else(|p| p.into_inner()));
        if sums.images > 0.0 {
            metrics.insert("mask_rate".into(), sums.confident / sums.images);
            metrics.insert("unlabelled_loss".into(), sums.loss_sum / sums.images);
            metrics.insert(
                "pseudo_label_accuracy_all".into(),
                sums.correct / sums.images,
            );
        }
        // Accuracy of the pseudo-labels actually trained on; absent while none pass τ.
        if sums.confident > 0.0 {
            metrics.insert(
                "pseudo_label_accuracy".into(),
                sums.confident_correct / sums.confident,
            );
        }
        metrics
    }

    fn after_step(&mut self, model: KeenModel, step: usize, total_steps: usize) -> KeenModel {
        self.inner.after_step(model, step, total_steps)
    }

    fn weight_average_updated(&mut self, average: &KeenModel) {
        if self.config.pseudo_labeller == PseudoLabeller::Ema {
            self.teacher = Some(average.clone());
        }
        self.inner.weight_average_updated(average);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn logits(values: Vec<f32>, n: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, [n, 3]), device)
    }

    #[test]
    fn only_confident_images_contribute_and_none_confident_gives_zero() {
        let device = Device::flex();
        // Row 0: softmax ≈ (0.9999, ...) confident in class 0; row 1: uniform; row 2: confident
        // in class 2.
        let weak = logits(
            vec![10.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 10.0],
            3,
            &device,
        );
        let strong = logits(
            vec![1.0, 2.0, 3.0, 0.5, 0.0, -0.5, 2.0, 1.0, 0.0],
            3,
            &device,
        );
        let out = unlabelled_loss(weak.clone(), strong.clone(), 0.95);
        assert_eq!(to_f32_vec(out.mask), vec![1.0, 0.0, 1.0]);
        let pseudo: Vec<i64> = out
            .pseudo_labels
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("i64");
        assert_eq!(pseudo, vec![0, 0, 2]);
        // By hand: −log softmax(strong_0)[0] and −log softmax(strong_2)[2], over all 3 images.
        let nll = |row: [f32; 3], k: usize| {
            let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
            lse - row[k]
        };
        let expected = (nll([1.0, 2.0, 3.0], 0) + nll([2.0, 1.0, 0.0], 2)) / 3.0;
        let got = out.loss.into_scalar::<f32>();
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        // τ above every confidence: nothing passes and the loss is exactly 0.
        let none = unlabelled_loss(weak, strong, 1.0);
        assert_eq!(to_f32_vec(none.mask), vec![0.0; 3]);
        assert_eq!(none.loss.into_scalar::<f32>(), 0.0);
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        assert!(FixMatchConfig::default().validate().is_ok());
        let with = |change: fn(&mut FixMatchConfig)| {
            let mut config = FixMatchConfig::default();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(with(|c| c.mu = 0).contains("--fixmatch-mu"));
        assert!(with(|c| c.threshold = 1.5).contains("--fixmatch-threshold"));
        assert!(with(|c| c.lambda_u = -1.0).contains("--fixmatch-lambda"));
        assert!(with(|c| c.strong.cutout_fraction = 1.5).contains("--fixmatch-cutout"));
        assert!(with(|c| c.strong.cutout_fraction = f32::NAN).contains("--fixmatch-cutout"));
        assert!(with(|c| c.strong.max_magnitude = 0).contains("--fixmatch-strong"));
        assert!(with(|c| c.strong.max_magnitude = 11).contains("--fixmatch-strong"));
    }

    #[test]
    fn pseudo_labeller_names_round_trip_and_old_configs_read_as_the_model() {
        for labeller in [PseudoLabeller::Model, PseudoLabeller::Ema] {
            assert_eq!(PseudoLabeller::from_name(labeller.name()), Some(labeller));
            let json = serde_json::to_string(&labeller).expect("json");
            assert_eq!(json, format!("\"{}\"", labeller.name()));
        }
        assert_eq!(PseudoLabeller::from_name("teacher"), None);
        let mut old = serde_json::to_value(FixMatchConfig::default()).expect("json");
        old.as_object_mut()
            .expect("object")
            .remove("pseudo_labeller");
        let read: FixMatchConfig = serde_json::from_value(old).expect("old config");
        assert_eq!(read, FixMatchConfig::default());
    }

    #[test]
    fn pseudo_labels_carry_no_gradient() {
        let device = Device::flex().autodiff();
        let weak = logits(
            vec![10.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 10.0],
            3,
            &device,
        )
        .require_grad();
        let strong = logits(
            vec![1.0, 2.0, 3.0, 0.5, 0.0, -0.5, 2.0, 1.0, 0.0],
            3,
            &device,
        )
        .require_grad();
        let out = unlabelled_loss(weak.clone(), strong.clone(), 0.95);
        let grads = out.loss.backward();
        let weak_grad = weak.grad(&grads).map(to_f32_vec).unwrap_or_default();
        assert!(
            weak_grad.iter().all(|&g| g == 0.0),
            "the weak view got a gradient: {weak_grad:?}"
        );
        let strong_grad = to_f32_vec(strong.grad(&grads).expect("strong view has a gradient"));
        // Confident rows get softmax − onehot over 3; the unconfident row gets nothing.
        assert!(strong_grad[..3].iter().any(|&g| g.abs() > 1e-3));
        assert_eq!(&strong_grad[3..6], &[0.0, 0.0, 0.0]);
        assert!(strong_grad[6..].iter().any(|&g| g.abs() > 1e-3));
    }
}
