//! AugMix consistency training (Hendrycks et al., ICLR 2020), as [`TrainHooks`].
//!
//! Every training image goes through the model three times in one batch: as the loader made it
//! (crop, flip, …) and as two AugMix views of that same image. The loss is cross-entropy on the
//! first plus λ times the Jensen–Shannon divergence among the three predictions:
//!
//! `loss = CE(p_clean, y) + λ · (KL(p_clean ‖ M) + KL(p_aug1 ‖ M) + KL(p_aug2 ‖ M)) / 3`,
//! `M = (p_clean + p_aug1 + p_aug2) / 3`, with the paper's λ = 12.
//!
//! The divergence asks the model to predict the same thing whatever AugMix did, which is what
//! makes the model stable under corruptions it never saw. The views are drawn from a generator
//! keyed by the run's seed, the optimizer step and the image's dataset position, so a resumed
//! run sees the views an uninterrupted run would.

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use keen_data::augment::AugMix;
use keen_data::loader::{sample_rng, Normalization};
use keen_models::{ImageClassifier, KeenModel};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hooks::{ShardInputs, TrainHooks};
use crate::tensors::{images_tensor, to_f32_vec};
use crate::TrainError;

/// Keeps the views' generators apart from the loader's, which share the seed.
const VIEW_STREAM: u64 = 0xa06_417;

/// AugMix consistency settings (stored with the run: `--resume` refuses others).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugMixConsistency {
    /// How the two views are made.
    pub augmix: AugMix,
    /// Weight of the Jensen–Shannon term (λ; the paper's 12).
    pub lambda: f32,
}

impl Default for AugMixConsistency {
    fn default() -> Self {
        Self {
            augmix: AugMix::default(),
            lambda: 12.0,
        }
    }
}

impl AugMixConsistency {
    /// Checks λ and the AugMix settings.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(TrainError::BadConfig(format!(
                "the AugMix consistency weight must be non-negative, got {}",
                self.lambda
            )));
        }
        if self.augmix.width == 0 || !(self.augmix.alpha.is_finite() && self.augmix.alpha > 0.0) {
            return Err(TrainError::BadConfig(
                "AugMix needs at least one chain and a positive alpha".into(),
            ));
        }
        Ok(())
    }
}

/// The Jensen–Shannon divergence among the softmax predictions of `logits` (each
/// `[n, classes]`), averaged over the images, shape `[1]`. The mixture is clamped away from 0
/// before its log, as in the reference code.
pub fn jensen_shannon(logits: &[Tensor<2>]) -> Tensor<1> {
    let k = logits.len() as f32;
    let n = logits[0].dims()[0] as f32;
    let probs: Vec<Tensor<2>> = logits.iter().map(|l| softmax(l.clone(), 1)).collect();
    let log_probs: Vec<Tensor<2>> = logits.iter().map(|l| log_softmax(l.clone(), 1)).collect();
    let mixture = probs
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .expect("at least one prediction")
        .div_scalar(k);
    let log_mixture = mixture.clamp(1e-7, 1.0).log();
    let total = probs
        .into_iter()
        .zip(log_probs)
        .map(|(p, log_p)| (p * (log_p - log_mixture.clone())).sum())
        .reduce(|a, b| a + b)
        .expect("at least one prediction");
    total.div_scalar(k * n)
}

/// The hooks: two AugMix views per image and the consistency loss.
pub struct AugMixTraining {
    config: AugMixConsistency,
    normalization: Normalization,
    shape: [usize; 3],
    seed: u64,
    step: usize,
}

impl AugMixTraining {
    /// Hooks for a run on images of `shape` normalised by `normalization`.
    pub fn new(
        config: AugMixConsistency,
        normalization: Normalization,
        shape: [usize; 3],
        seed: u64,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            normalization,
            shape,
            seed,
            step: 0,
        })
    }

    /// The two views of every image of the normalised batch `images`, as one normalised batch
    /// `[2n, c, h, w]`: first views of all images, then second views.
    pub fn views(&self, images: &Tensor<4>, indices: &[usize]) -> Tensor<4> {
        let [n, c, h, w] = images.dims();
        let plane = c * h * w;
        let values = to_f32_vec(images.clone());
        let make = |(i, normalized): (usize, &[f32])| {
            let mut pixels = vec![0u8; plane];
            self.normalization.invert(normalized, &mut pixels);
            let mut rng = sample_rng(self.seed ^ VIEW_STREAM, self.step, indices[i]);
            let mut out = vec![0f32; 2 * plane];
            for half in out.chunks_exact_mut(plane) {
                let view = self.config.augmix.apply(&pixels, self.shape, &mut rng);
                self.normalization.apply(&view, half);
            }
            out
        };
        let pairs: Vec<Vec<f32>> = values
            .par_chunks_exact(plane)
            .enumerate()
            .map(make)
            .collect();
        let mut batch = vec![0f32; 2 * n * plane];
        for (i, pair) in pairs.iter().enumerate() {
            batch[i * plane..(i + 1) * plane].copy_from_slice(&pair[..plane]);
            batch[(n + i) * plane..(n + i + 1) * plane].copy_from_slice(&pair[plane..]);
        }
        images_tensor(batch, [2 * n, c, h, w], &images.device())
    }
}

