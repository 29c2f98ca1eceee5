//! Batch normalisation, optionally followed by a ReLU, on f32 `[N, C, ...]` buffers, in training
//! mode (statistics of the batch itself, with the backward pass) and inference mode (given
//! statistics): the shape, the plain reference loops and the fused kernels keen runs.

pub mod fused;
pub mod reference;

use crate::error::check_len;
use crate::KernelError;

/// The layout of a batch-norm input: `batch` images of `channels` planes of `plane` values each
/// (`plane` is the product of the dimensions after the channel one, 1 for `[N, C]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNormShape {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl BatchNormShape {
    /// The layout of an input of shape `dims` (`[N, C, ...]`), or an error for a rank below 2 or
    /// an empty batch, channel or plane (batch statistics of nothing are undefined).
    pub fn new(dims: &[usize]) -> Result<Self, KernelError> {
        let shape_error = || KernelError::BatchNormShape {
            dims: dims.to_vec(),
        };
        let &[batch, channels, ref rest @ ..] = dims else {
            return Err(shape_error());
        };
        let plane = rest.iter().product::<usize>();
        if batch == 0 || channels == 0 || plane == 0 {
            return Err(shape_error());
        }
        Ok(Self {
            batch,
            channels,
            plane,
        })
    }

    /// Elements of the whole input.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Always false: [`BatchNormShape::new`] refuses empty inputs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values each channel's statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.batch * self.plane
    }

    /// Fails unless `x` holds this shape's values and `gamma` and `beta` one per channel.
    pub(crate) fn check_operands(
        &self,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
    ) -> Result<(), KernelError> {
        check_len("batch norm input", x.len(), self.len())?;
        check_len("batch norm gamma", gamma.len(), self.channels)?;
        check_len("batch norm beta", beta.len(), self.channels)
    }

    /// Fails unless `stats` hold one mean and one variance per channel.
    pub(crate) fn check_stats(&self, stats: &BatchStats) -> Result<(), KernelError> {
        check_len("batch norm mean", stats.mean.len(), self.channels)?;
        check_len("batch norm variance", stats.variance.len(), self.channels)
    }
}

/// The batch statistics a training-mode batch norm normalises with: per channel, the mean and
/// the biased (population) variance, without epsilon — what burn's `batch_norm_train` returns
/// and what running statistics are fed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

/// The output of a training-mode batch norm and the statistics it used.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormOutput {
    pub output: Vec<f32>,
    pub stats: BatchStats,
}

/// Gradients of a training-mode batch norm with respect to its input, `gamma` and `beta`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormGrads {
    pub input: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}
