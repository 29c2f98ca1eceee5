//! Weather corruptions: snow, frost, fog and brightness.
//!
//! "Change" figures are mean absolute differences in `u8` levels on the test images of
//! `corruptions/tests.rs` (CIFAR-10-C table), severities 1→5. Weather adds light, so its
//! change depends strongly on how dark the image is: dark images (MNIST) change more.

use rand_chacha::ChaCha8Rng;

use super::kernels::{centre_zoom, motion_blur_plane};
use super::random::{standard_normal, uniform};
use super::textures::{frost_texture, plasma_crop, rotate_180, FROST_TINT};
use super::{CorruptionError, FloatImage, Setting};

/// One row of the snow table; see [`snow`].
#[derive(Clone, Copy)]
struct SnowParams {
    mean: f32,
    spread: f32,
    flake_zoom: f32,
    threshold: f32,
    streak_radius: f32,
    streak_sigma: f32,
    keep: f32,
}

const fn snow_row(p: [f32; 7]) -> SnowParams {
    SnowParams {
        mean: p[0],
        spread: p[1],
        flake_zoom: p[2],
        threshold: p[3],
        streak_radius: p[4],
        streak_sigma: p[5],
        keep: p[6],
    }
}

const SNOW_CIFAR: [SnowParams; 5] = [
    snow_row([0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95]),
    snow_row([0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9]),
    snow_row([0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9]),
    snow_row([0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85]),
    snow_row([0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8]),
];

const SNOW_IMAGENET: [SnowParams; 5] = [
    snow_row([0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8]),
    snow_row([0.2, 0.3, 2.0, 0.5, 12.0, 4.0, 0.7]),
    snow_row([0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7]),
    snow_row([0.55, 0.3, 4.5, 0.85, 12.0, 8.0, 0.65]),
    snow_row([0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55]),
];

/// Snow: a layer of Gaussian noise (mean, spread) is magnified (flake size), thresholded
/// into sparse flakes, streaked by motion blur at an angle in `[-135°, -45°]`, and added
/// twice (as is and rotated 180°) over the image, which is first washed toward white
/// (`keep·x + (1 − keep)·max(x, 1.5·gray + 0.5)`).
///
/// Rows (mean, spread, zoom, threshold, streak radius, streak σ, keep), CIFAR-10-C:
/// (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
/// (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
/// (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8); ImageNet-C: (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
/// (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
/// (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55).
/// Zoom and streak lengths scale with the image. Change ≈ 9, 22, 22, 35, 46 levels: not
/// monotone from 2 to 3, where the table raises the flake threshold while enlarging
/// flakes (ImageNet-C's severity 3 likewise has fewer, larger flakes than 2).
pub fn snow(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let p = setting.pick(&SNOW_CIFAR, &SNOW_IMAGENET);
    let (h, w, s) = (image.height, image.width, setting.pixel_scale);
    let noise: Vec<f32> = (0..h * w)
        .map(|_| p.mean + p.spread * standard_normal(rng))
        .collect();
    let zoom = (p.flake_zoom * s).max(1.0);
    let flakes: Vec<f32> = centre_zoom(&noise, h, w, zoom)
        .into_iter()
        .map(|v| if v < p.threshold { 0.0 } else { quantize(v) })
        .collect();
    let angle = uniform(rng, -135.0, -45.0);
    let streaks: Vec<f32> = motion_blur_plane(
        &flakes,
        h,
        w,
        p.streak_radius * s,
        p.streak_sigma * s,
        angle,
    )
    .into_iter()
    .map(quantize)
    .collect();
    let streaks_rotated = rotate_180(&streaks);
    let gray = image.luminance();
    let plane_len = image.plane_len();
    let data = image
        .data
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let j = i % plane_len;
            let washed = x.max(1.5 * gray[j] + 0.5);
            p.keep * x + (1.0 - p.keep) * washed + streaks[j] + streaks_rotated[j]
        })
        .collect();
    Ok(image.with_data(data))
}

