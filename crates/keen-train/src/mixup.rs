//! Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), as timm's `Mixup` applies them:
//! per batch, with probability `prob`, the images are blended with the batch in reverse order —
//! mixup: `λ·x + (1 − λ)·x_flip`, λ ~ Beta(α, α); cutmix: a box of area `1 − λ` pasted from
//! `x_flip`, λ then corrected to the pasted area — and the targets are mixed the same way. When
//! both are on, `switch_prob` picks cutmix.
//!
//! Cross-entropy is linear in its target, so the loss with mixed soft targets
//! `λ·onehot(y) + (1 − λ)·onehot(y_flip)` (label smoothing included) equals
//! `λ·CE(y) + (1 − λ)·CE(y_flip)`; [`Mixing`] computes it that way, through the wrapped hooks'
//! loss, so mixing composes with logit distillation (each image's teacher logits are mixed with
//! the same λ). Every draw is seeded by the run's seed and the batch's dataset indices, so a
//! resumed run mixes exactly as an uninterrupted one.

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::TensorData;
use keen_models::{ImageClassifier, KeenModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::hooks::{LossInputs, ShardInputs, TrainHooks};

/// Mixup and CutMix settings; both off by default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixConfig {
    /// Mixup's Beta(α, α) parameter (0 = off; timm/DeiT use 0.8).
    pub mixup_alpha: f32,
    /// CutMix's Beta(α, α) parameter (0 = off; timm/DeiT use 1.0).
    pub cutmix_alpha: f32,
    /// Probability that a batch is mixed at all.
    pub prob: f32,
    /// Probability of CutMix rather than mixup when both are on.
    pub switch_prob: f32,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

impl MixConfig {
    /// Whether any batch can be mixed.
    pub fn is_active(&self) -> bool {
        self.prob > 0.0 && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0)
    }

    /// Checks that the alphas are non-negative and the probabilities in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        let finite_non_negative = |v: f32| v.is_finite() && v >= 0.0;
        if !finite_non_negative(self.mixup_alpha) || !finite_non_negative(self.cutmix_alpha) {
            return Err(format!(
                "mixup and cutmix alphas must be non-negative, got {} and {}",
                self.mixup_alpha, self.cutmix_alpha
            ));
        }
        for (name, p) in [("mix", self.prob), ("mix switch", self.switch_prob)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} probability must be in [0, 1], got {p}"));
            }
        }
        Ok(())
    }
}

/// How one batch is mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixDraw {
    /// Not mixed.
    None,
    /// Blended with weight `lambda` on the batch's own images.
    Mixup {
        /// Weight of the batch's own images and labels.
        lambda: f32,
    },
    /// A box `[top, left, height, width]` pasted from the flipped batch; `lambda` is the
    /// share of pixels left unchanged.
    CutMix {
        /// The pasted box: top, left, height, width.
        bbox: [usize; 4],
        /// Share of the image left unchanged (the weight of the batch's own labels).
        lambda: f32,
    },
}

impl MixDraw {
    /// Weight of the batch's own labels (1 when not mixed).
    pub fn lambda(&self) -> f32 {
        match self {
            MixDraw::None => 1.0,
            MixDraw::Mixup { lambda } | MixDraw::CutMix { lambda, .. } => *lambda,
        }
    }
}

