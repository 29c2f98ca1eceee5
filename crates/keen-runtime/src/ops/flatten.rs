//! Flatten: merges a range of axes into one (no data movement).

use serde::{Deserialize, Serialize};

use super::{resolve_axis, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{Value, ValueInfo};

/// Attributes of [`crate::Op::Flatten`]: axes `start_dim..=end_dim` become one, as burn's
/// `flatten(start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenAttrs {
    /// First merged axis (default 1).
    #[serde(default = "one")]
    pub start_dim: i64,
    /// Last merged axis, inclusive (default -1).
    #[serde(default = "minus_one")]
    pub end_dim: i64,
}

fn one() -> i64 {
    1
}
fn minus_one() -> i64 {
    -1
}

impl Default for FlattenAttrs {
    fn default() -> Self {
        Self {
            start_dim: 1,
            end_dim: -1,
        }
    }
}

#[derive(Debug)]
struct FlattenKernel(FlattenAttrs);

impl FlattenAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        Ok(Box::new(FlattenKernel(self.clone())))
    }
}

impl Kernel for FlattenKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = &inputs[0].shape;
        let start = resolve_axis(self.0.start_dim, s.len())?;
        let end = resolve_axis(self.0.end_dim, s.len())?;
        if start > end {
            op_bail!("start_dim {start} is after end_dim {end}");
        }
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
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
