//! Numerically stable softmax (max subtracted) along one axis.

use serde::{Deserialize, Serialize};

use super::{resolve_axis, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Softmax`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxAttrs {
    /// The axis; negative counts from the end (default -1, the last).
    #[serde(default = "last")]
    pub axis: i64,
}

fn last() -> i64 {
    -1
}

impl Default for SoftmaxAttrs {
    fn default() -> Self {
        Self { axis: -1 }
    }
}

#[derive(Debug)]
struct SoftmaxKernel(i64);

impl SoftmaxAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        Ok(Box::new(SoftmaxKernel(self.axis)))
    }
}

impl Kernel for SoftmaxKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        if inputs[0].dtype != DType::F32 {
            op_bail!("input must be f32, got {}", inputs[0].dtype);
        }
        resolve_axis(self.0, inputs[0].shape.len())?;
        Ok(inputs[0].clone())
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let axis = resolve_axis(self.0, x.shape.len())?;
        let len = x.shape[axis];
        let inner: usize = x.shape[axis + 1..].iter().product();
        let mut out = x.as_f32()?.to_vec();
        if len == 0 || inner == 0 {
            return Ok(Value::f32(x.shape.clone(), out));
        }
        for block in out.chunks_mut(len * inner) {
            for i in 0..inner {
                softmax_strided(block, i, inner, len);
            }
        }
        Ok(Value::f32(x.shape.clone(), out))
    }
}

/// Softmax in place over `v[start], v[start + stride], ...` (`len` elements).
pub(crate) fn softmax_strided(v: &mut [f32], start: usize, stride: usize, len: usize) {
    let idx = |j: usize| start + j * stride;
    let max = (0..len)
        .map(|j| v[idx(j)])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for j in 0..len {
        let e = (v[idx(j)] - max).exp();
        v[idx(j)] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for j in 0..len {
        v[idx(j)] *= inv;
    }
}
