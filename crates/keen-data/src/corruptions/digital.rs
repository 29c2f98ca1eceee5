//! Digital corruptions: contrast, elastic transform, pixelate and JPEG compression.
//!
//! "Change" figures are mean absolute differences in `u8` levels on the test images of
//! `corruptions/tests.rs` (CIFAR-10-C table), severities 1→5.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageFormat};
use rand_chacha::ChaCha8Rng;

use super::float_image::{sample_bilinear, Border};
use super::kernels::{box_resize, gaussian_blur};
use super::random::uniform;
use super::{CorruptionError, FloatImage, Setting};

/// Contrast: every channel is pulled toward its own mean, `(x − mean)·c + mean`.
///
/// `c` by severity: CIFAR-10-C 0.75, 0.5, 0.4, 0.3, 0.15; ImageNet-C 0.4, 0.3, 0.2, 0.1,
/// 0.05. Change = (1 − c) × the mean absolute deviation of the image: 11, 22, 27, 31,
/// 38 levels on the test images.
pub fn contrast(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let factor = setting.pick(&[0.75, 0.5, 0.4, 0.3, 0.15], &[0.4, 0.3, 0.2, 0.1, 0.05]);
    Ok(image.map_planes(|plane| {
        let mean = plane.iter().sum::<f32>() / plane.len() as f32;
        plane.iter().map(|x| (x - mean) * factor + mean).collect()
    }))
}

/// Elastic transform: a random affine warp (three control points moved by up to `a`),
/// then a smooth random displacement field (uniform noise blurred by σ, times α).
///
/// (α, σ, a) as fractions of the shorter side, CIFAR-10-C: (0, 0, 0.08),
/// (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03);
/// ImageNet-C (×244/224, the reference's constant): (2, 0.7, 0.1), (2, 0.08, 0.2),
/// (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02). The affine part shrinks
/// while the local part grows with severity, so the change is **not monotone** in
/// ImageNet-C itself (its severities 1–2 move the whole image more than 3–5); on the
/// CIFAR table the change is ≈ 21, 19, 17, 16, 14 levels — a documented exception.
pub fn elastic_transform(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    const IMAGENET_SCALE: f32 = 244.0 / 224.0;
    let (alpha, sigma, affine) = setting.pick(
        &[
            (0.0, 0.0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ],
        &[
            (
                2.0 * IMAGENET_SCALE,
                0.7 * IMAGENET_SCALE,
                0.1 * IMAGENET_SCALE,
            ),
            (
                2.0 * IMAGENET_SCALE,
                0.08 * IMAGENET_SCALE,
                0.2 * IMAGENET_SCALE,
            ),
            (
                0.05 * IMAGENET_SCALE,
                0.01 * IMAGENET_SCALE,
                0.02 * IMAGENET_SCALE,
            ),
            (
                0.07 * IMAGENET_SCALE,
                0.01 * IMAGENET_SCALE,
                0.02 * IMAGENET_SCALE,
            ),
            (
                0.12 * IMAGENET_SCALE,
                0.01 * IMAGENET_SCALE,
                0.02 * IMAGENET_SCALE,
            ),
        ],
    );
    let (h, w) = (image.height, image.width);
    let side = h.min(w) as f32;
    let inverse = random_affine_inverse(h, w, affine * side, rng);
    let warped = image.map_planes(|p| {
        (0..h * w)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let sx = inverse[0] * x + inverse[1] * y + inverse[2];
                let sy = inverse[3] * x + inverse[4] * y + inverse[5];
                sample_bilinear(p, h, w, sy, sx, Border::Reflect101)
            })
            .collect()
    });
    if alpha == 0.0 {
        return Ok(warped);
    }
    let mut field = || {
        let noise: Vec<f32> = (0..h * w).map(|_| uniform(rng, -1.0, 1.0)).collect();
        gaussian_blur(&noise, h, w, sigma * side, 3.0, Border::Symmetric)
            .into_iter()
            .map(|v| v * alpha * side)
            .collect::<Vec<f32>>()
    };
    let dx = field();
    let dy = field();
    Ok(warped.map_planes(|p| {
        (0..h * w)
            .map(|i| {
                let (x, y) = ((i % w) as f32 + dx[i], (i / w) as f32 + dy[i]);
                sample_bilinear(p, h, w, y, x, Border::Symmetric)
            })
            .collect()
    }))
}

