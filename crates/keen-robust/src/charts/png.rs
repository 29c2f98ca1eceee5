//! PNG renders drawn directly into an `image::RgbImage`: the reliability diagram (bars,
//! gaps and diagonal; text is left to the SVG version, as there is no font rasteriser
//! here) and grids of example images such as every corruption at every severity.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use keen_data::corruptions::{Severity, CORRUPTIONS};

use super::reliability::{ACCURACY_COLOUR, GAP_COLOUR};
use super::svg::check_points;
use crate::calibration::ReliabilityBin;
use crate::error::RobustError;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const FRAME: Rgb<u8> = Rgb([51, 51, 51]);
const DIAGONAL: Rgb<u8> = Rgb([85, 85, 85]);

/// Encodes an image as PNG bytes.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, RobustError> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| RobustError::Image {
            reason: e.to_string(),
        })?;
    Ok(bytes.into_inner())
}

fn hex(colour: &str) -> Rgb<u8> {
    let channel =
        |i: usize| u8::from_str_radix(colour.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    Rgb([channel(1), channel(3), channel(5)])
}

fn blend(under: Rgb<u8>, over: Rgb<u8>, alpha: f32) -> Rgb<u8> {
    let mix = |a: u8, b: u8| (a as f32 * (1.0 - alpha) + b as f32 * alpha).round() as u8;
    Rgb([
        mix(under[0], over[0]),
        mix(under[1], over[1]),
        mix(under[2], over[2]),
    ])
}

/// The reliability diagram as a `side × side` image (`side >= 32`): accuracy bars,
/// translucent gap bars up or down to the mean confidence, and the dashed diagonal.
pub fn reliability_png(bins: &[ReliabilityBin], side: u32) -> Result<RgbImage, RobustError> {
    if bins.is_empty() {
        return Err(RobustError::Empty {
            what: "reliability bins",
        });
    }
    if side < 32 {
        return Err(RobustError::InvalidArgument {
            name: "side",
            value: side.to_string(),
            reason: "the image needs at least 32 pixels a side".into(),
        });
    }
    check_points(
        "reliability bins",
        bins.iter()
            .flat_map(|b| [b.lower, b.upper, b.accuracy, b.mean_confidence]),
    )?;
    let mut img = RgbImage::from_pixel(side, side, WHITE);
    let margin = side / 16;
    let plot = (side - 2 * margin) as f64;
    // Data (0..1, 0..1) → pixel; y grows downwards in the image.
    let px = |v: f64| margin as f64 + v.clamp(0.0, 1.0) * plot;
    let py = |v: f64| margin as f64 + (1.0 - v.clamp(0.0, 1.0)) * plot;
    let (bar, gap) = (hex(ACCURACY_COLOUR), hex(GAP_COLOUR));
    for b in bins.iter().filter(|b| b.count > 0) {
        let (x0, x1) = (px(b.lower).round() as u32, px(b.upper).round() as u32);
        let (acc, conf) = (
            py(b.accuracy).round() as u32,
            py(b.mean_confidence).round() as u32,
        );
        let bottom = py(0.0).round() as u32;
        for x in x0..x1.saturating_sub(1).max(x0) {
            for y in acc..bottom {
                img.put_pixel(x, y, bar);
            }
            for y in acc.min(conf)..acc.max(conf) {
                let under = *img.get_pixel(x, y);
                img.put_pixel(x, y, blend(under, gap, 0.5));
            }
        }
    }
    for i in 0..=(plot as u32) {
        // Dashes of 6 pixels on, 4 off.
        if i % 10 < 6 {
            let v = i as f64 / plot;
            img.put_pixel(px(v).round() as u32, py(v).round() as u32, DIAGONAL);
        }
    }
    let (lo, hi) = (margin, side - margin);
    for t in lo..=hi {
        for (x, y) in [(t, lo), (t, hi), (lo, t), (hi, t)] {
            img.put_pixel(x.min(side - 1), y.min(side - 1), FRAME);
        }
    }
    Ok(img)
}

/// Tiles `images` (each `u8` CHW of `shape`, grayscale or RGB) into a grid of `columns`
/// columns, each pixel upscaled to `scale × scale` (nearest neighbour) with a 2-pixel
/// white gap between tiles.
pub fn image_grid(
    images: &[Vec<u8>],
    shape: [usize; 3],
    columns: usize,
    scale: u32,
) -> Result<RgbImage, RobustError> {
    let [c, h, w] = shape;
    if images.is_empty() {
        return Err(RobustError::Empty {
            what: "grid images",
        });
    }
    if c != 1 && c != 3 {
        return Err(RobustError::InvalidArgument {
            name: "channels",
            value: c.to_string(),
            reason: "grid images must be grayscale (1) or RGB (3)".into(),
        });
    }
    if columns == 0 || scale == 0 || h == 0 || w == 0 {
        return Err(RobustError::InvalidArgument {
            name: "grid layout",
            value: format!("{columns} columns, scale {scale}, {h}x{w} images"),
            reason: "columns, scale and image sides must be > 0".into(),
        });
    }
    if let Some(bad) = images.iter().find(|i| i.len() != c * h * w) {
        return Err(RobustError::LengthMismatch {
            what: "grid image bytes (C·H·W)",
            expected: c * h * w,
            found: bad.len(),
        });
    }
    const GAP: u32 = 2;
    let rows = images.len().div_ceil(columns) as u32;
    let (tile_w, tile_h) = (w as u32 * scale, h as u32 * scale);
    let width = columns as u32 * (tile_w + GAP) + GAP;
    let height = rows * (tile_h + GAP) + GAP;
    let mut grid = RgbImage::from_pixel(width, height, WHITE);
    let plane = h * w;
    for (k, image) in images.iter().enumerate() {
        let (gx, gy) = ((k % columns) as u32, (k / columns) as u32);
        let (ox, oy) = (GAP + gx * (tile_w + GAP), GAP + gy * (tile_h + GAP));
        for y in 0..tile_h {
            for x in 0..tile_w {
                let i = (y / scale) as usize * w + (x / scale) as usize;
                let px = if c == 1 {
                    Rgb([image[i]; 3])
                } else {
                    Rgb([image[i], image[plane + i], image[2 * plane + i]])
                };
                grid.put_pixel(ox + x, oy + y, px);
            }
        }
    }
    Ok(grid)
}

/// One row per corruption (table order), six columns: the clean image, then severities
/// 1 to 5, each corrupted as image 0 of a dataset corrupted with `seed`.
pub fn corruption_grid(
    image: &[u8],
    shape: [usize; 3],
    seed: u64,
    scale: u32,
) -> Result<RgbImage, RobustError> {
    let mut tiles = Vec::with_capacity(CORRUPTIONS.len() * 6);
    for corruption in CORRUPTIONS {
        tiles.push(image.to_vec());
        for severity in Severity::ALL {
            tiles.push(corruption.apply_u8(image, shape, severity, seed, 0)?);
        }
    }
    image_grid(&tiles, shape, 6, scale)
}
