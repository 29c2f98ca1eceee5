//! Slice along one axis, any dtype: selecting the class token is `Slice {axis: 1, 0..1}`
//! followed by `Flatten`.

use serde::{Deserialize, Serialize};

use super::{resolve_axis, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{Value, ValueInfo};

/// Attributes of [`crate::Op::Slice`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceAttrs {
    /// The axis; negative counts from the end.
    pub axis: i64,
    /// First index kept.
    pub start: usize,
    /// One past the last index kept.
    pub end: usize,
}

#[derive(Debug)]
struct SliceKernel(SliceAttrs);

impl SliceAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        if self.start >= self.end {
            op_bail!("empty range {}..{}", self.start, self.end);
        }
        Ok(Box::new(SliceKernel(self.clone())))
    }
}

impl Kernel for SliceKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = &inputs[0].shape;
        let axis = resolve_axis(self.0.axis, s.len())?;
        if self.0.end > s[axis] {
            op_bail!(
                "range {}..{} exceeds axis {axis} of {s:?}",
                self.0.start,
                self.0.end
            );
        }
        let mut shape = s.clone();
        shape[axis] = self.0.end - self.0.start;
        Ok(ValueInfo::new(inputs[0].dtype, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let shape = self.infer(&[&x.info()])?.shape;
        let axis = resolve_axis(self.0.axis, shape.len())?;
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let len = x.shape[axis];
        let mut indices = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for j in self.0.start..self.0.end {
                let base = (o * len + j) * inner;
                indices.extend(base..base + inner);
            }
        }
        Ok(Value {
            shape,
            data: x.data.gather(&indices),
        })
    }
}
