//! The shape of one 2-D convolution (groups = 1), checked once and shared by every kernel.

use crate::KernelError;

/// Sizes of a 2-D convolution over NCHW activations and `[C_out, C_in, kh, kw]` weights.
///
/// The GEMM kernels see each image through its im2col matrix: `patch_len()` rows
/// (`C_in·kh·kw`, one per weight column) by `out_pixels()` columns (`OH·OW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `(begin, end)` zero padding per spatial axis (height, width).
    pub padding: [(usize, usize); 2],
    pub dilation: [usize; 2],
    pub out_height: usize,
    pub out_width: usize,
}

impl Conv2dGeometry {
    /// Checks the sizes and derives the output size; fails on zero sizes, zero strides or
    /// dilations, channel counts that disagree, or a kernel wider than the padded input.
    pub fn new(
        input_shape: [usize; 4],
        weight_shape: [usize; 4],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    ) -> Result<Self, KernelError> {
        let [batch, in_channels, in_height, in_width] = input_shape;
        let [out_channels, weight_in_channels, kh, kw] = weight_shape;
        if weight_in_channels != in_channels {
            return Err(KernelError::ChannelMismatch {
                input_shape,
                weight_shape,
            });
        }
        if input_shape.contains(&0)
            || weight_shape.contains(&0)
            || stride.contains(&0)
            || dilation.contains(&0)
        {
            return Err(KernelError::ZeroSize {
                input_shape,
                weight_shape,
                stride,
                dilation,
            });
        }
        let out_size = |size: usize, (begin, end): (usize, usize), k: usize, s: usize, d: usize| {
            let padded = size + begin + end;
            let reach = d * (k - 1) + 1;
            (padded >= reach).then(|| (padded - reach) / s + 1)
        };
        let (Some(out_height), Some(out_width)) = (
            out_size(in_height, padding[0], kh, stride[0], dilation[0]),
            out_size(in_width, padding[1], kw, stride[1], dilation[1]),
        ) else {
            return Err(KernelError::KernelLargerThanInput {
                input_shape,
                weight_shape,
                padding,
                dilation,
            });
        };
        Ok(Self {
            batch,
            in_channels,
            in_height,
            in_width,
            out_channels,
            kernel: [kh, kw],
            stride,
            padding,
            dilation,
            out_height,
            out_width,
        })
    }

    /// Elements of one input image, `C_in·H·W`.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.in_height * self.in_width
    }

    /// Output pixels per channel of one image, `OH·OW`: the im2col matrix's column count.
    pub fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Elements of one output image, `C_out·OH·OW`.
    pub fn out_image_len(&self) -> usize {
        self.out_channels * self.out_pixels()
    }

    /// One weight row, `C_in·kh·kw`: the im2col matrix's row count and the GEMM depth.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    /// `[N, C_in, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_height, self.in_width]
    }

    /// `[N, C_out, OH, OW]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [
            self.batch,
            self.out_channels,
            self.out_height,
            self.out_width,
        ]
    }

    /// `[C_out, C_in, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
    }
}
