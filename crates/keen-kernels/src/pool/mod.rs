//! 2-D max pooling (no padding, no dilation) on f32 NCHW buffers: the shape, the plain reference
//! loops and the plane-parallel kernels that training uses, forward and backward.
//!
//! The forward pass returns each output's maximum and where it came from (its index inside the
//! input plane), which is all the backward pass needs: the gradient of an output goes to that one
//! input. Both kernels pick the same input: the first maximum in row-major window order, or the
//! last NaN where a window holds NaN (NaN propagates, as in burn and PyTorch).

pub mod parallel;
pub mod reference;

use crate::error::check_len;
use crate::KernelError;

/// Sizes of a 2-D max pooling over NCHW activations, with no padding and no dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dGeometry {
    pub batch: usize,
    pub channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub out_height: usize,
    pub out_width: usize,
}

impl MaxPool2dGeometry {
    /// Checks the sizes and derives the output size (floor mode); fails on zero sizes or
    /// strides, on a window larger than the input and on planes of 2³² values or more.
    pub fn new(
        input_shape: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Self, KernelError> {
        let [batch, channels, in_height, in_width] = input_shape;
        let fits = !input_shape.contains(&0)
            && !kernel.contains(&0)
            && !stride.contains(&0)
            && kernel[0] <= in_height
            && kernel[1] <= in_width
            // The backward pass keeps each maximum's place in its plane as a u32.
            && in_height * in_width <= u32::MAX as usize;
        if !fits {
            return Err(KernelError::PoolShape {
                input_shape,
                kernel,
                stride,
            });
        }
        Ok(Self {
            batch,
            channels,
            in_height,
            in_width,
            kernel,
            stride,
            out_height: (in_height - kernel[0]) / stride[0] + 1,
            out_width: (in_width - kernel[1]) / stride[1] + 1,
        })
    }

    /// `[N, C, H, W]` of the input.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.in_height, self.in_width]
    }

    /// `[N, C, OH, OW]` of the output.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_height, self.out_width]
    }

    /// Channel planes of the whole batch: the kernels pool each one on its own.
    pub fn planes(&self) -> usize {
        self.batch * self.channels
    }

    /// Values of one input plane.
    pub fn in_plane(&self) -> usize {
        self.in_height * self.in_width
    }

    /// Values of one output plane.
    pub fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Fails unless `len` is the element count of the whole input.
    pub(crate) fn check_input(&self, what: &'static str, len: usize) -> Result<(), KernelError> {
        check_len(what, len, self.planes() * self.in_plane())
    }

    /// Fails unless `len` is the element count of the whole output.
    pub(crate) fn check_output(&self, what: &'static str, len: usize) -> Result<(), KernelError> {
        check_len(what, len, self.planes() * self.out_plane())
    }

    /// What both backward kernels start from: checks the forward pass's indices and the output
    /// gradient against the output's size, and returns the input gradient, zeroed.
    pub(crate) fn zeroed_input_grad(
        &self,
        argmax: &[u32],
        out_grad: &[f32],
    ) -> Result<Vec<f32>, KernelError> {
        self.check_output("max pool indices", argmax.len())?;
        self.check_output("max pool output gradient", out_grad.len())?;
        Ok(vec![0.0; self.planes() * self.in_plane()])
    }
}

/// The forward pass's result: the pooled values `[N, C, OH, OW]` and, for each, the index inside
/// its input plane (`row · W + column`) of the input it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPoolOutput {
    pub values: Vec<f32>,
    pub argmax: Vec<u32>,
}

/// Whether `candidate` replaces `best` as a window's maximum: it is larger, or it is NaN (so a
/// NaN anywhere in the window wins, the last one if several). Shared by both kernels so that
/// they pick the same input on ties.
#[inline(always)]
pub(crate) fn replaces(candidate: f32, best: f32) -> bool {
    candidate > best || candidate.is_nan()
}
