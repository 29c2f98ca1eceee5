//! RandAugment (Cubuk et al., 2019) on `u8` CHW images.
//!
//! Magnitude uses the paper's (and timm's) `0..=10` scale, where 10 is the strongest
//! each op gets: rotate ±30°, shear ±0.3, translate ±45% of the side, enhance factors
//! 1 ± 0.9, posterize to 4 bits, solarize every pixel. Every op gets stronger as the
//! magnitude grows (torchvision's convention; the original code weakened solarize).
//! Pixel ops follow PIL's definitions so numbers compare with the Python recipes.
//! Geometric ops sample bilinearly about the image centre and fill with 0.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The largest meaningful magnitude; larger values are clamped to it.
pub const MAX_MAGNITUDE: u32 = 10;

/// RandAugment: apply `n` ops drawn uniformly (with replacement) at magnitude `m`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RandAugment {
    /// Ops applied per image (the paper's N; 2 is the common choice).
    pub n: usize,
    /// Strength on the `0..=10` scale (the paper's M; 9 is the common choice).
    pub m: u32,
}

/// One RandAugment operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandAugmentOp {
    /// Leaves the image unchanged.
    Identity,
    /// Stretches each channel to the full 0..=255 range.
    AutoContrast,
    /// Equalizes each channel's histogram.
    Equalize,
    /// Rotates about the centre.
    Rotate,
    /// Inverts pixels at or above a threshold.
    Solarize,
    /// Keeps only the top bits of every pixel.
    Posterize,
    /// Scales the distance from the mean gray level.
    Contrast,
    /// Scales every pixel.
    Brightness,
    /// Blends with a blurred copy (factor > 1 sharpens).
    Sharpness,
    /// Shears horizontally.
    ShearX,
    /// Shears vertically.
    ShearY,
    /// Shifts horizontally by whole pixels.
    TranslateX,
    /// Shifts vertically by whole pixels.
    TranslateY,
    /// Blends with the grayscale version (saturation); RGB only.
    Color,
}

impl RandAugmentOp {
    /// Every op, in a fixed order (the order matters for determinism by seed).
    pub const ALL: [RandAugmentOp; 14] = [
        RandAugmentOp::Identity,
        RandAugmentOp::AutoContrast,
        RandAugmentOp::Equalize,
        RandAugmentOp::Rotate,
        RandAugmentOp::Solarize,
        RandAugmentOp::Posterize,
        RandAugmentOp::Contrast,
        RandAugmentOp::Brightness,
        RandAugmentOp::Sharpness,
        RandAugmentOp::ShearX,
        RandAugmentOp::ShearY,
        RandAugmentOp::TranslateX,
        RandAugmentOp::TranslateY,
        RandAugmentOp::Color,
    ];

    /// The ops that make sense for `channels` channels: `Color` needs RGB.
    pub fn for_channels(channels: usize) -> &'static [RandAugmentOp] {
        if channels == 3 {
            &Self::ALL
        } else {
            &Self::ALL[..Self::ALL.len() - 1]
        }
    }
}

impl RandAugment {
    /// Applies `n` random ops to one CHW image of `shape = [C, H, W]`.
    pub fn apply(&self, img: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        let ops = RandAugmentOp::for_channels(shape[0]);
        let magnitude = self.m.min(MAX_MAGNITUDE) as f32;
        let mut out = img.to_vec();
        for _ in 0..self.n {
            let op = ops[rng.random_range(0..ops.len())];
            // Drawn for every op, even unsigned ones, so the number of draws per op is
            // fixed and streams stay aligned across configurations.
            let negate = rng.random_bool(0.5);
            out = apply_op(op, magnitude, negate, &out, shape);
        }
        out
    }
}

