//! Global average pooling: the mean over height and width of each channel.

use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::GlobalAvgPool`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAvgPoolAttrs {
    /// Keep the pooled axes: `[N, C, 1, 1]` instead of `[N, C]`.
    #[serde(default)]
    pub keep_dims: bool,
}

#[derive(Debug)]
struct GapKernel(bool);

impl GlobalAvgPoolAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        Ok(Box::new(GapKernel(self.keep_dims)))
    }
}

impl Kernel for GapKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = inputs[0].expect("input", DType::F32, 4)?;
        if s[2] == 0 || s[3] == 0 {
            op_bail!("cannot average an empty {}×{} plane", s[2], s[3]);
        }
        let shape = if self.0 {
            vec![s[0], s[1], 1, 1]
        } else {
            vec![s[0], s[1]]
        };
        Ok(ValueInfo::new(DType::F32, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let info = self.infer(&[&inputs[0].info()])?;
        let s = &inputs[0].shape;
        let hw = s[2] * s[3];
        let out = inputs[0]
            .as_f32()?
            .chunks_exact(hw)
            .map(|plane| plane.iter().sum::<f32>() / hw as f32)
            .collect();
        Ok(Value::f32(info.shape, out))
    }
}