impl TrainHooks for AugMixTraining {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "augmix_consistency": self.config })
    }

    fn before_step(&mut self, step: usize) {
        self.step = step;
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let n = shard.images.dims()[0];
        let views = self.views(shard.images, shard.indices);
        // One batch of 3n images, as the reference code does: batch norm sees all three.
        let logits = model.forward(Tensor::cat(vec![shard.images.clone(), views], 0));
        let clean = logits.clone().narrow(0, 0, n);
        let first = logits.clone().narrow(0, n, n);
        let second = logits.narrow(0, 2 * n, n);
        let loss = cross_entropy.forward(clean.clone(), shard.labels)
            + jensen_shannon(&[clean.clone(), first, second]).mul_scalar(self.config.lambda);
        (clean, loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensors::{images_tensor, to_f32_vec};
    use burn::tensor::TensorData;

    fn logits(values: &[f32], n: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [n, values.len() / n]),
            device,
        )
    }

    #[test]
    fn jensen_shannon_matches_a_hand_computation() {
        let device = Device::flex();
        // One image, two classes: p = (0.5, 0.5) and q = (e/(1+e), 1/(1+e)).
        let a = logits(&[0.0, 0.0], 1, &device);
        let b = logits(&[1.0, 0.0], 1, &device);
        let q0 = std::f64::consts::E / (1.0 + std::f64::consts::E);
        let p = [0.5, 0.5];
        let q = [q0, 1.0 - q0];
        let m = [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
        let kl = |x: [f64; 2]| (0..2).map(|i| x[i] * (x[i] / m[i]).ln()).sum::<f64>();
        let expected = (kl(p) + kl(q)) / 2.0;
        let got = to_f32_vec(jensen_shannon(&[a.clone(), b]))[0] as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        // Identical predictions do not diverge.
        let same = to_f32_vec(jensen_shannon(&[a.clone(), a.clone(), a]))[0];
        assert!(same.abs() < 1e-6, "{same}");
    }

    #[test]
    fn views_are_deterministic_per_step_and_image() {
        let device = Device::flex();
        let normalization = Normalization {
            mean: vec![0.3],
            std: vec![0.35],
        };
        let shape = [1, 28, 28];
        let pixels: Vec<u8> = (0..2 * 784).map(|i| ((i * 31) % 256) as u8).collect();
        let mut normalized = vec![0f32; pixels.len()];
        for (src, dst) in pixels.chunks(784).zip(normalized.chunks_mut(784)) {
            normalization.apply(src, dst);
        }
        let images = images_tensor(normalized, [2, 1, 28, 28], &device);
        let mut hooks =
            AugMixTraining::new(AugMixConsistency::default(), normalization, shape, 7).unwrap();
        let a = to_f32_vec(hooks.views(&images, &[10, 11]));
        let b = to_f32_vec(hooks.views(&images, &[10, 11]));
        assert_eq!(a.len(), 4 * 784);
        assert_eq!(a, b);
        // The image at position 10 gets the same views whatever batch it sits in.
        let alone = to_f32_vec(hooks.views(&images.clone().narrow(0, 0, 1), &[10]));
        assert_eq!(&alone[..784], &a[..784]);
        assert_eq!(&alone[784..], &a[2 * 784..3 * 784]);
        // Another step draws other views.
        hooks.before_step(1);
        let c = to_f32_vec(hooks.views(&images, &[10, 11]));
        assert_ne!(a, c);
    }

    #[test]
    fn bad_settings_are_errors() {
        let bad = AugMixConsistency {
            lambda: -1.0,
            ..AugMixConsistency::default()
        };
        assert!(bad.validate().is_err());
        assert!(AugMixConsistency::default().validate().is_ok());
    }
}
