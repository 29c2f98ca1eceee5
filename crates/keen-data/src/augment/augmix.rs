//! AugMix (Hendrycks et al., ICLR 2020) on `u8` CHW images.
//!
//! `width` chains of 1–3 random ops (or `depth` each) are applied to the image, their results
//! blended with Dirichlet(α) weights, and the blend mixed back into the original with a Beta(α, α)
//! weight: `x_augmix = (1 − m)·x + m·Σ_i w_i·chain_i(x)`. The blend stays close to the image, which
//! is what lets a consistency loss (Jensen–Shannon divergence between the predictions on the image
//! and on two AugMix views) train invariance without drifting off the data.
//!
//! The ops are the paper's: the RandAugment ops that do not overlap with the corruptions keen
//! evaluates against (contrast, brightness, sharpness and colour are left out, as in the paper,
//! so an mCE measured afterwards is not a test on the training augmentations). Each op draws its
//! magnitude uniformly from `[0.1, severity]` on the `0..=10` scale, as the reference code does.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::rand_augment::{apply_op, RandAugmentOp, MAX_MAGNITUDE};
use crate::sampling::{beta, dirichlet};

/// AugMix's settings; the default is the paper's.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct AugMix {
    /// Largest op magnitude on the `0..=10` scale (the paper's severity, 3).
    pub severity: u32,
    /// Augmentation chains blended together (3).
    pub width: usize,
    /// Ops per chain; `None` draws 1–3 per chain (the paper's default).
    pub depth: Option<usize>,
    /// Dirichlet and Beta parameter of the blend weights (1).
    pub alpha: f64,
}

impl Default for AugMix {
    fn default() -> Self {
        Self {
            severity: 3,
            width: 3,
            depth: None,
            alpha: 1.0,
        }
    }
}

/// The ops AugMix draws from.
pub const AUGMIX_OPS: [RandAugmentOp; 9] = [
    RandAugmentOp::AutoContrast,
    RandAugmentOp::Equalize,
    RandAugmentOp::Posterize,
    RandAugmentOp::Rotate,
    RandAugmentOp::Solarize,
    RandAugmentOp::ShearX,
    RandAugmentOp::ShearY,
    RandAugmentOp::TranslateX,
    RandAugmentOp::TranslateY,
];

impl AugMix {
    /// One AugMix view of the CHW image `img` of `shape = [C, H, W]`.
    pub fn apply(&self, img: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        let width = self.width.max(1);
        let weights = dirichlet(rng, self.alpha, width);
        let m = beta(rng, self.alpha) as f32;
        let severity = self.severity.clamp(1, MAX_MAGNITUDE) as f32;
        let mut mix = vec![0f32; img.len()];
        for &weight in &weights {
            let depth = self.depth.unwrap_or_else(|| rng.random_range(1..=3));
            let mut chain = img.to_vec();
            for _ in 0..depth {
                let op = AUGMIX_OPS[rng.random_range(0..AUGMIX_OPS.len())];
                let magnitude = rng.random_range(0.1..=severity);
                let negate = rng.random_bool(0.5);
                chain = apply_op(op, magnitude, negate, &chain, shape);
            }
            for (acc, &v) in mix.iter_mut().zip(&chain) {
                *acc += weight as f32 * v as f32;
            }
        }
        img.iter()
            .zip(&mix)
            .map(|(&x, &blend)| ((1.0 - m) * x as f32 + m * blend).round().clamp(0.0, 255.0) as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn test_image() -> Vec<u8> {
        (0..28 * 28).map(|i| ((i * 37) % 251) as u8).collect()
    }

    #[test]
    fn is_deterministic_by_seed_and_changes_the_image() {
        let img = test_image();
        let augmix = AugMix::default();
        let a = augmix.apply(&img, [1, 28, 28], &mut ChaCha8Rng::seed_from_u64(7));
        let b = augmix.apply(&img, [1, 28, 28], &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_eq!(a.len(), img.len());
        let changed = (0..20u64)
            .filter(|&seed| {
                augmix.apply(&img, [1, 28, 28], &mut ChaCha8Rng::seed_from_u64(seed)) != img
            })
            .count();
        assert!(
            changed >= 18,
            "only {changed} of 20 views differ from the image"
        );
    }

    /// Mean absolute pixel change of 50 views.
    fn mean_change(augmix: &AugMix, img: &[u8], shape: [usize; 3]) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let total: f64 = (0..50)
            .map(|_| {
                let view = augmix.apply(img, shape, &mut rng);
                view.iter()
                    .zip(img)
                    .map(|(&a, &b)| (a as f64 - b as f64).abs())
                    .sum::<f64>()
                    / img.len() as f64
            })
            .sum();
        total / 50.0
    }

    #[test]
    fn higher_severity_moves_the_views_further_from_the_image() {
        let img = test_image();
        let shape = [1, 28, 28];
        let at = |severity| {
            let augmix = AugMix {
                severity,
                ..AugMix::default()
            };
            mean_change(&augmix, &img, shape)
        };
        let (mild, strong) = (at(1), at(10));
        assert!(mild > 0.0 && mild < strong, "{mild} vs {strong}");
    }

    #[test]
    fn uses_no_op_that_a_corruption_benchmark_tests() {
        for op in AUGMIX_OPS {
            assert!(!matches!(
                op,
                RandAugmentOp::Contrast
                    | RandAugmentOp::Brightness
                    | RandAugmentOp::Sharpness
                    | RandAugmentOp::Color
            ));
        }
    }
}
