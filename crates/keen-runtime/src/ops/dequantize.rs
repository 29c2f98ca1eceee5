//! DequantizeLinear: u8/i8 → f32, `x = (q - zero_point) · scale`.

use serde::{Deserialize, Serialize};

use super::requant::{check_scale, check_zero_point};
use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Data, Value, ValueInfo};

/// Attributes of [`crate::Op::DequantizeLinear`] (per-tensor; the dtype is the input's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DequantizeAttrs {
    /// Real value of one step.
    pub scale: f32,
    /// Integer that represents 0.0.
    pub zero_point: i32,
}

#[derive(Debug)]
struct DequantizeKernel(DequantizeAttrs);

impl DequantizeAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        check_scale("scale", self.scale)?;
        let dtype = inputs.info(0)?.dtype;
        check_zero_point("zero_point", self.zero_point, dtype)?;
        Ok(Box::new(DequantizeKernel(self.clone())))
    }
}

impl Kernel for DequantizeKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let dtype = inputs[0].dtype;
        if dtype != DType::U8 && dtype != DType::I8 {
            op_bail!("input must be u8 or i8, got {dtype}");
        }
        check_zero_point("zero_point", self.0.zero_point, dtype)?;
        Ok(ValueInfo::new(DType::F32, inputs[0].shape.clone()))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let (s, z) = (self.0.scale, self.0.zero_point);
        let out = match &inputs[0].data {
            Data::U8(v) => v.iter().map(|&q| (q as i32 - z) as f32 * s).collect(),
            Data::I8(v) => v.iter().map(|&q| (q as i32 - z) as f32 * s).collect(),
            _ => op_bail!("input must be u8 or i8"),
        };
        Ok(Value::f32(inputs[0].shape.clone(), out))
    }
}
