//! Inference batch norm over axis 1, folded at load time into one scale and shift per channel:
//! `y = x · gamma / sqrt(var + eps) + (beta - mean · gamma / sqrt(var + eps))`.

use serde::{Deserialize, Serialize};

use super::layer_norm::default_eps;
use super::{expect_vector, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::BatchNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormAttrs {
    /// Added to the running variance (burn's default 1e-5).
    #[serde(default = "default_eps")]
    pub epsilon: f32,
}

impl Default for BatchNormAttrs {
    fn default() -> Self {
        Self { epsilon: 1e-5 }
    }
}

#[derive(Debug)]
struct BatchNormKernel {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl BatchNormAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(5, 5)?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            op_bail!("epsilon must be positive and finite, got {}", self.epsilon);
        }
        let names = ["gamma", "beta", "running_mean", "running_var"];
        let mut params = Vec::new();
        let c = inputs
            .constant(1, "gamma", DType::F32)?
            .shape
            .first()
            .copied()
            .unwrap_or(0);
        for (i, name) in names.iter().enumerate() {
            let v = inputs.constant(i + 1, name, DType::F32)?;
            expect_vector(v, name, c)?;
            params.push(v.as_f32()?);
        }
        let (gamma, beta, mean, var) = (params[0], params[1], params[2], params[3]);
        if var.iter().any(|v| !(*v >= 0.0 && v.is_finite())) {
            op_bail!("running_var must be finite and non-negative");
        }
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + self.epsilon).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok(Box::new(BatchNormKernel { scale, shift }))
    }
}

impl Kernel for BatchNormKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let x = inputs[0];
        if x.dtype != DType::F32 || x.shape.len() < 2 || x.shape[1] != self.scale.len() {
            op_bail!(
                "input must be f32 [N, {}, ..], got {} {:?}",
                self.scale.len(),
                x.dtype,
                x.shape
            );
        }
        Ok(x.clone())
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        self.infer(&[&x.info()])?;
        let inner: usize = x.shape[2..].iter().product();
        let mut out = x.as_f32()?.to_vec();
        let c = self.scale.len();
        for (i, plane) in out.chunks_mut(inner.max(1)).enumerate() {
            let (s, t) = (self.scale[i % c], self.shift[i % c]);
            plane.iter_mut().for_each(|v| *v = *v * s + t);
        }
        Ok(Value::f32(x.shape.clone(), out))
    }
}
