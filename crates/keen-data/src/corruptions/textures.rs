//! Procedural textures: the plasma fractal of fog and the frost layer that replaces
//! ImageNet-C's six frost photographs (which keen cannot ship or download).

use rand::Rng;

use super::float_image::{sample_bilinear, Border};
use super::kernels::gaussian_blur;
use super::random::uniform;

/// A `side × side` diamond–square height map (`side` a power of two, wrapping at the
/// edges) normalised to `[0, 1]`. Each octave's random offsets are `±wibble²` with
/// `wibble` divided by `decay` per octave, as in ImageNet-C's `plasma_fractal`, so a
/// larger `decay` gives a smoother map.
pub(crate) fn plasma_fractal(side: usize, decay: f32, rng: &mut impl Rng) -> Vec<f32> {
    let n = side.max(2).next_power_of_two();
    let mut map = vec![0.0f32; n * n];
    let mut step = n;
    let mut wibble = 100.0f32;
    let wrap = |i: usize, d: isize| (i as isize + d).rem_euclid(n as isize) as usize;
    while step >= 2 {
        let half = step / 2;
        let d = step as isize;
        // Squares: each cell centre from its four corners.
        for y in (0..n).step_by(step) {
            for x in (0..n).step_by(step) {
                let corners = map[y * n + x]
                    + map[wrap(y, d) * n + x]
                    + map[y * n + wrap(x, d)]
                    + map[wrap(y, d) * n + wrap(x, d)];
                map[(y + half) * n + x + half] = jitter(corners, wibble, rng);
            }
        }
        // Diamonds on the cell edges: two centres and two corners each.
        let h = half as isize;
        for y in (0..n).step_by(step) {
            for x in (half..n).step_by(step) {
                let sum = map[wrap(y, h) * n + x]
                    + map[wrap(y, -h) * n + x]
                    + map[y * n + wrap(x, -h)]
                    + map[y * n + wrap(x, h)];
                map[y * n + x] = jitter(sum, wibble, rng);
            }
        }
        for y in (half..n).step_by(step) {
            for x in (0..n).step_by(step) {
                let sum = map[y * n + wrap(x, h)]
                    + map[y * n + wrap(x, -h)]
                    + map[wrap(y, -h) * n + x]
                    + map[wrap(y, h) * n + x];
                map[y * n + x] = jitter(sum, wibble, rng);
            }
        }
        step /= 2;
        wibble /= decay;
    }
    let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = (hi - lo).max(f32::MIN_POSITIVE);
    map.iter().map(|v| (v - lo) / range).collect()
}

/// The mean of four neighbours plus a uniform offset of up to `±wibble²`.
fn jitter(sum_of_four: f32, wibble: f32, rng: &mut impl Rng) -> f32 {
    sum_of_four / 4.0 + wibble * uniform(rng, -wibble, wibble)
}

/// The top-left `height × width` crop of a plasma fractal big enough to cover it.
pub(crate) fn plasma_crop(height: usize, width: usize, decay: f32, rng: &mut impl Rng) -> Vec<f32> {
    let side = height.max(width).next_power_of_two();
    let map = plasma_fractal(side, decay, rng);
    (0..height)
        .flat_map(|y| map[y * side..y * side + width].iter().copied())
        .collect()
}

/// The colour of ice over a dark background: slightly blue (R, G, B gains).
pub(crate) const FROST_TINT: [f32; 3] = [0.86, 0.94, 1.0];

/// The largest side the frost layer is drawn at; bigger images get it upsampled, which
/// keeps crystals the same relative size and the cost bounded.
const FROST_MAX_SIDE: usize = 64;

