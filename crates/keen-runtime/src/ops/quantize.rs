//! QuantizeLinear: f32 → u8/i8, `q = clamp(round_half_even(x / scale) + zero_point)`.

use serde::{Deserialize, Serialize};

use super::requant::{check_scale, check_zero_point, range, round_half_even};
use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Data, Value, ValueInfo};

/// Attributes of [`crate::Op::QuantizeLinear`] (per-tensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeAttrs {
    /// Real value of one step.
    pub scale: f32,
    /// Integer that represents 0.0.
    pub zero_point: i32,
    /// `u8` or `i8`.
    pub dtype: DType,
}

#[derive(Debug)]
struct QuantizeKernel(QuantizeAttrs);

impl QuantizeAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        check_scale("scale", self.scale)?;
        check_zero_point("zero_point", self.zero_point, self.dtype)?;
        Ok(Box::new(QuantizeKernel(self.clone())))
    }
}

impl Kernel for QuantizeKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        if inputs[0].dtype != DType::F32 {
            op_bail!("input must be f32, got {}", inputs[0].dtype);
        }
        Ok(ValueInfo::new(self.0.dtype, inputs[0].shape.clone()))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let a = &self.0;
        let (lo, hi) = range(a.dtype)?;
        let inv = 1.0 / a.scale;
        let q = |x: &f32| {
            // NaN maps to the zero point (the cast gives 0); infinities saturate.
            (round_half_even(x * inv) as i32)
                .saturating_add(a.zero_point)
                .clamp(lo, hi)
        };
        let x = inputs[0].as_f32()?;
        let data = match a.dtype {
            DType::U8 => Data::U8(x.iter().map(|v| q(v) as u8).collect()),
            _ => Data::I8(x.iter().map(|v| q(v) as i8).collect()),
        };
        Ok(Value {
            shape: inputs[0].shape.clone(),
            data,
        })
    }
}
