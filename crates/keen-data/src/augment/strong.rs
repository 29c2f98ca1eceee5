//! FixMatch's strong augmentation (Sohn et al. 2020, as in the reference PyTorch code
//! `RandAugmentMC`): `n` RandAugment ops, each applied with probability 1/2 at a magnitude
//! drawn uniformly from `1..=max_magnitude`, then Cutout of a square half the image's side.
//!
//! Random magnitudes (rather than RandAugment's fixed M) are what makes the view "strong" yet
//! sometimes mild: the model must give the same answer over the whole range.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::cutout::{cutout, CUTOUT_FILL};
use super::rand_augment::{apply_op, RandAugmentOp, MAX_MAGNITUDE};

/// Settings of the strong view.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrongAugment {
    /// RandAugment ops drawn per image (each applied with probability 1/2).
    pub ops: usize,
    /// Largest magnitude drawn, on RandAugment's `0..=10` scale.
    pub max_magnitude: u32,
    /// Side of the Cutout square as a fraction of the image's shorter side (0 = no Cutout).
    pub cutout_fraction: f32,
}

impl Default for StrongAugment {
    /// FixMatch's settings: 2 ops, magnitudes up to 10, Cutout of half the side.
    fn default() -> Self {
        Self {
            ops: 2,
            max_magnitude: 10,
            cutout_fraction: 0.5,
        }
    }
}

impl StrongAugment {
    /// Augments one CHW image of `shape`, returning a new image of the same shape.
    pub fn apply(&self, img: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        let ops = RandAugmentOp::for_channels(shape[0]);
        let max = self.max_magnitude.clamp(1, MAX_MAGNITUDE);
        let mut out = img.to_vec();
        for _ in 0..self.ops {
            // Every draw is made whether or not the op is applied, so streams stay aligned.
            let op = ops[rng.random_range(0..ops.len())];
            let magnitude = rng.random_range(1..=max) as f32;
            let negate = rng.random_bool(0.5);
            if rng.random_bool(0.5) {
                out = apply_op(op, magnitude, negate, &out, shape);
            }
        }
        let side = shape[1].min(shape[2]) as f32 * self.cutout_fraction.clamp(0.0, 1.0);
        cutout(&mut out, shape, side.round() as usize, CUTOUT_FILL, rng);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn strong_views_are_seeded_and_always_carry_a_cutout() {
        let shape = [1, 12, 12];
        let img: Vec<u8> = (0..144).map(|v| (v * 5 % 250) as u8 + 3).collect();
        let strong = StrongAugment::default();
        let view = |seed| strong.apply(&img, shape, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(view(4), view(4));
        assert_ne!(view(4), view(5));
        let none = StrongAugment { ops: 0, ..strong };
        for seed in 0..20 {
            let out = none.apply(&img, shape, &mut ChaCha8Rng::seed_from_u64(seed));
            let painted = out.iter().zip(&img).filter(|(a, b)| a != b).count();
            // A 6×6 square, clipped at the border to at least 3×3 (pixels already 127 stay).
            assert!((8..=36).contains(&painted), "seed {seed}: {painted}");
        }
    }
}