/// Applies one op at `magnitude` (`0.0..=10.0`); `negate` flips the direction of signed
/// ops (rotate, shear, translate, the enhance factors) and is ignored by the others.
pub fn apply_op(
    op: RandAugmentOp,
    magnitude: f32,
    negate: bool,
    img: &[u8],
    shape: [usize; 3],
) -> Vec<u8> {
    let level = (magnitude / MAX_MAGNITUDE as f32).clamp(0.0, 1.0);
    let sign = if negate { -1.0 } else { 1.0 };
    let factor = 1.0 + sign * 0.9 * level;
    let [c, h, w] = shape;
    match op {
        RandAugmentOp::Identity => img.to_vec(),
        RandAugmentOp::AutoContrast => per_channel(img, h * w, auto_contrast_lut),
        RandAugmentOp::Equalize => per_channel(img, h * w, equalize_lut),
        RandAugmentOp::Solarize => {
            let threshold = 256.0 * (1.0 - level);
            img.iter()
                .map(|&v| if v as f32 >= threshold { 255 - v } else { v })
                .collect()
        }
        RandAugmentOp::Posterize => {
            let bits = 8 - (4.0 * level).round() as u32;
            let mask = (0xffu32 << (8 - bits)) as u8;
            img.iter().map(|&v| v & mask).collect()
        }
        RandAugmentOp::Brightness => blend(img, |_| 0.0, factor),
        RandAugmentOp::Contrast => {
            let mean = mean_gray(img, c, h * w);
            blend(img, |_| mean, factor)
        }
        RandAugmentOp::Color => {
            let gray = grayscale_plane(img, c, h * w);
            blend(img, |i| gray[i % (h * w)], factor)
        }
        RandAugmentOp::Sharpness => {
            let smooth = smooth_3x3(img, shape);
            blend(img, |i| smooth[i] as f32, factor)
        }
        RandAugmentOp::Rotate => {
            let theta = (sign * 30.0 * level).to_radians();
            let (s, co) = theta.sin_cos();
            warp_affine(img, shape, [co, -s, 0.0, s, co, 0.0])
        }
        RandAugmentOp::ShearX => {
            warp_affine(img, shape, [1.0, sign * 0.3 * level, 0.0, 0.0, 1.0, 0.0])
        }
        RandAugmentOp::ShearY => {
            warp_affine(img, shape, [1.0, 0.0, 0.0, sign * 0.3 * level, 1.0, 0.0])
        }
        RandAugmentOp::TranslateX => {
            let t = (sign * 0.45 * level * w as f32).round();
            warp_affine(img, shape, [1.0, 0.0, -t, 0.0, 1.0, 0.0])
        }
        RandAugmentOp::TranslateY => {
            let t = (sign * 0.45 * level * h as f32).round();
            warp_affine(img, shape, [1.0, 0.0, 0.0, 0.0, 1.0, -t])
        }
    }
}

/// Maps each channel plane through a lookup table built from that plane.
fn per_channel(img: &[u8], plane: usize, lut_of: fn(&[u8]) -> [u8; 256]) -> Vec<u8> {
    if plane == 0 {
        return img.to_vec();
    }
    img.chunks_exact(plane)
        .flat_map(|p| {
            let lut = lut_of(p);
            p.iter().map(move |&v| lut[v as usize])
        })
        .collect()
}

fn auto_contrast_lut(plane: &[u8]) -> [u8; 256] {
    let lo = plane.iter().copied().min().unwrap_or(0) as f32;
    let hi = plane.iter().copied().max().unwrap_or(255) as f32;
    let mut lut = [0u8; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        *out = if hi > lo {
            ((v as f32 - lo) * 255.0 / (hi - lo))
                .round()
                .clamp(0.0, 255.0) as u8
        } else {
            v as u8
        };
    }
    lut
}

/// PIL's `ImageOps.equalize`: spread the cumulative histogram over 0..=255, ignoring
/// the last populated bin so a mostly-constant image is not blown out.
fn equalize_lut(plane: &[u8]) -> [u8; 256] {
    let mut hist = [0usize; 256];
    for &v in plane {
        hist[v as usize] += 1;
    }
    let mut identity = [0u8; 256];
    for (v, out) in identity.iter_mut().enumerate() {
        *out = v as u8;
    }
    let last = hist.iter().rev().find(|&&n| n > 0).copied().unwrap_or(0);
    let step = (plane.len() - last) / 255;
    if step == 0 {
        return identity;
    }
    let mut lut = [0u8; 256];
    let mut acc = step / 2;
    for (v, out) in lut.iter_mut().enumerate() {
        *out = (acc / step).min(255) as u8;
        acc += hist[v];
    }
    lut
}

