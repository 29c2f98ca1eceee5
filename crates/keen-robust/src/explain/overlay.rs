//! A heat map over its image: the input upscaled (nearest neighbour, so its pixels stay
//! visible), the map bilinearly upsampled to the same size, min-max normalised, coloured with
//! the jet map and alpha-blended on top (what pytorch-grad-cam's `show_cam_on_image` draws).

use image::{Rgb, RgbImage};

use crate::error::{check_finite, RobustError};

/// How the overlay is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayOptions {
    /// Output pixels per input pixel along each side (at least 1).
    pub scale: u32,
    /// Weight of the heat colour against the image, in `[0, 1]`.
    pub alpha: f32,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        Self {
            scale: 8,
            alpha: 0.5,
        }
    }
}

/// The jet colour map at `t` in `[0, 1]`: dark blue, cyan, yellow, dark red.
pub fn jet(t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let channel = |offset: f32| {
        let v = 1.5 - (4.0 * t - offset).abs();
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}

/// The image (`[channels, height, width]` bytes, 1 or 3 channels, planar as keen-data loads
/// them) `scale` times larger with `heat` (`[heat_h, heat_w]`, row-major, any range) blended
/// over it.
pub fn heat_overlay(
    pixels: &[u8],
    [channels, height, width]: [usize; 3],
    heat: &[f32],
    [heat_h, heat_w]: [usize; 2],
    options: &OverlayOptions,
) -> Result<RgbImage, RobustError> {
    if !(channels == 1 || channels == 3) {
        return Err(RobustError::InvalidArgument {
            name: "channels",
            value: channels.to_string(),
            reason: "images must be grey (1) or RGB (3)".into(),
        });
    }
    if height == 0 || width == 0 || heat_h == 0 || heat_w == 0 {
        return Err(RobustError::Empty {
            what: "overlay image or heat map",
        });
    }
    if pixels.len() != channels * height * width {
        return Err(RobustError::LengthMismatch {
            what: "image pixels (channels × height × width)",
            expected: channels * height * width,
            found: pixels.len(),
        });
    }
    if heat.len() != heat_h * heat_w {
        return Err(RobustError::LengthMismatch {
            what: "heat map (height × width)",
            expected: heat_h * heat_w,
            found: heat.len(),
        });
    }
    check_finite("heat map", heat)?;
    if options.scale == 0 || !(0.0..=1.0).contains(&options.alpha) {
        return Err(RobustError::InvalidArgument {
            name: "overlay options",
            value: format!("{options:?}"),
            reason: "scale must be at least 1 and alpha in [0, 1]".into(),
        });
    }
    let normalised = min_max(heat);
    let scale = options.scale as usize;
    let (out_w, out_h) = (width * scale, height * scale);
    let plane = height * width;
    let mut out = RgbImage::new(out_w as u32, out_h as u32);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        let source = (y / scale) * width + x / scale;
        let base = if channels == 1 {
            Rgb([pixels[source]; 3])
        } else {
            Rgb([0, 1, 2].map(|c| pixels[c * plane + source]))
        };
        // The heat map's cells stretch over the whole output; sample at the pixel centre.
        let t = bilinear(
            &normalised,
            [heat_h, heat_w],
            (y as f32 + 0.5) * heat_h as f32 / out_h as f32 - 0.5,
            (x as f32 + 0.5) * heat_w as f32 / out_w as f32 - 0.5,
        );
        let colour = jet(t);
        let mix = |a: u8, b: u8| {
            (a as f32 * (1.0 - options.alpha) + b as f32 * options.alpha).round() as u8
        };
        *px = Rgb([0, 1, 2].map(|c| mix(base[c], colour[c])));
    }
    Ok(out)
}

/// `(v − min) / (max − min)`; all zeros for a flat map (nothing stands out).
fn min_max(heat: &[f32]) -> Vec<f32> {
    let min = heat.iter().copied().fold(f32::INFINITY, f32::min);
    let max = heat.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    if range <= 0.0 {
        return vec![0.0; heat.len()];
    }
    heat.iter().map(|v| (v - min) / range).collect()
}

/// The map at fractional cell coordinates, clamped at the borders.
fn bilinear(map: &[f32], [h, w]: [usize; 2], y: f32, x: f32) -> f32 {
    let y = y.clamp(0.0, (h - 1) as f32);
    let x = x.clamp(0.0, (w - 1) as f32);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let at = |r: usize, c: usize| map[r * w + c];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_from_blue_to_red() {
        assert_eq!(jet(0.0), Rgb([0, 0, 128]));
        assert_eq!(jet(0.5), Rgb([128, 255, 128]));
        assert_eq!(jet(1.0), Rgb([128, 0, 0]));
    }

    #[test]
    fn heat_on_the_left_colours_the_left_half() {
        // A black 2×2 image, heat only in the left column; no blending of the image.
        let pixels = [0u8; 4];
        let options = OverlayOptions {
            scale: 4,
            alpha: 1.0,
        };
        let img = heat_overlay(&pixels, [1, 2, 2], &[1.0, 0.0, 1.0, 0.0], [2, 2], &options)
            .expect("overlay");
        assert_eq!(img.dimensions(), (8, 8));
        assert_eq!(*img.get_pixel(0, 3), jet(1.0));
        assert_eq!(*img.get_pixel(7, 3), jet(0.0));
        // Bilinear: the middle blends the two columns.
        let middle = img.get_pixel(4, 3);
        assert!(middle[1] > 0, "{middle:?}");
    }

    #[test]
    fn the_image_shows_through_and_rgb_keeps_its_colours() {
        // Red RGB pixel, flat heat (all zero after normalisation: dark blue), alpha 0.5.
        let pixels = [255u8, 0, 0];
        let options = OverlayOptions {
            scale: 1,
            alpha: 0.5,
        };
        let img = heat_overlay(&pixels, [3, 1, 1], &[3.0], [1, 1], &options).expect("overlay");
        assert_eq!(*img.get_pixel(0, 0), Rgb([128, 0, 64]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let options = OverlayOptions::default();
        assert!(heat_overlay(&[0; 3], [1, 2, 2], &[0.0; 4], [2, 2], &options).is_err());
        assert!(heat_overlay(&[0; 4], [1, 2, 2], &[0.0; 3], [2, 2], &options).is_err());
        assert!(heat_overlay(&[0; 8], [2, 2, 2], &[0.0; 4], [2, 2], &options).is_err());
        assert!(heat_overlay(&[0; 4], [1, 2, 2], &[f32::NAN; 4], [2, 2], &options).is_err());
    }
}
