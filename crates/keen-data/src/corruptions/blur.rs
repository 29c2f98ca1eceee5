//! Blur corruptions: defocus (disk kernel), glass (blur, local pixel shuffling, blur),
//! motion (a one-sided streak at a random angle) and zoom (mean of centre zooms).
//!
//! Pixel lengths (radii, sigmas, shuffle distances) are scaled by
//! [`Setting::pixel_scale`]. "Change" figures are mean absolute differences in `u8`
//! levels on the test images of `corruptions/tests.rs` (CIFAR-10-C table), severities 1→5;
//! blur changes depend on how much fine detail an image has, so they are indicative.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::float_image::Border;
use super::kernels::{centre_zoom, filter2d, gaussian_blur, motion_blur_plane, Kernel2d};
use super::random::uniform;
use super::{CorruptionError, FloatImage, Setting};

/// Defocus blur: convolution with an anti-aliased disk of radius `r` (OpenCV
/// `filter2D`, mirrored border).
///
/// (radius, anti-alias σ) in pixels by severity: CIFAR-10-C (0.3, 0.4), (0.4, 0.5),
/// (0.5, 0.6), (1, 0.2), (1.5, 0.1); ImageNet-C (3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5),
/// (10, 0.5). The CIFAR radii below 1 leave only the anti-alias Gaussian, so severities
/// 1–3 are mild 3×3 smoothings. Change ≈ 1, 3, 5, 6, 9 levels.
pub fn defocus_blur(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (radius, alias_sigma) = setting.pick(
        &[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],
        &[(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)],
    );
    let kernel = disk_kernel(
        radius * setting.pixel_scale,
        alias_sigma * setting.pixel_scale,
    );
    let (h, w) = (image.height, image.width);
    Ok(image.map_planes(|p| filter2d(p, h, w, &kernel, Border::Reflect101)))
}

/// A normalised disk of `radius` smoothed by a 3-tap (5-tap above radius 8) Gaussian of
/// `alias_sigma`, as the reference's `disk()` builds it.
fn disk_kernel(radius: f32, alias_sigma: f32) -> Kernel2d {
    let alias_half = if radius <= 8.0 { 1 } else { 2 };
    let disk_half = radius.ceil().max(0.0) as usize;
    let half = disk_half + alias_half;
    let side = 2 * half + 1;
    let mut disk = vec![0.0f32; side * side];
    for (i, d) in disk.iter_mut().enumerate() {
        let (y, x) = (
            (i / side) as f32 - half as f32,
            (i % side) as f32 - half as f32,
        );
        if x * x + y * y <= radius * radius {
            *d = 1.0;
        }
    }
    // OpenCV's GaussianBlur with a fixed kernel size: taps exp(-x²/2σ²) over the size.
    let taps: Vec<f32> = {
        let sigma = alias_sigma.max(1e-3);
        let raw: Vec<f32> = (-(alias_half as isize)..=alias_half as isize)
            .map(|x| (-0.5 * (x as f32 / sigma).powi(2)).exp())
            .collect();
        let sum: f32 = raw.iter().sum();
        raw.iter().map(|t| t / sum).collect()
    };
    let mut weights = vec![0.0f32; side * side];
    let a = alias_half as isize;
    for y in 0..side as isize {
        for x in 0..side as isize {
            let mut acc = 0.0;
            for (ky, ty) in taps.iter().enumerate() {
                for (kx, tx) in taps.iter().enumerate() {
                    let (sy, sx) = (y + ky as isize - a, x + kx as isize - a);
                    if (0..side as isize).contains(&sy) && (0..side as isize).contains(&sx) {
                        acc += ty * tx * disk[sy as usize * side + sx as usize];
                    }
                }
            }
            weights[y as usize * side + x as usize] = acc;
        }
    }
    let sum: f32 = weights.iter().sum();
    Kernel2d {
        side,
        weights: weights.iter().map(|v| v / sum).collect(),
    }
}

