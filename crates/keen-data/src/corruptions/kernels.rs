//! Plane-level image operations shared by several corruptions: Gaussian blur, 2-D
//! convolution, area (box) resampling, centred zoom and a directional motion streak.
//! Each works on one `height × width` plane of `f32`.

use super::float_image::{sample_bilinear, Border};

/// A normalised 1-D Gaussian of standard deviation `sigma`, `2r + 1` taps with
/// `r = round(truncate * sigma)` (SciPy's rule, so `truncate = 4` matches scikit-image).
pub(crate) fn gaussian_taps(sigma: f32, truncate: f32) -> Vec<f32> {
    if sigma <= 0.0 || !sigma.is_finite() {
        return vec![1.0];
    }
    let radius = (truncate * sigma + 0.5) as isize;
    let taps: Vec<f32> = (-radius..=radius)
        .map(|x| (-0.5 * (x as f32 / sigma).powi(2)).exp())
        .collect();
    let sum: f32 = taps.iter().sum();
    taps.iter().map(|t| t / sum).collect()
}

/// Separable Gaussian blur of one plane.
pub(crate) fn gaussian_blur(
    plane: &[f32],
    height: usize,
    width: usize,
    sigma: f32,
    truncate: f32,
    border: Border,
) -> Vec<f32> {
    let taps = gaussian_taps(sigma, truncate);
    if taps.len() == 1 {
        return plane.to_vec();
    }
    let horizontal = convolve_rows(plane, height, width, &taps, border);
    convolve_columns(&horizontal, height, width, &taps, border)
}

fn convolve_rows(
    plane: &[f32],
    height: usize,
    width: usize,
    taps: &[f32],
    border: Border,
) -> Vec<f32> {
    let r = (taps.len() / 2) as isize;
    let mut out = vec![0.0; plane.len()];
    for y in 0..height {
        let row = &plane[y * width..(y + 1) * width];
        for x in 0..width {
            out[y * width + x] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * row[border.index(x as isize + k as isize - r, width)])
                .sum();
        }
    }
    out
}

fn convolve_columns(
    plane: &[f32],
    height: usize,
    width: usize,
    taps: &[f32],
    border: Border,
) -> Vec<f32> {
    let r = (taps.len() / 2) as isize;
    let mut out = vec![0.0; plane.len()];
    for y in 0..height {
        for (k, t) in taps.iter().enumerate() {
            let sy = border.index(y as isize + k as isize - r, height);
            let src = &plane[sy * width..(sy + 1) * width];
            let dst = &mut out[y * width..(y + 1) * width];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += t * s;
            }
        }
    }
    out
}

/// A square kernel of odd side, row-major.
pub(crate) struct Kernel2d {
    pub side: usize,
    pub weights: Vec<f32>,
}

/// Correlates one plane with a square kernel centred on each pixel (OpenCV's
/// `filter2D`; the kernels used here are symmetric, so correlation equals convolution).
pub(crate) fn filter2d(
    plane: &[f32],
    height: usize,
    width: usize,
    kernel: &Kernel2d,
    border: Border,
) -> Vec<f32> {
    let r = (kernel.side / 2) as isize;
    let mut out = vec![0.0; plane.len()];
    // Border lookups once per column offset, not once per tap and pixel.
    let columns: Vec<Vec<usize>> = (0..kernel.side)
        .map(|kx| {
            (0..width)
                .map(|x| border.index(x as isize + kx as isize - r, width))
                .collect()
        })
        .collect();
    for ky in 0..kernel.side {
        for (kx, column) in columns.iter().enumerate() {
            let w = kernel.weights[ky * kernel.side + kx];
            if w == 0.0 {
                continue;
            }
            for y in 0..height {
                let sy = border.index(y as isize + ky as isize - r, height);
                let src = &plane[sy * width..(sy + 1) * width];
                let dst = &mut out[y * width..(y + 1) * width];
                for (d, &sx) in dst.iter_mut().zip(column) {
                    *d += w * src[sx];
                }
            }
        }
    }
    out
}

/// Area-averaging resize along one axis (PIL's `BOX` filter): output cell `i` averages
/// the input over `[i, i + 1) * len_in / len_out`, weighting partly covered pixels by
/// the covered fraction. Works for shrinking and enlarging.
fn box_weights(len_in: usize, len_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = len_in as f32 / len_out as f32;
    (0..len_out)
        .map(|i| {
            let (lo, hi) = (i as f32 * scale, (i + 1) as f32 * scale);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(len_in);
            (first..last)
                .map(|j| {
                    let overlap = (hi.min(j as f32 + 1.0) - lo.max(j as f32)).max(0.0);
                    (j, overlap / (hi - lo))
                })
                .collect()
        })
        .collect()
}

