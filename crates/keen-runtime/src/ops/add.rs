//! Elementwise fp32 addition with NumPy broadcasting (residuals, positional embeddings) and an
//! optional fused activation (ResNet's `relu(out + identity)`).

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Add`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAttrs {
    /// Activation fused into the output.
    #[serde(default, skip_serializing_if = "is_none")]
    pub activation: Activation,
}

#[derive(Debug)]
struct AddKernel(Activation);

impl AddAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(2, 2)?;
        Ok(Box::new(AddKernel(self.activation)))
    }
}

/// The broadcast shape of `a` and `b` (aligned at the last axis, size-1 axes stretch).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i < rank - s.len() {
            1
        } else {
            s[i - (rank - s.len())]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => op_bail!("shapes {a:?} and {b:?} do not broadcast"),
        })
        .collect()
}

/// Element strides of `shape` viewed as `out` (rank-aligned), 0 along broadcast axes.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        strides[i + offset] = if shape[i] == 1 { 0 } else { stride };
        stride *= shape[i];
    }
    strides
}

impl Kernel for AddKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        if inputs[0].dtype != DType::F32 || inputs[1].dtype != DType::F32 {
            op_bail!(
                "inputs must be f32, got {} and {}",
                inputs[0].dtype,
                inputs[1].dtype
            );
        }
        Ok(ValueInfo::new(
            DType::F32,
            broadcast_shape(&inputs[0].shape, &inputs[1].shape)?,
        ))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast_shape(&a.shape, &b.shape)?;
        let (av, bv) = (a.as_f32()?, b.as_f32()?);
        let mut out = if a.shape == b.shape {
            av.iter().zip(bv).map(|(x, y)| x + y).collect()
        } else {
            broadcast_add(av, &a.shape, bv, &b.shape, &shape)
        };
        self.0.apply(&mut out);
        Ok(Value::f32(shape, out))
    }
}

fn broadcast_add(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &[usize],
) -> Vec<f32> {
    let (sa, sb) = (
        broadcast_strides(a_shape, out),
        broadcast_strides(b_shape, out),
    );
    let n: usize = out.iter().product();
    let mut result = Vec::with_capacity(n);
    let mut index = vec![0usize; out.len()];
    let (mut ia, mut ib) = (0usize, 0usize);
    for _ in 0..n {
        result.push(a[ia] + b[ib]);
        // Odometer increment, keeping both flat offsets in step.
        for d in (0..out.len()).rev() {
            index[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if index[d] < out[d] {
                break;
            }
            ia -= sa[d] * out[d];
            ib -= sb[d] * out[d];
            index[d] = 0;
        }
    }
    result
}
