//! Layer normalisation over the last axis: `(x - mean) / sqrt(var + eps) · gamma + beta`, with
//! the biased variance (as burn and PyTorch).

use serde::{Deserialize, Serialize};

use super::{expect_vector, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::LayerNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormAttrs {
    /// Added to the variance (burn's default 1e-5).
    #[serde(default = "default_eps")]
    pub epsilon: f32,
}

pub(crate) fn default_eps() -> f32 {
    1e-5
}

impl Default for LayerNormAttrs {
    fn default() -> Self {
        Self { epsilon: 1e-5 }
    }
}

#[derive(Debug)]
struct LayerNormKernel {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    epsilon: f32,
}

impl LayerNormAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(3, 3)?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            op_bail!("epsilon must be positive and finite, got {}", self.epsilon);
        }
        let gamma = inputs.constant(1, "gamma", DType::F32)?;
        let beta = inputs.constant(2, "beta", DType::F32)?;
        let d = gamma.shape.first().copied().unwrap_or(0);
        expect_vector(gamma, "gamma", d)?;
        expect_vector(beta, "beta", d)?;
        Ok(Box::new(LayerNormKernel {
            gamma: gamma.as_f32()?.to_vec(),
            beta: beta.as_f32()?.to_vec(),
            epsilon: self.epsilon,
        }))
    }
}

impl Kernel for LayerNormKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let x = inputs[0];
        if x.dtype != DType::F32 || x.shape.last() != Some(&self.gamma.len()) {
            op_bail!(
                "input must be f32 [.., {}], got {} {:?}",
                self.gamma.len(),
                x.dtype,
                x.shape
            );
        }
        Ok(x.clone())
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        self.infer(&[&x.info()])?;
        let d = self.gamma.len();
        let mut out = x.as_f32()?.to_vec();
        for row in out.chunks_mut(d.max(1)) {
            let mean = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + self.epsilon).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
        Ok(Value::f32(x.shape.clone(), out))
    }
}