/// Glass blur: Gaussian blur, then every pixel swapped with a random neighbour up to
/// `δ` away (several passes), then Gaussian blur again — frosted-glass distortion.
///
/// (σ, δ, passes) by severity: CIFAR-10-C (0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1),
/// (0.25, 1, 2), (0.4, 1, 2); ImageNet-C (0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2),
/// (1.5, 4, 2). The CIFAR table is not monotone in σ: severity 4 blurs less than 3 but
/// shuffles twice, and more blur at the same shuffling smooths shuffled pixels back, so
/// the change is not monotone (a documented exception of the CIFAR-10-C table):
/// ≈ 19, 19, 17, 25, 23 levels.
pub fn glass_blur(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (sigma, delta, passes) = setting.pick(
        &[
            (0.05, 1, 1),
            (0.25, 1, 1),
            (0.4, 1, 1),
            (0.25, 1, 2),
            (0.4, 1, 2),
        ],
        &[
            (0.7, 1, 2),
            (0.9, 2, 1),
            (1.0, 2, 3),
            (1.1, 3, 2),
            (1.5, 4, 2),
        ],
    );
    let sigma = sigma * setting.pixel_scale;
    let delta = ((delta as f32 * setting.pixel_scale).round() as isize).max(1);
    let (h, w) = (image.height, image.width);
    let blur =
        |img: &FloatImage| img.map_planes(|p| gaussian_blur(p, h, w, sigma, 4.0, Border::Nearest));
    // The reference stores the first blur as 8-bit before shuffling.
    let mut shuffled = blur(image).quantized();
    let plane_len = image.plane_len();
    for _ in 0..passes {
        // Rows and columns from the far edge down to δ+1, as the reference loops, so
        // every swap partner stays inside the image.
        for y in (delta + 1..=h as isize - delta).rev() {
            for x in (delta + 1..=w as isize - delta).rev() {
                let dx = rng.random_range(-delta as i64..delta as i64) as isize;
                let dy = rng.random_range(-delta as i64..delta as i64) as isize;
                let (a, b) = (
                    y as usize * w + x as usize,
                    (y + dy) as usize * w + (x + dx) as usize,
                );
                for c in 0..image.channels {
                    shuffled.data.swap(c * plane_len + a, c * plane_len + b);
                }
            }
        }
    }
    Ok(blur(&shuffled))
}

/// Motion blur: ImageMagick's one-sided Gaussian streak of `2·ceil(radius) + 1` taps and
/// weight σ, at an angle drawn uniformly in `[-45°, 45°]`.
///
/// (radius, σ) in pixels by severity: CIFAR-10-C (6, 1), (6, 1.5), (6, 2), (8, 2),
/// (9, 2.5); ImageNet-C (10, 3), (15, 5), (15, 8), (15, 12), (20, 15). σ sets the
/// effective streak length. Change ≈ 8, 12, 16, 16, 19 levels.
pub fn motion_blur(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (radius, sigma) = setting.pick(
        &[(6.0, 1.0), (6.0, 1.5), (6.0, 2.0), (8.0, 2.0), (9.0, 2.5)],
        &[
            (10.0, 3.0),
            (15.0, 5.0),
            (15.0, 8.0),
            (15.0, 12.0),
            (20.0, 15.0),
        ],
    );
    let angle = uniform(rng, -45.0, 45.0);
    let (s, h, w) = (setting.pixel_scale, image.height, image.width);
    Ok(image.map_planes(|p| motion_blur_plane(p, h, w, radius * s, sigma * s, angle)))
}

/// Zoom blur: the mean of the image and of its centre zoomed by each factor
/// `1, 1 + step, …` (`count` factors), like a camera zooming during exposure.
///
/// (step, count) by severity: CIFAR-10-C (0.01, 6), (0.01, 11), (0.01, 16), (0.01, 21),
/// (0.01, 26), i.e. up to ×1.05…×1.25; ImageNet-C (0.01, 11), (0.01, 16), (0.02, 11),
/// (0.02, 13), (0.03, 11), i.e. up to ×1.10…×1.30. Zoom factors are relative to the
/// image, so they need no scaling. Change ≈ 4, 8, 12, 15, 19 levels.
pub fn zoom_blur(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (step, count) = setting.pick(
        &[(0.01, 6), (0.01, 11), (0.01, 16), (0.01, 21), (0.01, 26)],
        &[(0.01, 11), (0.01, 16), (0.02, 11), (0.02, 13), (0.03, 11)],
    );
    let (h, w) = (image.height, image.width);
    Ok(image.map_planes(|p| {
        let mut sum = p.to_vec();
        for k in 0..count {
            let zoomed = centre_zoom(p, h, w, 1.0 + step * k as f32);
            sum.iter_mut().zip(zoomed).for_each(|(s, z)| *s += z);
        }
        sum.iter().map(|s| s / (count + 1) as f32).collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_kernels_are_normalised_and_grow_with_radius() {
        let small = disk_kernel(0.3, 0.4);
        assert_eq!(small.side, 5);
        let big = disk_kernel(10.0, 0.5);
        assert_eq!(big.side, 25);
        for k in [&small, &big] {
            assert!((k.weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert!(small.weights[small.side * 2 + 2] > big.weights[big.side * 12 + 12]);
    }
}
