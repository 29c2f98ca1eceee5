//! fp32 concatenation along an axis. An input whose leading (batch) axis is 1 while the others'
//! is N is repeated N times: that is how a learned class token `[1, 1, D]` joins the patch
//! tokens `[N, T, D]`.

use serde::{Deserialize, Serialize};

use super::{resolve_axis, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Concat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatAttrs {
    /// The axis (not 0); negative counts from the end.
    pub axis: i64,
}

#[derive(Debug)]
struct ConcatKernel(i64);

impl ConcatAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 64)?;
        Ok(Box::new(ConcatKernel(self.axis)))
    }
}

impl Kernel for ConcatKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let rank = inputs[0].shape.len();
        let axis = resolve_axis(self.0, rank)?;
        if axis == 0 {
            op_bail!("concatenating along the batch axis is not supported");
        }
        let batch = inputs.iter().map(|i| i.shape[0]).max().unwrap_or(1);
        let mut shape = inputs[0].shape.clone();
        shape[0] = batch;
        shape[axis] = 0;
        for (k, info) in inputs.iter().enumerate() {
            let s = &info.shape;
            let compatible = info.dtype == DType::F32
                && s.len() == rank
                && (s[0] == batch || s[0] == 1)
                && (1..rank).all(|d| d == axis || s[d] == shape[d]);
            if !compatible {
                op_bail!(
                    "input {k} ({} {s:?}) does not fit f32 {:?} along axis {axis}",
                    info.dtype,
                    inputs[0].shape
                );
            }
            shape[axis] += s[axis];
        }
        Ok(ValueInfo::new(DType::F32, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let infos: Vec<ValueInfo> = inputs.iter().map(|v| v.info()).collect();
        let out = self.infer(&infos.iter().collect::<Vec<_>>())?.shape;
        let axis = resolve_axis(self.0, out.len())?;
        let outer: usize = out[1..axis].iter().product();
        let inner: usize = out[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(out.iter().product());
        for b in 0..out[0] {
            for o in 0..outer {
                for x in inputs {
                    let block = x.shape[axis] * inner;
                    let image = if x.shape[0] == 1 { 0 } else { b };
                    let start = (image * outer + o) * block;
                    data.extend_from_slice(&x.as_f32()?[start..start + block]);
                }
            }
        }
        Ok(Value::f32(out, data))
    }
}
