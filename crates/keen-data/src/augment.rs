//! Training-time augmentation on `u8` CHW images of any channel count.
//!
//! The pipeline is the standard one for small images: random crop with zero padding,
//! then horizontal flip, then RandAugment. Every random draw comes from the generator
//! the caller passes, so the loader can make each sample's augmentation a pure function
//! of `(seed, epoch, position)`.

mod augmix;
mod cutout;
mod rand_augment;
mod strong;

pub use augmix::{AugMix, AUGMIX_OPS};
pub use cutout::{cutout, CUTOUT_FILL};
pub use rand_augment::{apply_op, RandAugment, RandAugmentOp, MAX_MAGNITUDE};
pub use strong::StrongAugment;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which augmentations to apply; the default is none.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AugmentConfig {
    /// Zero padding on every side before a random crop back to the original size;
    /// `0` turns random cropping off. CIFAR recipes use 4, 28x28 images 2 or 4.
    pub random_crop_padding: usize,
    /// Mirror left-right with probability 0.5. Off by default because it is wrong for
    /// digits and text.
    pub horizontal_flip: bool,
    /// RandAugment after crop and flip, if any.
    pub rand_augment: Option<RandAugment>,
}

impl AugmentConfig {
    /// No augmentation (evaluation, or training without it).
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether [`apply`](Self::apply) returns its input unchanged (lets the loader skip
    /// the copy and the random generator).
    pub fn is_identity(&self) -> bool {
        self.random_crop_padding == 0
            && !self.horizontal_flip
            && self.rand_augment.is_none_or(|ra| ra.n == 0)
    }

    /// Augments one CHW image of `shape = [C, H, W]`, returning a new image of the
    /// same shape.
    ///
    /// # Panics
    /// If `img.len() != C * H * W` (a caller bug: the dataset guarantees the length).
    pub fn apply(&self, img: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        assert_eq!(
            img.len(),
            shape.iter().product::<usize>(),
            "image length does not match shape {shape:?}"
        );
        let mut out = if self.random_crop_padding > 0 {
            random_crop(img, shape, self.random_crop_padding, rng)
        } else {
            img.to_vec()
        };
        if self.horizontal_flip && rng.random_bool(0.5) {
            flip_horizontal(&mut out, shape);
        }
        if let Some(ra) = &self.rand_augment {
            out = ra.apply(&out, shape, rng);
        }
        out
    }
}

/// Pads with `pad` zero pixels on each side and crops a random `H x W` window, without
/// materialising the padded image.
pub fn random_crop(img: &[u8], shape: [usize; 3], pad: usize, rng: &mut impl Rng) -> Vec<u8> {
    let [c, h, w] = shape;
    let ox = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let oy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let mut out = vec![0u8; img.len()];
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + oy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            // The overlapping x range of the source row, copied as one slice.
            let x_lo = (-ox).clamp(0, w as isize) as usize;
            let x_hi = (w as isize - ox).clamp(0, w as isize) as usize;
            if x_lo >= x_hi {
                continue;
            }
            let src_row = sy as usize * w;
            let s_lo = (x_lo as isize + ox) as usize;
            dst[y * w + x_lo..y * w + x_hi]
                .copy_from_slice(&plane[src_row + s_lo..src_row + s_lo + (x_hi - x_lo)]);
        }
    }
    out
}

/// Mirrors every row of every channel in place.
pub fn flip_horizontal(img: &mut [u8], shape: [usize; 3]) {
    let w = shape[2];
    if w == 0 {
        return;
    }
    for row in img.chunks_exact_mut(w) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(shape: [usize; 3]) -> Vec<u8> {
        (0..shape.iter().product::<usize>())
            .map(|v| (v * 7 % 251) as u8)
            .collect()
    }

    #[test]
    fn crop_sometimes_keeps_and_sometimes_shifts_the_image() {
        let shape = [2, 3, 4];
        let img = ramp(shape);
        let outs: Vec<Vec<u8>> = (0..64)
            .map(|seed| random_crop(&img, shape, 1, &mut ChaCha8Rng::seed_from_u64(seed)))
            .collect();
        assert!(outs.iter().all(|o| o.len() == img.len()));
        assert!(outs.contains(&img), "offset (0,0) never drawn");
        assert!(outs.iter().any(|o| *o != img), "never shifted");
    }

    #[test]
    fn crop_matches_a_padded_reference() {
        let shape = [1, 5, 6];
        let [_, h, w] = shape;
        let img = ramp(shape);
        let pad = 2;
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = random_crop(&img, shape, pad, &mut rng.clone());
            let ox = rng.random_range(0..=2 * pad);
            let oy = rng.random_range(0..=2 * pad);
            // Reference: build the padded image, then crop.
            let (pw, ph) = (w + 2 * pad, h + 2 * pad);
            let mut padded = vec![0u8; pw * ph];
            for y in 0..h {
                for x in 0..w {
                    padded[(y + pad) * pw + x + pad] = img[y * w + x];
                }
            }
            let reference: Vec<u8> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (y, x)))
                .map(|(y, x)| padded[(y + oy) * pw + x + ox])
                .collect();
            assert_eq!(out, reference, "seed {seed}");
        }
    }

    #[test]
    fn flip_twice_is_identity() {
        let shape = [3, 2, 5];
        let img = ramp(shape);
        let mut out = img.clone();
        flip_horizontal(&mut out, shape);
        assert_ne!(out, img);
        assert_eq!(&out[..5], &[img[4], img[3], img[2], img[1], img[0]]);
        flip_horizontal(&mut out, shape);
        assert_eq!(out, img);
    }

    #[test]
    fn identity_detection() {
        assert!(AugmentConfig::none().is_identity());
        let zero_ops = AugmentConfig {
            rand_augment: Some(RandAugment { n: 0, m: 9 }),
            ..AugmentConfig::none()
        };
        assert!(zero_ops.is_identity());
        let flip = AugmentConfig {
            horizontal_flip: true,
            ..AugmentConfig::none()
        };
        assert!(!flip.is_identity());
    }
}
