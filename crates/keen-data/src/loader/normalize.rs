//! Per-channel normalization from `u8` pixels to model inputs.

use serde::{Deserialize, Serialize};

use crate::dataset::ImageDataset;

/// Per-channel `(x / 255 - mean) / std`, with `mean` and `std` in `[0, 1]` units.
///
/// Serializable so a checkpoint can carry the exact statistics its model was trained
/// with; inference must use those, not statistics refitted on other data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel, in `[0, 1]` units.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel, in `[0, 1]` units; never 0.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean and standard deviation of every channel over the whole dataset.
    pub fn fit(ds: &ImageDataset) -> Self {
        Self::fit_images(ds, 0..ds.len())
    }

    /// Statistics over the images at `indices` only, e.g. the training split, so the
    /// validation images do not leak into preprocessing.
    pub fn fit_subset(ds: &ImageDataset, indices: &[usize]) -> Self {
        Self::fit_images(ds, indices.iter().copied())
    }

    fn fit_images(ds: &ImageDataset, indices: impl Iterator<Item = usize>) -> Self {
        let c = ds.channels;
        let plane = ds.height * ds.width;
        // Integer sums are exact (u64 holds 255^2 x 2^40 pixels of squares), so
        // large datasets lose no precision the way f32 running sums would.
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        let mut count = 0u64;
        for i in indices {
            let img = ds.image(i);
            for ch in 0..c {
                for &v in &img[ch * plane..(ch + 1) * plane] {
                    sum[ch] += v as u64;
                    sum_sq[ch] += (v as u64) * (v as u64);
                }
            }
            count += plane as u64;
        }
        if count == 0 {
            return Self::identity(c);
        }
        let n = count as f64;
        let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / n / 255.0).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(&sq, &m)| {
                let var = (sq as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
                // A constant channel carries no signal; dividing by 1 keeps it finite.
                if var.sqrt() < 1e-6 {
                    1.0
                } else {
                    var.sqrt() as f32
                }
            })
            .collect();
        Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Scaling to `[0, 1]` only: mean 0, std 1 for each of `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Values per channel plane of an image of `len` values written to `out_len` values.
    ///
    /// # Panics
    /// If the lengths differ or `len` is not a multiple of the channel count (`what` names the
    /// caller in the message).
    fn plane_len(&self, what: &str, len: usize, out_len: usize) -> usize {
        assert_eq!(len, out_len, "{what}: input and output lengths differ");
        let c = self.mean.len();
        let plane = len.checked_div(c).unwrap_or(0);
        assert!(
            c > 0 && plane * c == len,
            "{what}: {len} values do not split into {c} channels"
        );
        plane
    }

    /// The inverse of [`Self::apply`]: normalized CHW values back to `u8` pixels (rounded and
    /// clamped), for augmentations that run on batches the loader already normalized.
    ///
    /// # Panics
    /// If `out.len() != normalized.len()` or the length is not a multiple of the channel count.
    pub fn invert(&self, normalized: &[f32], out: &mut [u8]) {
        let plane = self.plane_len("invert", normalized.len(), out.len());
        if plane == 0 {
            return;
        }
        for (ch, (src, dst)) in normalized
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let (scale, shift) = (255.0 * self.std[ch], 255.0 * self.mean[ch]);
            for (s, d) in src.iter().zip(dst) {
                *d = (s * scale + shift).round().clamp(0.0, 255.0) as u8;
            }
        }
    }

    /// Normalizes one CHW image into `out` (same length).
    ///
    /// # Panics
    /// If `out.len() != img.len()` or the length is not a multiple of the channel count.
    pub fn apply(&self, img: &[u8], out: &mut [f32]) {
        let plane = self.plane_len("normalize", img.len(), out.len());
        if plane == 0 {
            return;
        }
        for (ch, (src, dst)) in img
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            // One multiply-add per pixel: x * (1 / (255 std)) - mean / std.
            let scale = 1.0 / (255.0 * self.std[ch]);
            let shift = self.mean[ch] / self.std[ch];
            for (s, d) in src.iter().zip(dst) {
                *d = *s as f32 * scale - shift;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_channel() -> ImageDataset {
        // Channel 0 alternates 0/255 (mean 0.5, std 0.5); channel 1 is constant 51.
        ImageDataset {
            name: "t".into(),
            images: vec![0, 255, 51, 51, 255, 0, 51, 51],
            labels: vec![0, 0],
            channels: 2,
            height: 1,
            width: 2,
            class_names: vec!["a".into()],
        }
    }

    #[test]
    fn fit_computes_per_channel_statistics() {
        let n = Normalization::fit(&two_channel());
        assert!(
            (n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6,
            "{n:?}"
        );
        assert!((n.mean[1] - 0.2).abs() < 1e-6, "{n:?}");
        assert_eq!(n.std[1], 1.0, "constant channel gets std 1");
        let sub = Normalization::fit_subset(&two_channel(), &[]);
        assert_eq!(sub, Normalization::identity(2));
    }

    #[test]
    fn apply_standardizes() {
        let ds = two_channel();
        let n = Normalization::fit(&ds);
        let mut out = vec![0f32; 4];
        n.apply(ds.image(0), &mut out);
        let expected = [-1.0, 1.0, 0.0, 0.0];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-5, "{out:?}");
        }
        Normalization::identity(1).apply(&[0, 255], &mut out[..2]);
        assert_eq!(&out[..2], &[0.0, 1.0]);
    }

    #[test]
    fn invert_recovers_every_pixel_value() {
        let n = Normalization {
            mean: vec![0.2861, 0.5],
            std: vec![0.3530, 0.01],
        };
        let img: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut normalized = vec![0f32; img.len()];
        n.apply(&img, &mut normalized);
        let mut back = vec![0u8; img.len()];
        n.invert(&normalized, &mut back);
        assert_eq!(back, img);
    }
}
