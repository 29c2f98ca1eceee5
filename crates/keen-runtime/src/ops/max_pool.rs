//! Max pooling over f32, u8 or i8 (max commutes with a monotonic quantization, so quantized
//! activations pool directly). Padded positions never win.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::reference::ConvGeometry;
use crate::tensor::{DType, Data, Value, ValueInfo};

/// Attributes of [`crate::Op::MaxPool2d`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPool2dAttrs {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Padding (top, left, bottom, right); each at most half the window.
    #[serde(default)]
    pub padding: [usize; 4],
}

/// Checks pooling attributes; shared with average pooling.
pub(crate) fn check_window(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> OpResult<()> {
    if kernel.contains(&0) || stride.contains(&0) {
        op_bail!("kernel {kernel:?} and stride {stride:?} must be at least 1");
    }
    if padding[0] * 2 > kernel[0]
        || padding[2] * 2 > kernel[0]
        || padding[1] * 2 > kernel[1]
        || padding[3] * 2 > kernel[1]
    {
        op_bail!("padding {padding:?} must be at most half the window {kernel:?}");
    }
    Ok(())
}

/// Output shape of a pooling window over `[N, C, H, W]`, and its geometry.
pub(crate) fn pool_shape(
    input: &ValueInfo,
    dtypes: &[DType],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> OpResult<(Vec<usize>, ConvGeometry)> {
    let s = &input.shape;
    if !dtypes.contains(&input.dtype) || s.len() != 4 {
        op_bail!(
            "input must be [N, C, H, W] of {dtypes:?}, got {} {s:?}",
            input.dtype
        );
    }
    let g = ConvGeometry {
        batch: s[0],
        in_channels: s[1],
        in_hw: [s[2], s[3]],
        out_channels: s[1],
        kernel,
        stride,
        padding,
        groups: s[1],
    };
    let Some([oh, ow]) = g.out_hw() else {
        op_bail!("window {kernel:?} does not fit the {}×{} input", s[2], s[3]);
    };
    Ok((vec![s[0], s[1], oh, ow], g))
}

#[derive(Debug)]
struct MaxPoolKernel(MaxPool2dAttrs);

impl MaxPool2dAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        check_window(self.kernel, self.stride, self.padding)?;
        Ok(Box::new(MaxPoolKernel(self.clone())))
    }
}

const DTYPES: [DType; 3] = [DType::F32, DType::U8, DType::I8];

impl Kernel for MaxPoolKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let a = &self.0;
        let (shape, _) = pool_shape(inputs[0], &DTYPES, a.kernel, a.stride, a.padding)?;
        Ok(ValueInfo::new(inputs[0].dtype, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let a = &self.0;
        let x = inputs[0];
        let (shape, g) = pool_shape(&x.info(), &DTYPES, a.kernel, a.stride, a.padding)?;
        let data = match &x.data {
            Data::F32(v) => Data::F32(max_pool(&g, v)),
            Data::U8(v) => Data::U8(max_pool(&g, v)),
            Data::I8(v) => Data::I8(max_pool(&g, v)),
            Data::I32(_) => op_bail!("i32 input is not supported"),
        };
        Ok(Value { shape, data })
    }
}

fn max_pool<T: Copy + PartialOrd + Default + Send + Sync>(g: &ConvGeometry, input: &[T]) -> Vec<T> {
    let Some([oh, ow]) = g.out_hw() else {
        return Vec::new();
    };
    let [h, w] = g.in_hw;
    let planes = g.batch * g.in_channels;
    let mut out = vec![T::default(); planes * oh * ow];
    if oh * ow == 0 || h * w == 0 {
        return out;
    }
    let pool_one = |(dst, plane): (&mut [T], &[T])| {
        if g.kernel == [2, 2] && g.stride == [2, 2] && g.padding == [0; 4] {
            pool_2x2(plane, w, ow, dst);
        } else {
            pool_plane(g, plane, dst);
        }
    };
    // One channel plane per task: planes are independent and there are many of them.
    if planes > 1 && out.len() >= 1 << 14 {
        out.par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .for_each(pool_one);
    } else {
        out.chunks_mut(oh * ow)
            .zip(input.chunks(h * w))
            .for_each(pool_one);
    }
    out
}

/// The common 2×2 stride-2 window: two input rows give one output row.
fn pool_2x2<T: Copy + PartialOrd>(plane: &[T], w: usize, ow: usize, out: &mut [T]) {
    let max = |a: T, b: T| if b > a { b } else { a };
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        for (ox, o) in row.iter_mut().enumerate() {
            *o = max(
                max(r0[2 * ox], r0[2 * ox + 1]),
                max(r1[2 * ox], r1[2 * ox + 1]),
            );
        }
    }
}

/// Any window, stride and padding, over one channel plane.
fn pool_plane<T: Copy + PartialOrd>(g: &ConvGeometry, plane: &[T], out: &mut [T]) {
    let [h, w] = g.in_hw;
    let Some([oh, ow]) = g.out_hw() else {
        return;
    };
    let mut out = out.iter_mut();
    for oy in 0..oh {
        let y0 = (oy * g.stride[0]) as isize - g.padding[0] as isize;
        let ys = y0.max(0) as usize..((y0 + g.kernel[0] as isize).min(h as isize)) as usize;
        for ox in 0..ow {
            let x0 = (ox * g.stride[1]) as isize - g.padding[1] as isize;
            let xs = x0.max(0) as usize..((x0 + g.kernel[1] as isize).min(w as isize)) as usize;
            // Padding is at most half the window, so every window holds a real pixel.
            let mut best = plane[ys.start * w + xs.start];
            for y in ys.clone() {
                for &v in &plane[y * w + xs.start..y * w + xs.end] {
                    if v > best {
                        best = v;
                    }
                }
            }
            if let Some(o) = out.next() {
                *o = best;
            }
        }
    }
}
