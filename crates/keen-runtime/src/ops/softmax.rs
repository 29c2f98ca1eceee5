//! Numerically stable softmax (max subtracted) along one axis.

use serde::{Deserialize, Serialize};

use super::activation::exp_fast;
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
    if stride == 1 {
        return softmax_row(&mut v[start..start + len]);
    }
    let idx = |j: usize| start + j * stride;
    let max = (0..len)
        .map(|j| v[idx(j)])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for j in 0..len {
        let e = exp_fast(v[idx(j)] - max);
        v[idx(j)] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for j in 0..len {
        v[idx(j)] *= inv;
    }
}

/// Softmax of one contiguous row, compiled for AVX-512 where available (attention runs one per
/// query token and head).
pub(crate) fn softmax_row(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F was detected just above.
        unsafe { softmax_row_avx512(row) };
        return;
    }
    softmax_row_generic(row);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32]) {
    softmax_row_generic(row);
}

/// Lanes of the manual reductions: float sums and maxima only vectorise when the lanes are
/// explicit (the compiler may not reorder float additions itself).
const LANES: usize = 16;

#[inline(always)]
fn softmax_row_generic(row: &mut [f32]) {
    let bigger = |a: f32, b: f32| if b > a { b } else { a };
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lane_max.iter_mut().zip(chunk) {
            *m = bigger(*m, v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lane_max)
        .fold(f32::NEG_INFINITY, |m, &v| bigger(m, v));
    let mut lane_sum = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in lane_sum.iter_mut().zip(chunk) {
            *v = exp_fast(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = lane_sum.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_fast(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}
