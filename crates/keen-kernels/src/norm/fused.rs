//! Training-mode batch norm (+ ReLU) in two passes over memory each way, with no layout copies.
//!
//! burn's generic `batch_norm_train` swaps the batch and channel axes into a copy to reduce per
//! channel, twice, then normalises through four broadcast element-wise ops, and its backward
//! does the same again; a ReLU after it is two more passes. Here, for an `[N, C, plane]` input:
//!
//! - forward: per channel (channels in parallel), the mean and then the variance over its `N`
//!   contiguous planes, while they sit in cache; then per image (images in parallel)
//!   `y = (x − mean)·γ/σ + β`, clamped at 0 for ReLU, written once.
//! - backward: per channel, `Σ dy` and `Σ dy·x̂` (ReLU's mask recomputed from `x` with the same
//!   f32 arithmetic the forward used, so it is the mask the forward applied); then per image
//!   `dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂))`, folded to `k·dy + c₀ + c₁·(x − mean)`.
//!
//! Sums run in f32 lanes within a plane and in f64 across planes, in a fixed order: the result
//! does not depend on how rayon schedules the channels, so training stays bit-reproducible.

use rayon::prelude::*;

use crate::simd::with_avx2;

use super::{BatchNormGrads, BatchNormOutput, BatchNormShape, BatchStats};
use crate::error::check_len;
use crate::KernelError;

/// Independent f32 accumulators per plane: enough for the compiler to keep a vector register
/// busy, and a short enough chain that f32 rounding stays far below f64's across planes.
const LANES: usize = 8;

/// `Σ term(v)` over `values`, in [`LANES`] f32 partial sums, returned in f64.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    let tail_sum: f64 = tail.iter().map(|&v| term(v) as f64).sum();
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail_sum
}

/// `(Σ a, Σ b)` of `term(x, g) = (a, b)` over two planes, like [`lane_sum`].
#[inline(always)]
fn lane_sum_pair(xs: &[f32], gs: &[f32], term: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut first, mut second) = ([0f32; LANES], [0f32; LANES]);
    let split = xs.len() - xs.len() % LANES;
    for (x_chunk, g_chunk) in xs[..split]
        .chunks_exact(LANES)
        .zip(gs[..split].chunks_exact(LANES))
    {
        for lane in 0..LANES {
            let (a, b) = term(x_chunk[lane], g_chunk[lane]);
            first[lane] += a;
            second[lane] += b;
        }
    }
    let (mut total_a, mut total_b) = (0f64, 0f64);
    for (&x, &g) in xs[split..].iter().zip(&gs[split..]) {
        let (a, b) = term(x, g);
        total_a += a as f64;
        total_b += b as f64;
    }
    total_a += first.iter().map(|&v| v as f64).sum::<f64>();
    total_b += second.iter().map(|&v| v as f64).sum::<f64>();
    (total_a, total_b)
}

/// The `N` planes of channel `c`, in batch order.
fn planes<'a>(
    shape: &BatchNormShape,
    values: &'a [f32],
    c: usize,
) -> impl Iterator<Item = &'a [f32]> + 'a {
    let (channels, plane) = (shape.channels, shape.plane);
    (0..shape.batch).map(move |n| &values[(n * channels + c) * plane..][..plane])
}

/// Per channel, what normalising it takes.
#[derive(Debug, Clone, Copy)]
struct ChannelNorm {
    mean: f32,
    variance: f32,
    inv_std: f32,
    /// `γ / σ`.
    scale: f32,
    beta: f32,
}

impl ChannelNorm {
    fn new(mean: f32, variance: f32, gamma: f32, beta: f32, epsilon: f64) -> Self {
        let inv_std = (1.0 / (variance as f64 + epsilon).sqrt()) as f32;
        Self {
            mean,
            variance,
            inv_std,
            scale: gamma * inv_std,
            beta,
        }
    }

    /// The forward output before any ReLU; the backward recomputes it with this same function so
    /// its ReLU mask is bit for bit the forward's.
    #[inline(always)]
    fn affine(&self, x: f32) -> f32 {
        // Centred first: folding the mean into the shift (`x·scale + shift`) cancels digits when
        // the mean is large against the spread, as it is in a channel of few values.
        (x - self.mean) * self.scale + self.beta
    }
}

