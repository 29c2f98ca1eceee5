//! The geometry every attack shares: step directions, projection onto the ε-ball and the
//! pixel box, random starts, and a small seeded generator.

use super::Norm;

/// SplitMix64 (Steele et al. 2014): a tiny, fast, seedable generator, enough for random starts.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// The steepest-ascent direction of unit norm for `norm`: the sign of the gradient for L∞,
/// the gradient over its length for L2 (zero where the gradient is zero).
pub(crate) fn ascent_direction(gradient: &[f32], norm: Norm, out: &mut [f32]) {
    match norm {
        Norm::Linf => {
            for (o, &g) in out.iter_mut().zip(gradient) {
                *o = if g > 0.0 {
                    1.0
                } else if g < 0.0 {
                    -1.0
                } else {
                    0.0
                };
            }
        }
        Norm::L2 => {
            let length = l2(gradient);
            let scale = if length > 1e-12 { 1.0 / length } else { 0.0 };
            for (o, &g) in out.iter_mut().zip(gradient) {
                *o = g * scale;
            }
        }
    }
}

/// Euclidean length, summed in f64.
pub(crate) fn l2(values: &[f32]) -> f32 {
    values
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt() as f32
}

/// Moves `adversarial` (one image) onto the ε-ball around `clean`, then into `[0, 1]`.
pub(crate) fn project(adversarial: &mut [f32], clean: &[f32], norm: Norm, eps: f32) {
    match norm {
        Norm::Linf => {
            for (a, &c) in adversarial.iter_mut().zip(clean) {
                *a = a.clamp(c - eps, c + eps);
            }
        }
        Norm::L2 => {
            let length = adversarial
                .iter()
                .zip(clean)
                .map(|(&a, &c)| ((a - c) as f64).powi(2))
                .sum::<f64>()
                .sqrt() as f32;
            if length > eps {
                let scale = eps / length;
                for (a, &c) in adversarial.iter_mut().zip(clean) {
                    *a = c + (*a - c) * scale;
                }
            }
        }
    }
    // Clipping moves each coordinate towards `clean` (itself in [0, 1]), so it never leaves
    // the ball it was projected onto.
    for a in adversarial.iter_mut() {
        *a = a.clamp(0.0, 1.0);
    }
}

/// A uniformly random point of the ε-ball around `clean` (then clipped to `[0, 1]`).
pub(crate) fn random_start(
    clean: &[f32],
    norm: Norm,
    eps: f32,
    rng: &mut SplitMix64,
    out: &mut [f32],
) {
    match norm {
        Norm::Linf => {
            for (o, &c) in out.iter_mut().zip(clean) {
                *o = c + eps * (2.0 * rng.uniform() - 1.0);
            }
        }
        Norm::L2 => {
            // A Gaussian direction, and a radius distributed as u^(1/d) for uniformity in
            // volume.
            for o in out.iter_mut() {
                *o = rng.normal();
            }
            let length = l2(out).max(1e-12);
            let d = clean.len().max(1) as f64;
            let radius = eps * (rng.uniform() as f64).powf(1.0 / d) as f32;
            for (o, &c) in out.iter_mut().zip(clean) {
                *o = c + *o * radius / length;
            }
        }
    }
    project(out, clean, norm, eps);
}

/// The ε-ball around a batch of clean images, intersected with the pixel box `[0, 1]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ball<'a> {
    /// The clean images.
    pub clean: &'a [f32],
    /// The norm.
    pub norm: Norm,
    /// The radius.
    pub eps: f32,
    /// Values per image.
    pub image_len: usize,
}

impl<'a> Ball<'a> {
    /// `current + step · direction(gradient)`, projected, image by image (`steps` has one
    /// step size per image).
    pub fn step(&self, current: &[f32], gradient: &[f32], steps: &[f32], out: &mut [f32]) {
        let n = self.image_len;
        let mut direction = vec![0.0f32; n];
        for (i, &s) in steps.iter().enumerate() {
            let range = i * n..(i + 1) * n;
            ascent_direction(&gradient[range.clone()], self.norm, &mut direction);
            let o = &mut out[range.clone()];
            for ((o, &x), &d) in o.iter_mut().zip(&current[range.clone()]).zip(&direction) {
                *o = x + s * d;
            }
            project(o, &self.clean[range], self.norm, self.eps);
        }
    }

    /// Projects every image of `x` onto the ball.
    pub fn project(&self, x: &mut [f32]) {
        let n = self.image_len;
        for (x, clean) in x.chunks_mut(n).zip(self.clean.chunks(n)) {
            project(x, clean, self.norm, self.eps);
        }
    }

    /// A uniformly random point of the ball for every image.
    pub fn random_start(&self, rng: &mut SplitMix64) -> Vec<f32> {
        let n = self.image_len;
        let mut out = vec![0.0f32; self.clean.len()];
        for (clean, o) in self.clean.chunks(n).zip(out.chunks_mut(n)) {
            random_start(clean, self.norm, self.eps, rng, o);
        }
        out
    }
}
