//! fp32 linear layer `y = x·Wᵀ + b` over the last axis, with an optional fused activation.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::{expect_vector, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::sgemm::{sgemm, MatRef};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Linear`]; the weight is `[out, in]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearAttrs {
    /// Activation fused into the output.
    #[serde(default, skip_serializing_if = "is_none")]
    pub activation: Activation,
}

#[derive(Debug)]
struct LinearKernel {
    in_features: usize,
    out_features: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

/// Checks a linear layer's input `[.., in]` and returns the output shape `[.., out]`.
pub(crate) fn linear_shape(
    input: &ValueInfo,
    dtypes: &[DType],
    in_features: usize,
    out_features: usize,
) -> OpResult<Vec<usize>> {
    if !dtypes.contains(&input.dtype) || input.shape.len() < 2 {
        op_bail!(
            "input must be [.., {in_features}] of {dtypes:?} with rank >= 2, got {} {:?}",
            input.dtype,
            input.shape
        );
    }
    let mut shape = input.shape.clone();
    let last = shape.len() - 1;
    if shape[last] != in_features {
        op_bail!(
            "input's last axis is {}, the weight expects {in_features}",
            shape[last]
        );
    }
    shape[last] = out_features;
    Ok(shape)
}

impl LinearAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(2, 3)?;
        let weight = inputs.constant(1, "weight", DType::F32)?;
        let &[out_features, in_features] = weight.shape.as_slice() else {
            op_bail!("weight must be [out, in], got {:?}", weight.shape);
        };
        let bias = match inputs.consts.get(2) {
            Some(_) => {
                let b = inputs.constant(2, "bias", DType::F32)?;
                expect_vector(b, "bias", out_features)?;
                Some(b.as_f32()?.to_vec())
            }
            None => None,
        };
        Ok(Box::new(LinearKernel {
            in_features,
            out_features,
            weight: weight.as_f32()?.to_vec(),
            bias,
            activation: self.activation,
        }))
    }
}

impl Kernel for LinearKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        Ok(ValueInfo::new(
            DType::F32,
            linear_shape(
                inputs[0],
                &[DType::F32],
                self.in_features,
                self.out_features,
            )?,
        ))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let shape = linear_shape(
            &x.info(),
            &[DType::F32],
            self.in_features,
            self.out_features,
        )?;
        let rows = x.shape[..x.shape.len() - 1].iter().product::<usize>();
        let mut out = vec![0f32; rows * self.out_features];
        let w = MatRef::row_major(&self.weight, self.out_features, self.in_features).t();
        let a = MatRef::row_major(x.as_f32()?, rows, self.in_features);
        if !sgemm(a, w, &mut out, self.out_features, false) {
            op_bail!(
                "internal error: GEMM shapes disagree for input {:?}",
                x.shape
            );
        }
        if let Some(bias) = &self.bias {
            for row in out.chunks_mut(self.out_features.max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        self.activation.apply(&mut out);
        Ok(Value::f32(shape, out))
    }
}