/// Per channel, the batch mean and biased variance (two passes, the second over values still in
/// cache, so no catastrophic cancellation of `E[x²] − E[x]²`) and the affine it normalises with.
fn channel_norms(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Vec<ChannelNorm> {
    let count = shape.per_channel() as f64;
    (0..shape.channels)
        .into_par_iter()
        .map(|c| with_avx2(|| channel_norm(shape, x, c, gamma[c], beta[c], epsilon, count)))
        .collect()
}

/// [`ChannelNorm`] of channel `c`.
#[inline(always)]
fn channel_norm(
    shape: &BatchNormShape,
    x: &[f32],
    c: usize,
    gamma: f32,
    beta: f32,
    epsilon: f64,
    count: f64,
) -> ChannelNorm {
    let mean = planes(shape, x, c).map(|p| lane_sum(p, |v| v)).sum::<f64>() / count;
    let mean_f32 = mean as f32;
    let variance = planes(shape, x, c)
        .map(|p| {
            lane_sum(p, |v| {
                let d = v - mean_f32;
                d * d
            })
        })
        .sum::<f64>()
        / count;
    ChannelNorm::new(mean_f32, variance as f32, gamma, beta, epsilon)
}

/// Per channel, the affine that normalises with given statistics (running ones in inference, the
/// forward's own in the backward pass).
fn norms_from_stats(
    stats: &BatchStats,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Vec<ChannelNorm> {
    (0..gamma.len())
        .map(|c| ChannelNorm::new(stats.mean[c], stats.variance[c], gamma[c], beta[c], epsilon))
        .collect()
}

/// `y = (x − mean)·γ/σ + β` over every plane of `x`, clamped at 0 when `relu`: the one write
/// both the training and the inference forward end with.
fn apply_norms(shape: &BatchNormShape, x: &[f32], norms: &[ChannelNorm], relu: bool) -> Vec<f32> {
    let mut output = vec![0f32; x.len()];
    let image = shape.channels * shape.plane;
    output
        .par_chunks_mut(image)
        .zip(x.par_chunks(image))
        .for_each(|(out_image, x_image)| {
            with_avx2(|| {
                for ((out_plane, x_plane), norm) in out_image
                    .chunks_exact_mut(shape.plane)
                    .zip(x_image.chunks_exact(shape.plane))
                    .zip(norms)
                {
                    normalize_plane(norm, relu, x_plane, out_plane);
                }
            })
        });
    output
}

/// Inference-mode batch norm of `x` with the given (running) statistics, followed by a ReLU
/// when `relu`; the same result as [`super::reference::batch_norm_inference`] up to f32
/// rounding.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_inference(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &BatchStats,
    epsilon: f64,
    relu: bool,
) -> Result<Vec<f32>, KernelError> {
    shape.check_operands(x, gamma, beta)?;
    shape.check_stats(stats)?;
    let norms = norms_from_stats(stats, gamma, beta, epsilon);
    Ok(apply_norms(shape, x, &norms, relu))
}

/// Training-mode batch norm of `x` (`[N, C, ...]` as `shape`), followed by a ReLU when `relu`;
/// the same result as [`super::reference::batch_norm_forward`] up to f32 rounding.
pub fn batch_norm_forward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> Result<BatchNormOutput, KernelError> {
    shape.check_operands(x, gamma, beta)?;
    let norms = channel_norms(shape, x, gamma, beta, epsilon);
    let output = apply_norms(shape, x, &norms, relu);
    Ok(BatchNormOutput {
        output,
        stats: BatchStats {
            mean: norms.iter().map(|n| n.mean).collect(),
            variance: norms.iter().map(|n| n.variance).collect(),
        },
    })
}

/// The gradient reaching the batch norm's own output: all of `g` without ReLU, and with it only
/// where the forward output was positive.
#[inline(always)]
fn passed(norm: &ChannelNorm, relu: bool, x: f32, g: f32) -> f32 {
    if relu && norm.affine(x) <= 0.0 {
        0.0
    } else {
        g
    }
}

/// One plane of the forward output.
#[inline(always)]
fn normalize_plane(norm: &ChannelNorm, relu: bool, x: &[f32], out: &mut [f32]) {
    // A local copy, so the compiler keeps it in registers rather than reloading it per value.
    let norm = *norm;
    if relu {
        for (o, &v) in out.iter_mut().zip(x) {
            let y = norm.affine(v);
            *o = if y > 0.0 { y } else { 0.0 };
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = norm.affine(v);
        }
    }
}

/// One plane of the input gradient: `k·dy + c₀ + c₁·(x − mean)`.
#[inline(always)]
fn input_grad_plane(
    norm: &ChannelNorm,
    relu: bool,
    c0: f32,
    c1: f32,
    x: &[f32],
    g: &[f32],
    dx: &mut [f32],
) {
    let norm = *norm;
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(g) {
        *d = norm.scale * passed(&norm, relu, v, g) + c0 + c1 * (v - norm.mean);
    }
}

/// Gradients of [`batch_norm_forward`] (same `x`, `gamma`, `beta`, `epsilon`, `relu`) given the
/// gradient of its output. `stats` are the statistics the forward returned.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &BatchStats,
    epsilon: f64,
    relu: bool,
    out_grad: &[f32],
) -> Result<BatchNormGrads, KernelError> {
    shape.check_operands(x, gamma, beta)?;
    check_len("batch norm output gradient", out_grad.len(), shape.len())?;
    shape.check_stats(stats)?;
    let count = shape.per_channel() as f64;
    // Per channel: (norm, Σ dy, Σ dy·x̂).
    let sums: Vec<(ChannelNorm, f64, f64)> = norms_from_stats(stats, gamma, beta, epsilon)
        .into_par_iter()
        .enumerate()
        .map(|(c, norm)| {
            let (sum_dy, sum_dy_centred) = with_avx2(|| {
                let (mut sum_dy, mut sum_dy_centred) = (0f64, 0f64);
                for (xs, gs) in planes(shape, x, c).zip(planes(shape, out_grad, c)) {
                    let (a, b) = lane_sum_pair(xs, gs, |v, g| {
                        let dy = passed(&norm, relu, v, g);
                        (dy, dy * (v - norm.mean))
                    });
                    sum_dy += a;
                    sum_dy_centred += b;
                }
                (sum_dy, sum_dy_centred)
            });
            (norm, sum_dy, sum_dy_centred * norm.inv_std as f64)
        })
        .collect();
    // dx = k·dy − k·mean(dy) − k·x̂·mean(dy·x̂) with k = γ/σ and x̂ = (x − mean)/σ,
    // i.e. k·dy + c₀ + c₁·(x − mean).
    let coefficients: Vec<(ChannelNorm, f32, f32)> = sums
        .iter()
        .map(|&(norm, sum_dy, sum_dy_normalized)| {
            let k = norm.scale as f64;
            let inv_std = norm.inv_std as f64;
            let c1 = -k * (sum_dy_normalized / count) * inv_std;
            let c0 = -k * (sum_dy / count);
            (norm, c0 as f32, c1 as f32)
        })
        .collect();
    let mut input = vec![0f32; x.len()];
    let image = shape.channels * shape.plane;
    input
        .par_chunks_mut(image)
        .zip(x.par_chunks(image).zip(out_grad.par_chunks(image)))
        .for_each(|(dx_image, (x_image, g_image))| {
            with_avx2(|| {
                for (((dx_plane, x_plane), g_plane), &(norm, c0, c1)) in dx_image
                    .chunks_exact_mut(shape.plane)
                    .zip(x_image.chunks_exact(shape.plane))
                    .zip(g_image.chunks_exact(shape.plane))
                    .zip(&coefficients)
                {
                    input_grad_plane(&norm, relu, c0, c1, x_plane, g_plane, dx_plane);
                }
            })
        });
    Ok(BatchNormGrads {
        input,
        gamma: sums.iter().map(|s| s.2 as f32).collect(),
        beta: sums.iter().map(|s| s.1 as f32).collect(),
    })
}