/// A frost layer in `[0, 1]` (luminance before tint), `height × width`.
///
/// It mimics the photographs' two components: a cloudy haze (a plasma fractal mapped to
/// `0.15..0.55`) and bright ice crystals — straight needles with side branches at ±60°,
/// the six-fold habit of ice — drawn anti-aliased and slightly blurred. It is drawn at
/// most 64 pixels on its shorter side and upsampled bilinearly, so it looks alike at
/// any size. Mean ≈ 0.5, like a mid-grey photo of frosted glass.
pub(crate) fn frost_texture(height: usize, width: usize, rng: &mut impl Rng) -> Vec<f32> {
    let shrink = (height.min(width) as f32 / FROST_MAX_SIDE as f32).max(1.0);
    let (h, w) = (
        ((height as f32 / shrink).round() as usize).max(1),
        ((width as f32 / shrink).round() as usize).max(1),
    );
    let small = frost_texture_at(h, w, rng);
    if (h, w) == (height, width) {
        return small;
    }
    let (sy, sx) = (h as f32 / height as f32, w as f32 / width as f32);
    (0..height * width)
        .map(|i| {
            let (y, x) = ((i / width) as f32, (i % width) as f32);
            // Pixel centres map to pixel centres.
            let (yy, xx) = ((y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5);
            sample_bilinear(&small, h, w, yy, xx, Border::Nearest)
        })
        .collect()
}

fn frost_texture_at(height: usize, width: usize, rng: &mut impl Rng) -> Vec<f32> {
    let haze = plasma_crop(height, width, 1.6, rng);
    let mut crystals = vec![0.0f32; height * width];
    let side = height.min(width) as f32;
    // About 21 crystals on 32×32, growing with the side (not the area) because each
    // crystal's length grows with the side too.
    let count = ((height * width) as f32 / (1.5 * side)).ceil().max(4.0) as usize;
    for _ in 0..count {
        let (y, x) = (
            uniform(rng, 0.0, height as f32),
            uniform(rng, 0.0, width as f32),
        );
        let angle = uniform(rng, 0.0, std::f32::consts::TAU);
        let length = side * uniform(rng, 0.08, 0.3);
        let brightness = uniform(rng, 0.35, 0.8);
        draw_needle(
            &mut crystals,
            height,
            width,
            (y, x),
            angle,
            length,
            brightness,
        );
        let branch_angle = 60f32.to_radians();
        for k in 1..=3 {
            let t = length * k as f32 / 4.0;
            let base = (y + t * angle.sin(), x + t * angle.cos());
            for turn in [-branch_angle, branch_angle] {
                let branch = length * (0.45 - 0.1 * k as f32);
                draw_needle(
                    &mut crystals,
                    height,
                    width,
                    base,
                    angle + turn,
                    branch,
                    brightness * 0.8,
                );
            }
        }
    }
    let crystals = gaussian_blur(&crystals, height, width, 0.35, 3.0, Border::Nearest);
    haze.iter()
        .zip(&crystals)
        .map(|(h, c)| (0.15 + 0.4 * h + c).min(1.0))
        .collect()
}

/// Adds a bright line to `layer`, keeping the maximum where needles cross (ice does not
/// get brighter where crystals overlap), splatting bilinearly every half pixel.
fn draw_needle(
    layer: &mut [f32],
    height: usize,
    width: usize,
    start: (f32, f32),
    angle: f32,
    length: f32,
    brightness: f32,
) {
    let (sin, cos) = angle.sin_cos();
    let steps = (2.0 * length).ceil() as usize;
    for s in 0..=steps {
        let t = s as f32 * 0.5;
        let (y, x) = (start.0 + t * sin, start.1 + t * cos);
        let (y0, x0) = (y.floor(), x.floor());
        let (fy, fx) = (y - y0, x - x0);
        for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
            for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                let (py, px) = (y0 as isize + dy, x0 as isize + dx);
                if (0..height as isize).contains(&py) && (0..width as isize).contains(&px) {
                    let cell = &mut layer[py as usize * width + px as usize];
                    *cell = cell.max(brightness * wy * wx * 1.6);
                }
            }
        }
    }
}

/// Rotates a plane by 180°.
pub(crate) fn rotate_180(plane: &[f32]) -> Vec<f32> {
    plane.iter().rev().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn plasma_spans_the_unit_interval_and_is_deterministic() {
        let a = plasma_fractal(32, 2.0, &mut ChaCha8Rng::seed_from_u64(1));
        let b = plasma_fractal(32, 2.0, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a, b);
        let (lo, hi) = a
            .iter()
            .fold((1f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
        assert_eq!((lo, hi), (0.0, 1.0));
        assert_eq!(
            plasma_crop(5, 7, 2.0, &mut ChaCha8Rng::seed_from_u64(1)).len(),
            35
        );
    }

    #[test]
    fn frost_texture_is_a_mid_grey_with_bright_crystals_at_any_size() {
        for (h, w) in [(32, 32), (28, 28), (224, 200)] {
            let t = frost_texture(h, w, &mut ChaCha8Rng::seed_from_u64(3));
            assert_eq!(t.len(), h * w);
            let mean = t.iter().sum::<f32>() / t.len() as f32;
            let max = t.iter().copied().fold(0.0, f32::max);
            assert!((0.3..0.6).contains(&mean), "{h}x{w}: mean {mean}");
            assert!(max > 0.75, "{h}x{w}: max {max}");
        }
    }
}