/// Clamps to `[0, 1]` and rounds to the 8-bit grid (the reference stores the snow layer
/// as an 8-bit PNG between steps).
fn quantize(v: f32) -> f32 {
    (v.clamp(0.0, 1.0) * 255.0).round() / 255.0
}

/// Frost: `a·x + b·frost`, a blend with a frost layer.
///
/// (a, b) by severity: CIFAR-10-C (1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4),
/// (0.75, 0.45); ImageNet-C (1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75).
/// **Deviation:** ImageNet-C crops one of six frost photographs; keen synthesises the
/// layer per image from its generator (a plasma haze plus six-fold ice needles, mean
/// ≈ 0.5, slightly blue on RGB, see `textures::frost_texture`), so it needs no files.
/// Change ≈ 25, 37, 42, 39, 40 levels: severities 4–5 darken the image (a = 0.85, 0.75)
/// about as much as they add frost, so the change stalls although the image degrades
/// (a documented exception of the reference table).
pub fn frost(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (keep, add) = setting.pick(
        &[
            (1.0, 0.2),
            (1.0, 0.3),
            (0.9, 0.4),
            (0.85, 0.4),
            (0.75, 0.45),
        ],
        &[(1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    );
    let texture = frost_texture(image.height, image.width, rng);
    let gray_tint = 0.299 * FROST_TINT[0] + 0.587 * FROST_TINT[1] + 0.114 * FROST_TINT[2];
    let mut c = 0;
    Ok(image.map_planes(|plane| {
        let tint = if image.channels == 1 {
            gray_tint
        } else {
            FROST_TINT[c]
        };
        c += 1;
        plane
            .iter()
            .zip(&texture)
            .map(|(x, t)| keep * x + add * tint * t)
            .collect()
    }))
}

/// Fog: a plasma fractal (the same on every channel) is added with weight `a`, then the
/// image is rescaled by `max / (max + a)` so fog lowers contrast rather than only
/// brightening.
///
/// (a, fractal decay) by severity: CIFAR-10-C (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2),
/// (1.5, 1.75); ImageNet-C (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4). A smaller
/// decay makes patchier fog. The fractal covers the image at any size (side rounded up
/// to a power of two, then cropped). Change ≈ 14, 27, 34, 40, 48 levels.
pub fn fog(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let (amount, decay) = setting.pick(
        &[(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)],
        &[(1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
    );
    let fractal = plasma_crop(image.height, image.width, decay, rng);
    let max = image.data.iter().copied().fold(0.0f32, f32::max);
    let scale = max / (max + amount);
    Ok(image.map_planes(|plane| {
        plane
            .iter()
            .zip(&fractal)
            .map(|(x, f)| (x + amount * f) * scale)
            .collect()
    }))
}

/// Brightness: the HSV value of every pixel is raised by `b` (clipped at 1) with hue and
/// saturation kept, i.e. each RGB pixel is scaled by `min(v + b, 1) / v` (`v` = its
/// largest channel; black becomes grey `b`). Grayscale: `min(x + b, 1)`.
///
/// `b` by severity: CIFAR-10-C 0.05, 0.1, 0.15, 0.2, 0.3; ImageNet-C 0.1, 0.2, 0.3, 0.4,
/// 0.5. Change ≈ b × 255 minus what saturates at white: 12, 23, 34, 45, 65 levels.
pub fn brightness(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let lift = setting.pick(&[0.05, 0.1, 0.15, 0.2, 0.3], &[0.1, 0.2, 0.3, 0.4, 0.5]);
    let n = image.plane_len();
    let value: Vec<f32> = (0..n)
        .map(|i| {
            (0..image.channels)
                .map(|c| image.data[c * n + i])
                .fold(0.0f32, f32::max)
        })
        .collect();
    let data = image
        .data
        .iter()
        .enumerate()
        .map(|(k, &x)| {
            let v = value[k % n];
            let lifted = (v + lift).min(1.0);
            if v > 0.0 {
                x * lifted / v
            } else {
                lifted
            }
        })
        .collect();
    Ok(image.with_data(data))
}