/// `degenerate + factor * (img - degenerate)`, rounded and clamped, as PIL's
/// `ImageEnhance` does; `degenerate(i)` gives the reference value for element `i`.
fn blend(img: &[u8], degenerate: impl Fn(usize) -> f32, factor: f32) -> Vec<u8> {
    img.iter()
        .enumerate()
        .map(|(i, &v)| {
            let d = degenerate(i);
            (d + factor * (v as f32 - d)).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Luma per pixel (ITU-R 601, PIL's `convert("L")`) for RGB; the channel mean otherwise.
fn grayscale_plane(img: &[u8], c: usize, plane: usize) -> Vec<f32> {
    (0..plane)
        .map(|i| {
            if c == 3 {
                0.299 * img[i] as f32
                    + 0.587 * img[plane + i] as f32
                    + 0.114 * img[2 * plane + i] as f32
            } else {
                (0..c).map(|ch| img[ch * plane + i] as f32).sum::<f32>() / c.max(1) as f32
            }
        })
        .collect()
}

/// Mean gray level of the whole image (PIL's `Contrast` reference), rounded like PIL.
fn mean_gray(img: &[u8], c: usize, plane: usize) -> f32 {
    if plane == 0 {
        return 0.0;
    }
    let gray = grayscale_plane(img, c, plane);
    (gray.iter().map(|&g| g.round() as f64).sum::<f64>() / plane as f64).round() as f32
}

/// PIL's SMOOTH filter (3x3, centre weight 5, total 13); border pixels stay as they are.
fn smooth_3x3(img: &[u8], shape: [usize; 3]) -> Vec<u8> {
    let [c, h, w] = shape;
    let mut out = img.to_vec();
    if h < 3 || w < 3 {
        return out;
    }
    for ch in 0..c {
        let p = &img[ch * h * w..(ch + 1) * h * w];
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut sum = 4 * p[y * w + x] as u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        sum += p[(y + dy - 1) * w + x + dx - 1] as u32;
                    }
                }
                out[ch * h * w + y * w + x] = ((sum + 6) / 13) as u8;
            }
        }
    }
    out
}