/// Moves three control points around the centre by up to `max_shift` pixels and returns
/// the affine map from output to input pixel coordinates `[a, b, c, d, e, f]`
/// (`x_in = a·x + b·y + c`, `y_in = d·x + e·y + f`); identity if the points collapse.
fn random_affine_inverse(
    height: usize,
    width: usize,
    max_shift: f32,
    rng: &mut ChaCha8Rng,
) -> [f32; 6] {
    let (cx, cy) = ((width / 2) as f32, (height / 2) as f32);
    let square = (height.min(width) / 3) as f32;
    let source = [
        (cx + square, cy + square),
        (cx + square, cy - square),
        (cx - square, cy - square),
    ];
    let moved = source.map(|(x, y)| {
        let sx = x + uniform(rng, -max_shift, max_shift);
        let sy = y + uniform(rng, -max_shift, max_shift);
        (sx, sy)
    });
    // Solve [x y 1]·(a, b, c) = x_in over the three moved points by Cramer's rule.
    let det = |p: &[(f32, f32); 3]| {
        p[0].0 * (p[1].1 - p[2].1) - p[0].1 * (p[1].0 - p[2].0)
            + (p[1].0 * p[2].1 - p[2].0 * p[1].1)
    };
    let d = det(&moved);
    if d.abs() < 1e-6 {
        return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    }
    let solve = |target: [f32; 3]| {
        let m = moved;
        let a = (target[0] * (m[1].1 - m[2].1) - m[0].1 * (target[1] - target[2])
            + (target[1] * m[2].1 - target[2] * m[1].1))
            / d;
        let b = (m[0].0 * (target[1] - target[2]) - target[0] * (m[1].0 - m[2].0)
            + (m[1].0 * target[2] - m[2].0 * target[1]))
            / d;
        let c = (m[0].0 * (m[1].1 * target[2] - m[2].1 * target[1])
            - m[0].1 * (m[1].0 * target[2] - m[2].0 * target[1])
            + target[0] * (m[1].0 * m[2].1 - m[2].0 * m[1].1))
            / d;
        (a, b, c)
    };
    let (a, b, c) = solve(source.map(|p| p.0));
    let (dd, e, f) = solve(source.map(|p| p.1));
    [a, b, c, dd, e, f]
}

/// Pixelate: area-average down to `c` of the size (each side rounded down), then
/// area-resample back up (PIL's `BOX` both ways).
///
/// `c` by severity: CIFAR-10-C 0.95, 0.9, 0.85, 0.75, 0.65; ImageNet-C 0.6, 0.5, 0.4,
/// 0.3, 0.25. Change ≈ 6, 6, 6, 7, 8 levels: the sizes are rounded down (30, 28, 27,
/// 24, 20 of 32), and a non-integer ratio misaligns the resampling grid, so severities
/// 1–3 change about as much as each other (an exception the reference shares).
pub fn pixelate(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let factor = setting.pick(&[0.95, 0.9, 0.85, 0.75, 0.65], &[0.6, 0.5, 0.4, 0.3, 0.25]);
    let (h, w) = (image.height, image.width);
    let small_h = ((h as f32 * factor) as usize).max(1);
    let small_w = ((w as f32 * factor) as usize).max(1);
    Ok(image.map_planes(|p| {
        let small = box_resize(p, h, w, small_h, small_w);
        box_resize(&small, small_h, small_w, h, w)
    }))
}

/// JPEG compression: an encode–decode round trip through the `image` crate's baseline
/// JPEG codec (4:2:0 chroma subsampling on RGB) at quality `q`.
///
/// `q` by severity: CIFAR-10-C 80, 65, 58, 50, 40; ImageNet-C 25, 18, 15, 10, 7.
/// Change ≈ 3, 4, 4, 5, 5 levels.
pub fn jpeg_compression(
    image: &FloatImage,
    setting: &Setting,
    _rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let quality: u8 = setting.pick(&[80, 65, 58, 50, 40], &[25, 18, 15, 10, 7]);
    let (h, w, c) = (image.height, image.width, image.channels);
    let planar = image.to_u8();
    let n = h * w;
    // The codec wants interleaved HWC samples.
    let interleaved: Vec<u8> = (0..n * c).map(|k| planar[(k % c) * n + k / c]).collect();
    let color = if c == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let jpeg_error = |e: image::ImageError| CorruptionError::Jpeg {
        reason: e.to_string(),
    };
    let mut encoded = Vec::new();
    JpegEncoder::new_with_quality(&mut encoded, quality)
        .encode(&interleaved, w as u32, h as u32, color)
        .map_err(jpeg_error)?;
    let decoded = image::load(Cursor::new(&encoded), ImageFormat::Jpeg).map_err(jpeg_error)?;
    let samples = if c == 1 {
        decoded.to_luma8().into_raw()
    } else {
        decoded.to_rgb8().into_raw()
    };
    if samples.len() != n * c {
        return Err(CorruptionError::Jpeg {
            reason: format!("decoded {} samples, expected {}", samples.len(), n * c),
        });
    }
    let data = (0..n * c)
        .map(|k| samples[(k % n) * c + k / n] as f32 / 255.0)
        .collect();
    Ok(image.with_data(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn affine_without_shift_is_the_identity() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let m = random_affine_inverse(30, 30, 0.0, &mut rng);
        for (got, want) in m.iter().zip([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]) {
            assert!((got - want).abs() < 1e-4, "{m:?}");
        }
    }
}
