//! Plain batch-norm loops: the definition the fused kernels are tested against.
//!
//! Everything in f64, one value per loop iteration, no threads, and the backward pass in the
//! textbook chain-rule form (through the gradients of the variance and the mean, as Ioffe and
//! Szegedy write it) rather than the folded form [`super::fused`] uses, so the two do not share
//! a derivation.

use super::{BatchNormGrads, BatchNormOutput, BatchNormShape, BatchStats};
use crate::error::check_len;
use crate::KernelError;

/// The flat indices of channel `c`'s values in an `[N, C, ...]` buffer.
fn channel_indices(shape: &BatchNormShape, c: usize) -> impl Iterator<Item = usize> + '_ {
    (0..shape.batch).flat_map(move |n| {
        let start = (n * shape.channels + c) * shape.plane;
        start..start + shape.plane
    })
}

struct Channel {
    mean: f64,
    variance: f64,
    std: f64,
}

fn channel_stats(shape: &BatchNormShape, x: &[f32], c: usize, epsilon: f64) -> Channel {
    let count = shape.per_channel() as f64;
    let mean = channel_indices(shape, c).map(|i| x[i] as f64).sum::<f64>() / count;
    let variance = channel_indices(shape, c)
        .map(|i| (x[i] as f64 - mean).powi(2))
        .sum::<f64>()
        / count;
    Channel {
        mean,
        variance,
        std: (variance + epsilon).sqrt(),
    }
}

/// `y = gamma · (x − mean) / sqrt(var + epsilon) + beta` per channel with the batch's own mean
/// and biased variance, then `max(y, 0)` when `relu`.
pub fn batch_norm_forward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> Result<BatchNormOutput, KernelError> {
    shape.check_operands(x, gamma, beta)?;
    let mut output = vec![0f32; x.len()];
    let mut stats = BatchStats {
        mean: Vec::new(),
        variance: Vec::new(),
    };
    for c in 0..shape.channels {
        let channel = channel_stats(shape, x, c, epsilon);
        for i in channel_indices(shape, c) {
            let y = gamma[c] as f64 * (x[i] as f64 - channel.mean) / channel.std + beta[c] as f64;
            output[i] = if relu { y.max(0.0) } else { y } as f32;
        }
        stats.mean.push(channel.mean as f32);
        stats.variance.push(channel.variance as f32);
    }
    Ok(BatchNormOutput { output, stats })
}

/// Gradients of [`batch_norm_forward`] given the gradient of its output.
pub fn batch_norm_backward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
    out_grad: &[f32],
) -> Result<BatchNormGrads, KernelError> {
    shape.check_operands(x, gamma, beta)?;
    check_len("batch norm output gradient", out_grad.len(), shape.len())?;
    let count = shape.per_channel() as f64;
    let mut grads = BatchNormGrads {
        input: vec![0f32; x.len()],
        gamma: Vec::new(),
        beta: Vec::new(),
    };
    for c in 0..shape.channels {
        let Channel {
            mean,
            variance,
            std,
        } = channel_stats(shape, x, c, epsilon);
        let gamma_c = gamma[c] as f64;
        let normalized = |i: usize| (x[i] as f64 - mean) / std;
        // The gradient reaching the batch norm's own output: ReLU passes it where it was open.
        let dy = |i: usize| {
            let open = !relu || gamma_c * normalized(i) + beta[c] as f64 > 0.0;
            if open {
                out_grad[i] as f64
            } else {
                0.0
            }
        };
        let dnormalized = |i: usize| dy(i) * gamma_c;
        let dvariance = channel_indices(shape, c)
            .map(|i| dnormalized(i) * (x[i] as f64 - mean) * -0.5 * (variance + epsilon).powf(-1.5))
            .sum::<f64>();
        let dmean = channel_indices(shape, c)
            .map(|i| -dnormalized(i) / std)
            .sum::<f64>()
            + dvariance
                * channel_indices(shape, c)
                    .map(|i| -2.0 * (x[i] as f64 - mean))
                    .sum::<f64>()
                / count;
        for i in channel_indices(shape, c) {
            grads.input[i] = (dnormalized(i) / std
                + dvariance * 2.0 * (x[i] as f64 - mean) / count
                + dmean / count) as f32;
        }
        grads.gamma.push(
            channel_indices(shape, c)
                .map(|i| dy(i) * normalized(i))
                .sum::<f64>() as f32,
        );
        grads
            .beta
            .push(channel_indices(shape, c).map(dy).sum::<f64>() as f32);
    }
    Ok(grads)
}

/// `y = gamma · (x − mean) / sqrt(variance + epsilon) + beta` per channel with the given
/// statistics (a model's running ones), then `max(y, 0)` when `relu`.
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
    let mut output = vec![0f32; x.len()];
    for c in 0..shape.channels {
        let std = (stats.variance[c] as f64 + epsilon).sqrt();
        for i in channel_indices(shape, c) {
            let y = gamma[c] as f64 * (x[i] as f64 - stats.mean[c] as f64) / std + beta[c] as f64;
            output[i] = if relu { y.max(0.0) } else { y } as f32;
        }
    }
    Ok(output)
}
