//! INT8 linear layer over the last axis: the tokens become the GEMM's columns, the output
//! features its rows (so per-channel scales are per row), and requantization writes the result
//! back transposed to `[.., out]`.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::linear::linear_shape;
use super::qconv2d::{quant_weights, MAX_DEPTH};
use super::requant::{
    check_zero_point, quant_bytes, to_u8_domain, QuantOut, RequantSpec, Requantizer,
};
use super::{with_scratch_i32, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::qgemm::{qgemm, row_sums, PackedA, PackedB, QgemmKernel};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::QLinear`]. Inputs: `[x_q, weight_i8 [out, in],
/// weight_scales_f32 [out], bias_i32 [out]?]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QLinearAttrs {
    /// Activation fused into the requantization.
    #[serde(default, skip_serializing_if = "is_none")]
    pub activation: Activation,
    /// Scale of the input activations.
    pub input_scale: f32,
    /// Zero point of the input activations (in the input's dtype).
    pub input_zero_point: i32,
    /// Scale of the output.
    pub output_scale: f32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// `u8` or `i8`.
    pub output_dtype: DType,
}

#[derive(Debug)]
struct QLinearKernel {
    in_features: usize,
    out_features: usize,
    input_dtype: DType,
    flip: u8,
    packed: PackedA,
    requant: Requantizer,
}

impl QLinearAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        let (weight, scales, bias) = quant_weights(inputs, |s| match s {
            &[out, _] => Ok(out),
            _ => op_bail!("weight must be [out, in], got {s:?}"),
        })?;
        let (out_features, in_features) = (weight.shape[0], weight.shape[1]);
        if in_features > MAX_DEPTH {
            op_bail!("{in_features} input features exceed {MAX_DEPTH}: i32 could overflow");
        }
        let input_dtype = inputs.info(0)?.dtype;
        check_zero_point("input_zero_point", self.input_zero_point, input_dtype)?;
        let (zero_point_u8, flip) = to_u8_domain(self.input_zero_point, input_dtype);
        let w = weight.as_i8()?;
        let requant = Requantizer::new(RequantSpec {
            input_scale: self.input_scale,
            input_zero_point: zero_point_u8,
            weight_scales: scales,
            bias,
            weight_sums: &row_sums(out_features, in_features, w),
            output_scale: self.output_scale,
            output_zero_point: self.output_zero_point,
            output_dtype: self.output_dtype,
            activation: self.activation,
        })?;
        Ok(Box::new(QLinearKernel {
            in_features,
            out_features,
            input_dtype,
            flip,
            packed: PackedA::pack(out_features, in_features, w),
            requant,
        }))
    }
}

impl Kernel for QLinearKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let shape = linear_shape(
            inputs[0],
            &[self.input_dtype],
            self.in_features,
            self.out_features,
        )?;
        Ok(ValueInfo::new(self.requant.dtype, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let shape = self.infer(&[&x.info()])?.shape;
        let tokens = shape[..shape.len() - 1].iter().product::<usize>();
        let b = PackedB::pack_nk(tokens, self.in_features, quant_bytes(&x.data)?, self.flip);
        let data = match self.requant.dtype {
            DType::U8 => u8::into_data(self.finish(&b, tokens)?),
            _ => i8::into_data(self.finish(&b, tokens)?),
        };
        Ok(Value { shape, data })
    }
}

impl QLinearKernel {
    fn finish<T: QuantOut>(&self, b: &PackedB, tokens: usize) -> OpResult<Vec<T>> {
        let mut out = vec![T::default(); tokens * self.out_features];
        let ok = with_scratch_i32(tokens * self.out_features, |acc| {
            let ok = qgemm(QgemmKernel::best(), &self.packed, b, acc);
            self.requant.apply_all(acc, tokens, true, &mut out);
            ok
        });
        if !ok {
            op_bail!("internal error: INT8 GEMM shapes disagree");
        }
        Ok(out)
    }
}
