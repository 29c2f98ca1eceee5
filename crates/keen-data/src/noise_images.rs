//! Images of pure noise: the out-of-distribution sets every OOD benchmark adds because they
//! need no files and no model of the data (Hendrycks et al. 2019, "Outlier Exposure", §4).
//!
//! Each image has its own ChaCha generator keyed by `(seed, image index, kind)`, so image `i`
//! is the same whatever `n` is, and uniform and Gaussian sets of one seed are independent.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::corruptions::random::standard_normal;
use crate::dataset::ImageDataset;

/// How each pixel is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseKind {
    /// Every 8-bit value equally likely.
    Uniform,
    /// `N(0.5, std²)` in `[0, 1]` pixel units, clipped to `[0, 1]`; Outlier Exposure uses
    /// `std = 1`, which leaves about a third of the pixels black and a third white.
    Gaussian {
        /// Standard deviation in `[0, 1]` pixel units.
        std: f32,
    },
}

impl NoiseKind {
    /// A short name for reports: `uniform-noise`, `gaussian-noise`.
    pub fn name(&self) -> &'static str {
        match self {
            NoiseKind::Uniform => "uniform-noise",
            NoiseKind::Gaussian { .. } => "gaussian-noise",
        }
    }
}

/// `n` noise images of `[channels, height, width]`, all labelled 0 (one class, `noise`): their
/// labels mean nothing, they exist to be rejected.
pub fn noise_dataset(kind: NoiseKind, n: usize, shape: [usize; 3], seed: u64) -> ImageDataset {
    let image_len: usize = shape.iter().product();
    let stream = match kind {
        NoiseKind::Uniform => 0x756e_6966_6f72_6d21,
        NoiseKind::Gaussian { .. } => 0x6761_7573_7369_616e,
    };
    let mut images = Vec::with_capacity(n * image_len);
    for index in 0..n {
        let mut key = [0u8; 32];
        for (chunk, part) in key.chunks_exact_mut(8).zip([seed, index as u64, stream, 0]) {
            chunk.copy_from_slice(&part.to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        images.extend((0..image_len).map(|_| match kind {
            NoiseKind::Uniform => rng.random::<u8>(),
            NoiseKind::Gaussian { std } => {
                let value = 0.5 + std * standard_normal(&mut rng);
                (value.clamp(0.0, 1.0) * 255.0).round() as u8
            }
        }));
    }
    ImageDataset {
        name: kind.name().into(),
        images,
        labels: vec![0; n],
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        class_names: vec!["noise".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_images_and_prefixes_are_stable() {
        let gaussian = NoiseKind::Gaussian { std: 1.0 };
        let a = noise_dataset(gaussian, 5, [1, 4, 4], 3);
        assert_eq!(a, noise_dataset(gaussian, 5, [1, 4, 4], 3));
        // Image i does not depend on how many images were asked for.
        let longer = noise_dataset(gaussian, 8, [1, 4, 4], 3);
        assert_eq!(a.images[..], longer.images[..a.images.len()]);
        assert_ne!(a.images, noise_dataset(gaussian, 5, [1, 4, 4], 4).images);
        let uniform = noise_dataset(NoiseKind::Uniform, 5, [1, 4, 4], 3);
        assert_ne!(a.images, uniform.images);
        assert_eq!((a.len(), a.image_shape()), (5, [1, 4, 4]));
        assert_eq!(a.name, "gaussian-noise");
    }

    #[test]
    fn pixel_statistics_match_the_distributions() {
        let uniform = noise_dataset(NoiseKind::Uniform, 50, [3, 8, 8], 0);
        let mean = |d: &ImageDataset| {
            d.images.iter().map(|&v| v as f64).sum::<f64>() / d.images.len() as f64
        };
        assert!((mean(&uniform) - 127.5).abs() < 5.0, "{}", mean(&uniform));
        // N(0.5, 1) clipped: P(x ≤ 0) = Φ(−0.5) ≈ 0.31 of the pixels are black.
        let gaussian = noise_dataset(NoiseKind::Gaussian { std: 1.0 }, 50, [3, 8, 8], 0);
        let black = gaussian.images.iter().filter(|&&v| v == 0).count() as f64
            / gaussian.images.len() as f64;
        assert!((black - 0.31).abs() < 0.03, "{black}");
        assert!((mean(&gaussian) - 127.5).abs() < 6.0, "{}", mean(&gaussian));
    }
}