/// Resamples with an inverse affine map about the image centre: the output pixel at
/// offset `(dx, dy)` from the centre reads the source at
/// `(a*dx + b*dy + tx, d*dx + e*dy + ty)` from the centre, bilinearly, 0 outside.
fn warp_affine(img: &[u8], shape: [usize; 3], m: [f32; 6]) -> Vec<u8> {
    let [c, h, w] = shape;
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut out = vec![0u8; img.len()];
    let fetch = |p: &[u8], x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            p[y as usize * w + x as usize] as f32
        }
    };
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let sx = m[0] * dx + m[1] * dy + m[2] + cx;
            let sy = m[3] * dx + m[4] * dy + m[5] + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..c {
                let p = &img[ch * h * w..(ch + 1) * h * w];
                let top = fetch(p, x0, y0) * (1.0 - fx) + fetch(p, x0 + 1, y0) * fx;
                let bottom = fetch(p, x0, y0 + 1) * (1.0 - fx) + fetch(p, x0 + 1, y0 + 1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out[ch * h * w + y * w + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3]) -> Vec<u8> {
        (0..shape.iter().product::<usize>())
            .map(|v| (v * 37 % 256) as u8)
            .collect()
    }

    #[test]
    fn every_op_keeps_the_shape_for_gray_and_rgb() {
        for shape in [[1, 7, 5], [3, 4, 6], [2, 3, 3]] {
            let img = ramp(shape);
            for &op in RandAugmentOp::for_channels(shape[0]) {
                for m in [0.0, 5.0, 10.0] {
                    let out = apply_op(op, m, m > 4.0, &img, shape);
                    assert_eq!(out.len(), img.len(), "{op:?} m={m} shape {shape:?}");
                }
            }
        }
        assert!(!RandAugmentOp::for_channels(1).contains(&RandAugmentOp::Color));
        assert!(RandAugmentOp::for_channels(3).contains(&RandAugmentOp::Color));
    }

    #[test]
    fn magnitude_zero_leaves_magnitude_ops_unchanged() {
        let shape = [3, 5, 5];
        let img = ramp(shape);
        for op in [
            RandAugmentOp::Identity,
            RandAugmentOp::Rotate,
            RandAugmentOp::Solarize,
            RandAugmentOp::Posterize,
            RandAugmentOp::Contrast,
            RandAugmentOp::Brightness,
            RandAugmentOp::Sharpness,
            RandAugmentOp::ShearX,
            RandAugmentOp::ShearY,
            RandAugmentOp::TranslateX,
            RandAugmentOp::TranslateY,
            RandAugmentOp::Color,
        ] {
            assert_eq!(apply_op(op, 0.0, false, &img, shape), img, "{op:?}");
        }
    }

    #[test]
    fn pixel_ops_match_hand_computed_values() {
        let shape = [1, 1, 4];
        let img = [10u8, 100, 200, 250];
        // Solarize at full strength inverts everything.
        assert_eq!(
            apply_op(RandAugmentOp::Solarize, 10.0, false, &img, shape),
            vec![245, 155, 55, 5]
        );
        // Posterize at full strength keeps 4 bits.
        assert_eq!(
            apply_op(RandAugmentOp::Posterize, 10.0, false, &img, shape),
            vec![0, 96, 192, 240]
        );
        // AutoContrast stretches 10..250 to 0..255.
        assert_eq!(
            apply_op(RandAugmentOp::AutoContrast, 0.0, false, &img, shape),
            vec![0, 96, 202, 255]
        );
        // Brightness 1 - 0.9 = 0.1.
        assert_eq!(
            apply_op(RandAugmentOp::Brightness, 10.0, true, &img, shape),
            vec![1, 10, 20, 25]
        );
    }

    #[test]
    fn translate_moves_whole_pixels_and_fills_zero() {
        let shape = [1, 1, 10];
        let img: Vec<u8> = (1..=10).collect();
        // 0.45 * 10 px at m=10 rounds to 5 (away from zero, 4.5 -> 5).
        let right = apply_op(RandAugmentOp::TranslateX, 10.0, false, &img, shape);
        assert_eq!(right, vec![0, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
        let left = apply_op(RandAugmentOp::TranslateX, 10.0, true, &img, shape);
        assert_eq!(left, vec![6, 7, 8, 9, 10, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn equalize_spreads_a_narrow_histogram() {
        // PIL leaves images with fewer than ~255 pixels per level alone, so use 64x64.
        let shape = [1, 64, 64];
        let img: Vec<u8> = (0..64 * 64).map(|v| 100 + (v % 4) as u8).collect();
        let out = apply_op(RandAugmentOp::Equalize, 0.0, false, &img, shape);
        let (lo, hi) = (*out.iter().min().unwrap(), *out.iter().max().unwrap());
        assert!(hi - lo > 100, "{out:?}");
        // A constant image has nothing to equalize.
        let flat = vec![42u8; 64 * 64];
        assert_eq!(
            apply_op(RandAugmentOp::Equalize, 0.0, false, &flat, shape),
            flat
        );
    }

    #[test]
    fn centre_pixel_is_fixed_by_rotation_and_shear() {
        // A centred bright pixel stays put under any rotation or shear about the centre.
        let shape = [1, 5, 5];
        let mut img = vec![0u8; 25];
        img[12] = 200;
        for op in [
            RandAugmentOp::Rotate,
            RandAugmentOp::ShearX,
            RandAugmentOp::ShearY,
        ] {
            let out = apply_op(op, 10.0, false, &img, shape);
            assert_eq!(out[12], 200, "{op:?}: {out:?}");
        }
    }
}
