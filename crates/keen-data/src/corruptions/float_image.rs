//! The working representation of the corruptions: CHW `f32` planes in `[0, 1]`.

use super::CorruptionError;

/// A CHW image of `f32` values, nominally in `[0, 1]` (intermediate results may leave
/// that range; [`FloatImage::to_u8`] clamps).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImage {
    /// Channels: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, channel planes back to back.
    pub data: Vec<f32>,
}

impl FloatImage {
    /// Converts a `u8` CHW image, checking the shape and the channel count.
    pub fn from_u8(image: &[u8], shape: [usize; 3]) -> Result<Self, CorruptionError> {
        let [channels, height, width] = shape;
        if channels != 1 && channels != 3 {
            return Err(CorruptionError::UnsupportedChannels { channels });
        }
        if height == 0 || width == 0 || image.len() != channels * height * width {
            return Err(CorruptionError::ShapeMismatch {
                len: image.len(),
                shape,
            });
        }
        Ok(FloatImage {
            channels,
            height,
            width,
            data: image.iter().map(|&v| v as f32 / 255.0).collect(),
        })
    }

    /// Rounds to the nearest `u8` after clamping to `[0, 1]` (NaN becomes 0).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| to_byte(v)).collect()
    }

    /// Pixels per plane.
    pub fn plane_len(&self) -> usize {
        self.height * self.width
    }

    /// Channel plane `c`.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.plane_len();
        &self.data[c * n..(c + 1) * n]
    }

    /// A new image of the same shape with every plane replaced by `f(plane)`.
    pub fn map_planes(&self, mut f: impl FnMut(&[f32]) -> Vec<f32>) -> FloatImage {
        let data = (0..self.channels).flat_map(|c| f(self.plane(c))).collect();
        self.with_data(data)
    }

    /// A new image of the same shape holding `data`.
    pub fn with_data(&self, data: Vec<f32>) -> FloatImage {
        debug_assert_eq!(data.len(), self.data.len());
        FloatImage {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data,
        }
    }

    /// A new image of the same shape with `f` applied to every value.
    pub fn map_values(&self, mut f: impl FnMut(f32) -> f32) -> FloatImage {
        self.with_data(self.data.iter().map(|&v| f(v)).collect())
    }

    /// Luminance (ITU-R 601, OpenCV's RGB→gray weights); the plane itself for grayscale.
    pub fn luminance(&self) -> Vec<f32> {
        if self.channels == 1 {
            return self.plane(0).to_vec();
        }
        let (r, g, b) = (self.plane(0), self.plane(1), self.plane(2));
        (0..self.plane_len())
            .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
            .collect()
    }

    /// Rounds every value to the `u8` grid, as the reference does when it stores an
    /// intermediate result as 8-bit.
    pub fn quantized(&self) -> FloatImage {
        self.map_values(|v| to_byte(v) as f32 / 255.0)
    }
}

fn to_byte(v: f32) -> u8 {
    // `as u8` saturates and maps NaN to 0, so no value can panic here.
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// How a sampler reads outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Border {
    /// Repeat the edge pixel (scikit-image `gaussian`'s default, ImageMagick's edge).
    Nearest,
    /// Mirror including the edge pixel, `cba|abc` (SciPy's `reflect`).
    Symmetric,
    /// Mirror excluding the edge pixel, `cb|abc` (OpenCV's default `BORDER_REFLECT_101`).
    Reflect101,
}

impl Border {
    /// Maps any integer coordinate, however far outside, to one inside `0..len`.
    pub(crate) fn index(self, i: isize, len: usize) -> usize {
        let n = len as isize;
        if (0..n).contains(&i) {
            return i as usize;
        }
        match self {
            Border::Nearest => i.clamp(0, n - 1) as usize,
            Border::Symmetric => {
                let period = 2 * n;
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - 1 - m }) as usize
            }
            Border::Reflect101 => {
                if n == 1 {
                    return 0;
                }
                let period = 2 * n - 2;
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - m }) as usize
            }
        }
    }
}

/// Bilinear sample of a `height × width` plane at (`y`, `x`) in pixel coordinates.
pub(crate) fn sample_bilinear(
    plane: &[f32],
    height: usize,
    width: usize,
    y: f32,
    x: f32,
    border: Border,
) -> f32 {
    if !y.is_finite() || !x.is_finite() {
        return 0.0;
    }
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let (y0, x0) = (y0 as isize, x0 as isize);
    // Fast path: all four taps inside, no border arithmetic (the common case).
    if y0 >= 0 && x0 >= 0 && (y0 as usize) + 1 < height && (x0 as usize) + 1 < width {
        let i = y0 as usize * width + x0 as usize;
        let top = plane[i] * (1.0 - fx) + plane[i + 1] * fx;
        let bottom = plane[i + width] * (1.0 - fx) + plane[i + width + 1] * fx;
        return top * (1.0 - fy) + bottom * fy;
    }
    let at =
        |yy: isize, xx: isize| plane[border.index(yy, height) * width + border.index(xx, width)];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
    let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borders_map_far_outside_indices() {
        let n = 4;
        let sym: Vec<usize> = (-5..9).map(|i| Border::Symmetric.index(i, n)).collect();
        assert_eq!(sym, [3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
        let r101: Vec<usize> = (-4..8).map(|i| Border::Reflect101.index(i, n)).collect();
        assert_eq!(r101, [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(Border::Reflect101.index(-7, 1), 0);
        assert_eq!(Border::Nearest.index(-7, n), 0);
        assert_eq!(Border::Nearest.index(70, n), 3);
    }

    #[test]
    fn u8_round_trip_is_exact_and_shapes_are_checked() {
        let img: Vec<u8> = (0..=255).collect();
        let f = FloatImage::from_u8(&img, [1, 16, 16]).expect("valid");
        assert_eq!(f.to_u8(), img);
        assert!(FloatImage::from_u8(&img, [1, 16, 15]).is_err());
        assert!(FloatImage::from_u8(&img, [4, 8, 8]).is_err());
        assert!(FloatImage::from_u8(&[], [1, 0, 0]).is_err());
    }

    #[test]
    fn bilinear_interpolates_between_pixels() {
        let plane = [0.0, 1.0, 2.0, 3.0];
        let v = sample_bilinear(&plane, 2, 2, 0.5, 0.5, Border::Nearest);
        assert!((v - 1.5).abs() < 1e-6);
        assert_eq!(
            sample_bilinear(&plane, 2, 2, f32::NAN, 0.0, Border::Nearest),
            0.0
        );
    }
}
