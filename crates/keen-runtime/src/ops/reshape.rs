//! Reshape (no data movement): `0` keeps the input's axis (so the batch passes through), `-1`
//! takes whatever size is left.

use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{Value, ValueInfo};

/// Attributes of [`crate::Op::Reshape`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshapeAttrs {
    /// Target shape; `0` copies the input's axis at the same position, one `-1` is inferred.
    pub shape: Vec<i64>,
}

#[derive(Debug)]
struct ReshapeKernel(Vec<i64>);

impl ReshapeAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        if self.shape.iter().filter(|&&d| d == -1).count() > 1 {
            op_bail!("at most one -1 is allowed in {:?}", self.shape);
        }
        if self.shape.iter().any(|&d| d < -1) {
            op_bail!("negative size in {:?}", self.shape);
        }
        Ok(Box::new(ReshapeKernel(self.shape.clone())))
    }
}

impl Kernel for ReshapeKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = &inputs[0].shape;
        let total: usize = s.iter().product();
        let mut shape = Vec::with_capacity(self.0.len());
        let mut known = 1usize;
        for (i, &d) in self.0.iter().enumerate() {
            let dim = match d {
                0 => match s.get(i) {
                    Some(&v) => v,
                    None => op_bail!("0 at axis {i} but the input {s:?} has no such axis"),
                },
                -1 => 0,
                d => d as usize,
            };
            if d != -1 {
                known = match known.checked_mul(dim) {
                    Some(k) => k,
                    None => op_bail!("target shape {:?} overflows", self.0),
                };
            }
            shape.push(dim);
        }
        if let Some(pos) = self.0.iter().position(|&d| d == -1) {
            if known == 0 || !total.is_multiple_of(known) {
                op_bail!("cannot reshape {s:?} into {:?}", self.0);
            }
            shape[pos] = total / known;
        } else if known != total {
            op_bail!("cannot reshape {s:?} ({total} values) into {shape:?}");
        }
        Ok(ValueInfo::new(inputs[0].dtype, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let info = self.infer(&[&inputs[0].info()])?;
        Ok(Value {
            shape: info.shape,
            data: inputs[0].data.clone(),
        })
    }
}