/// Area-averaging resize of one plane to `new_height × new_width`.
pub(crate) fn box_resize(
    plane: &[f32],
    height: usize,
    width: usize,
    new_height: usize,
    new_width: usize,
) -> Vec<f32> {
    let (wx, wy) = (
        box_weights(width, new_width),
        box_weights(height, new_height),
    );
    let mut rows = vec![0.0; height * new_width];
    for y in 0..height {
        for (x, taps) in wx.iter().enumerate() {
            rows[y * new_width + x] = taps.iter().map(|&(j, w)| w * plane[y * width + j]).sum();
        }
    }
    let mut out = vec![0.0; new_height * new_width];
    for (y, taps) in wy.iter().enumerate() {
        for x in 0..new_width {
            out[y * new_width + x] = taps.iter().map(|&(j, w)| w * rows[j * new_width + x]).sum();
        }
    }
    out
}

/// Magnifies the centre of a plane by `zoom >= 1` back to full size, bilinearly (the
/// reference's `clipped_zoom`: crop the centre `1/zoom`, scale it up).
pub(crate) fn centre_zoom(plane: &[f32], height: usize, width: usize, zoom: f32) -> Vec<f32> {
    let (cy, cx) = ((height as f32 - 1.0) / 2.0, (width as f32 - 1.0) / 2.0);
    let mut out = Vec::with_capacity(plane.len());
    for y in 0..height {
        for x in 0..width {
            let sy = cy + (y as f32 - cy) / zoom;
            let sx = cx + (x as f32 - cx) / zoom;
            out.push(sample_bilinear(
                plane,
                height,
                width,
                sy,
                sx,
                Border::Nearest,
            ));
        }
    }
    out
}

/// ImageMagick's motion blur: every pixel becomes a weighted mean of the pixels along a
/// one-sided ray at `angle_degrees`, with Gaussian weights `exp(-i²/2σ²)` for the tap
/// at distance `i = 0..=2·ceil(radius)`. Taps are bilinear (ImageMagick rounds them to
/// whole pixels), and outside pixels repeat the edge.
pub(crate) fn motion_blur_plane(
    plane: &[f32],
    height: usize,
    width: usize,
    radius: f32,
    sigma: f32,
    angle_degrees: f32,
) -> Vec<f32> {
    let length = 2 * radius.max(0.0).ceil() as usize + 1;
    let sigma = sigma.max(1e-3);
    let weights: Vec<f32> = (0..length)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let (sin, cos) = angle_degrees.to_radians().sin_cos();
    let mut out = Vec::with_capacity(plane.len());
    for y in 0..height {
        for x in 0..width {
            let v: f32 = weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let (sy, sx) = (y as f32 + i as f32 * sin, x as f32 + i as f32 * cos);
                    w * sample_bilinear(plane, height, width, sy, sx, Border::Nearest)
                })
                .sum();
            out.push(v / total);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_taps_are_normalised_and_sized_like_scipy() {
        let taps = gaussian_taps(1.0, 4.0);
        assert_eq!(taps.len(), 9);
        assert!((taps.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(gaussian_taps(0.0, 4.0), vec![1.0]);
    }

    #[test]
    fn blurs_and_resizes_preserve_a_constant_plane() {
        let plane = vec![0.25; 6 * 5];
        let close = |v: &[f32]| v.iter().all(|x| (x - 0.25).abs() < 1e-5);
        assert!(close(&gaussian_blur(
            &plane,
            6,
            5,
            1.5,
            4.0,
            Border::Symmetric
        )));
        assert!(close(&box_resize(&plane, 6, 5, 3, 2)));
        assert!(close(&box_resize(&plane, 6, 5, 13, 11)));
        assert!(close(&centre_zoom(&plane, 6, 5, 1.3)));
        assert!(close(&motion_blur_plane(&plane, 6, 5, 3.0, 1.0, 30.0)));
    }

    #[test]
    fn box_resize_averages_blocks() {
        let plane = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(box_resize(&plane, 1, 4, 1, 2), vec![0.5, 2.5]);
        assert_eq!(
            box_resize(&[0.0, 1.0], 1, 2, 1, 4),
            vec![0.0, 0.0, 1.0, 1.0]
        );
    }
}
