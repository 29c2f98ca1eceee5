//! What can be wrong with the buffers and shapes handed to a kernel.

/// Errors of keen's kernels: each names the shape or length that was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("convolution input {input_shape:?} has a different channel count than weight {weight_shape:?} expects")]
    ChannelMismatch {
        input_shape: [usize; 4],
        weight_shape: [usize; 4],
    },
    #[error("convolution with a zero size: input {input_shape:?}, weight {weight_shape:?}, stride {stride:?}, dilation {dilation:?}")]
    ZeroSize {
        input_shape: [usize; 4],
        weight_shape: [usize; 4],
        stride: [usize; 2],
        dilation: [usize; 2],
    },
    #[error("convolution kernel {weight_shape:?} (dilation {dilation:?}) is larger than the padded input {input_shape:?} (padding {padding:?})")]
    KernelLargerThanInput {
        input_shape: [usize; 4],
        weight_shape: [usize; 4],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    },
    #[error("max pool window {kernel:?} with stride {stride:?} does not fit input {input_shape:?} (no size or stride may be zero, the window may not be larger than the input)")]
    PoolShape {
        input_shape: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    #[error("batch norm input of shape {dims:?} is not [batch, channels, ...] with every size above zero")]
    BatchNormShape { dims: Vec<usize> },
    #[error("{what} has {len} elements, expected {expected}")]
    BufferLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
}

/// Fails unless `len` is the element count `expected` that `what` must have.
pub(crate) fn check_len(
    what: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), KernelError> {
    if len == expected {
        Ok(())
    } else {
        Err(KernelError::BufferLength {
            what,
            len,
            expected,
        })
    }
}