/// Draws how the batch whose dataset positions are `indices` is mixed, for `[h, w]` images.
pub fn draw(config: &MixConfig, seed: u64, indices: &[usize], [h, w]: [usize; 2]) -> MixDraw {
    // FNV-1a over the indices: the same batch of the same run always draws the same mix.
    let mut key = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &i in indices {
        key = (key ^ i as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    if !config.is_active() || rng.random::<f32>() >= config.prob {
        return MixDraw::None;
    }
    let use_cutmix = match (config.mixup_alpha > 0.0, config.cutmix_alpha > 0.0) {
        (true, true) => rng.random::<f32>() < config.switch_prob,
        (false, true) => true,
        _ => false,
    };
    if !use_cutmix {
        let lambda = keen_data::sampling::beta(&mut rng, config.mixup_alpha as f64) as f32;
        return MixDraw::Mixup { lambda };
    }
    let lambda = keen_data::sampling::beta(&mut rng, config.cutmix_alpha as f64);
    // A box of area (1 − λ)·h·w centred uniformly, clipped to the image (timm's rand_bbox).
    let cut = (1.0 - lambda).sqrt();
    let (cut_h, cut_w) = ((h as f64 * cut) as usize, (w as f64 * cut) as usize);
    let (cy, cx) = (rng.random_range(0..h), rng.random_range(0..w));
    let top = cy.saturating_sub(cut_h / 2);
    let bottom = (cy + cut_h / 2).min(h);
    let left = cx.saturating_sub(cut_w / 2);
    let right = (cx + cut_w / 2).min(w);
    let area = (bottom - top) * (right - left);
    MixDraw::CutMix {
        bbox: [top, left, bottom - top, right - left],
        lambda: 1.0 - area as f32 / (h * w) as f32,
    }
}

/// The mixed images of a batch `[n, c, h, w]` under `mix`.
pub fn mix_images(images: Tensor<4>, mix: &MixDraw) -> Tensor<4> {
    let flipped = images.clone().flip([0]);
    match *mix {
        MixDraw::None => images,
        MixDraw::Mixup { lambda } => {
            images.mul_scalar(lambda as f64) + flipped.mul_scalar(1.0 - lambda as f64)
        }
        MixDraw::CutMix {
            bbox: [top, left, bh, bw],
            ..
        } => {
            let [_, _, h, w] = images.dims();
            let mut mask = vec![0.0f32; h * w];
            for y in top..top + bh {
                mask[y * w + left..y * w + left + bw].fill(1.0);
            }
            let mask =
                Tensor::<4>::from_data(TensorData::new(mask, [1, 1, h, w]), &images.device());
            let keep = mask.clone().neg().add_scalar(1.0);
            images * keep + flipped * mask
        }
    }
}

/// Mixed soft targets `[n, classes]`: `λ·onehot(y_i) + (1 − λ)·onehot(y_{n−1−i})`, each row
/// summing to 1 (what the mixed loss is the cross-entropy against).
pub fn mixed_targets(labels: &[i64], num_classes: usize, lambda: f32) -> Vec<f32> {
    let n = labels.len();
    let mut targets = vec![0.0f32; n * num_classes];
    for (i, &label) in labels.iter().enumerate() {
        targets[i * num_classes + label as usize] += lambda;
        targets[i * num_classes + labels[n - 1 - i] as usize] += 1.0 - lambda;
    }
    targets
}

/// The loss of a batch mixed by `mix`, for a loss linear in its target:
/// `λ·loss(y, indices) + (1 − λ)·loss(y_flip, indices_flip)`, where the flipped labels and
/// dataset positions are those of the images each one was mixed with (the batch in reverse);
/// `loss(y, indices)` alone when the batch is not mixed. `indices` lets a loss find per-image
/// data of its own, such as cached teacher logits.
pub fn mixed_loss(
    mix: &MixDraw,
    labels: Tensor<1, Int>,
    indices: &[usize],
    loss: impl Fn(Tensor<1, Int>, &[usize]) -> Tensor<1>,
) -> Tensor<1> {
    if *mix == MixDraw::None {
        return loss(labels, indices);
    }
    let flipped_indices: Vec<usize> = indices.iter().rev().copied().collect();
    let lambda = mix.lambda() as f64;
    loss(labels.clone(), indices).mul_scalar(lambda)
        + loss(labels.flip([0]), &flipped_indices).mul_scalar(1.0 - lambda)
}

/// Hooks that mix each batch before the wrapped hooks' loss.
pub struct Mixing<'a> {
    config: MixConfig,
    seed: u64,
    inner: &'a mut dyn TrainHooks,
}

impl<'a> Mixing<'a> {
    /// Mixes batches by `config` (seeded by `seed`) around `inner`.
    pub fn new(config: MixConfig, seed: u64, inner: &'a mut dyn TrainHooks) -> Self {
        Self {
            config,
            seed,
            inner,
        }
    }
}

impl TrainHooks for Mixing<'_> {
    fn describe(&self) -> serde_json::Value {
        // The mix settings are in the run's config already; the identity is the inner hooks'.
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
        let [_, _, h, w] = shard.images.dims();
        let mix = draw(&self.config, self.seed, shard.indices, [h, w]);
        if mix == MixDraw::None {
            return self.inner.forward_loss(model, shard, cross_entropy);
        }
        let images = mix_images(shard.images.clone(), &mix);
        let logits = model.forward(images.clone());
        let loss = mixed_loss(&mix, shard.labels, shard.indices, |labels, indices| {
            self.inner.loss(
                LossInputs {
                    logits: logits.clone(),
                    images: &images,
                    labels,
                    indices,
                },
                cross_entropy,
            )
        });
        (logits, loss)
    }

    fn before_step(&mut self, step: usize) {
        self.inner.before_step(step);
    }

    fn epoch_metrics(&mut self) -> std::collections::BTreeMap<String, f64> {
        self.inner.epoch_metrics()
    }

    fn after_step(&mut self, model: KeenModel, step: usize, total_steps: usize) -> KeenModel {
        self.inner.after_step(model, step, total_steps)
    }

    fn weight_average_updated(&mut self, average: &KeenModel) {
        self.inner.weight_average_updated(average);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::activation::log_softmax;
    use burn::tensor::Distribution;

    #[test]
    fn mixed_targets_sum_to_one() {
        let labels = [0i64, 3, 3, 1, 2];
        for lambda in [0.0f32, 0.3, 0.77, 1.0] {
            let targets = mixed_targets(&labels, 4, lambda);
            for row in targets.chunks(4) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "{row:?}");
            }
        }
        // The middle image of an odd batch is mixed with itself: a one-hot target.
        let middle = &mixed_targets(&labels, 4, 0.3)[2 * 4..3 * 4];
        assert_eq!(middle, &[0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn mixed_loss_equals_cross_entropy_against_mixed_soft_targets() {
        let device = Device::flex();
        for smoothing in [None, Some(0.1)] {
            let ce = CrossEntropyLossConfig::new()
                .with_smoothing(smoothing)
                .init(&device);
            let logits = Tensor::<2>::random([4, 5], Distribution::Normal(0.0, 2.0), &device);
            let labels = [1i64, 4, 0, 2];
            let label_tensor = Tensor::<1, Int>::from_ints(labels, &device);
            let lambda = 0.35f32;
            let linear = ce
                .forward(logits.clone(), label_tensor.clone())
                .mul_scalar(lambda as f64)
                + ce.forward(logits.clone(), label_tensor.flip([0]))
                    .mul_scalar(1.0 - lambda as f64);
            let eps = smoothing.unwrap_or(0.0);
            let soft: Vec<f32> = mixed_targets(&labels, 5, lambda)
                .iter()
                .map(|t| t * (1.0 - eps) + eps / 5.0)
                .collect();
            let soft = Tensor::<2>::from_data(TensorData::new(soft, [4, 5]), &device);
            let explicit = (soft * log_softmax(logits, 1)).sum().neg().div_scalar(4.0);
            let (a, b) = (linear.into_scalar::<f32>(), explicit.into_scalar::<f32>());
            assert!((a - b).abs() < 1e-5, "{a} vs {b} ({smoothing:?})");
        }
    }

    #[test]
    fn draws_are_seeded_and_in_range() {
        let config = MixConfig {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            ..MixConfig::default()
        };
        let indices = [5usize, 9, 2, 11];
        assert_eq!(
            draw(&config, 1, &indices, [28, 28]),
            draw(&config, 1, &indices, [28, 28])
        );
        let (mut mixups, mut cutmixes) = (0, 0);
        for batch in 0..400usize {
            match draw(&config, 1, &[batch, batch + 1], [28, 28]) {
                MixDraw::Mixup { lambda } => {
                    mixups += 1;
                    assert!((0.0..=1.0).contains(&lambda));
                }
                MixDraw::CutMix {
                    bbox: [top, left, h, w],
                    lambda,
                } => {
                    cutmixes += 1;
                    assert!(top + h <= 28 && left + w <= 28);
                    let expected = 1.0 - (h * w) as f32 / 784.0;
                    assert!((lambda - expected).abs() < 1e-6);
                }
                MixDraw::None => panic!("prob 1 mixes every batch"),
            }
        }
        // switch_prob 0.5: both kinds occur.
        assert!(mixups > 100 && cutmixes > 100, "{mixups} {cutmixes}");
        assert_eq!(
            draw(&MixConfig::default(), 1, &indices, [28, 28]),
            MixDraw::None
        );
    }

    #[test]
    fn cutmix_pastes_the_box_from_the_flipped_batch() {
        let device = Device::flex();
        let images = Tensor::<4>::cat(
            vec![
                Tensor::zeros([1, 1, 4, 4], &device),
                Tensor::ones([1, 1, 4, 4], &device),
            ],
            0,
        );
        let mix = MixDraw::CutMix {
            bbox: [1, 1, 2, 3],
            lambda: 1.0 - 6.0 / 16.0,
        };
        let out = mix_images(images, &mix)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        // The first image gets a box of six ones; the second a box of six zeros.
        assert_eq!(out[..16].iter().sum::<f32>(), 6.0);
        assert_eq!(out[16..].iter().sum::<f32>(), 10.0);
        assert_eq!(out[5], 1.0);
        assert_eq!(out[0], 0.0);
    }
}
