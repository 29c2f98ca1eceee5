//! fp32 average pooling.

use serde::{Deserialize, Serialize};

use super::max_pool::{check_window, pool_shape};
use super::{Kernel, NodeInputs};
use crate::error::OpResult;
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::AvgPool2d`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgPool2dAttrs {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Padding (top, left, bottom, right); each at most half the window.
    #[serde(default)]
    pub padding: [usize; 4],
    /// Divide by the whole window (true, burn's and PyTorch's default) or only by the pixels
    /// inside the image.
    #[serde(default = "yes")]
    pub count_include_pad: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
struct AvgPoolKernel(AvgPool2dAttrs);

impl AvgPool2dAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        check_window(self.kernel, self.stride, self.padding)?;
        Ok(Box::new(AvgPoolKernel(self.clone())))
    }
}

impl Kernel for AvgPoolKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let a = &self.0;
        let (shape, _) = pool_shape(inputs[0], &[DType::F32], a.kernel, a.stride, a.padding)?;
        Ok(ValueInfo::new(DType::F32, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let a = &self.0;
        let x = inputs[0];
        let (shape, g) = pool_shape(&x.info(), &[DType::F32], a.kernel, a.stride, a.padding)?;
        let [oh, ow] = [shape[2], shape[3]];
        let [h, w] = g.in_hw;
        let window = (a.kernel[0] * a.kernel[1]) as f32;
        let mut out = Vec::with_capacity(shape.iter().product());
        for plane in x
            .as_f32()?
            .chunks_exact((h * w).max(1))
            .take(shape[0] * shape[1])
        {
            for oy in 0..oh {
                let y0 = (oy * a.stride[0]) as isize - a.padding[0] as isize;
                let y1 = (y0 + a.kernel[0] as isize).min(h as isize) as usize;
                let y0 = y0.max(0) as usize;
                for ox in 0..ow {
                    let x0 = (ox * a.stride[1]) as isize - a.padding[1] as isize;
                    let x1 = (x0 + a.kernel[1] as isize).min(w as isize) as usize;
                    let x0 = x0.max(0) as usize;
                    let sum: f32 = (y0..y1)
                        .map(|y| plane[y * w + x0..y * w + x1].iter().sum::<f32>())
                        .sum();
                    let count = if a.count_include_pad {
                        window
                    } else {
                        ((y1 - y0) * (x1 - x0)) as f32
                    };
                    out.push(sum / count);
                }
            }
        }
        Ok(Value::f32(shape, out))
    }
}
