//! Unary activations: ReLU, ReLU6 and GELU (erf form), plus the [`Activation`] that convolution,
//! linear and add ops fuse into their output loop.

use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// An activation fused into an op's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// Applies the activation in place.
    pub(crate) fn apply(self, values: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        }
    }

    fn is_none(&self) -> bool {
        *self == Activation::None
    }
}

/// Serde helper so `"activation": "none"` can be left out of files.
pub(crate) fn is_none(a: &Activation) -> bool {
    a.is_none()
}

/// Which unary function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unary {
    Relu,
    Relu6,
    Gelu,
}

#[derive(Debug)]
struct UnaryKernel(Unary);

pub(crate) fn build(inputs: &NodeInputs, f: Unary) -> OpResult<Box<dyn Kernel>> {
    inputs.expect_count(1, 1)?;
    Ok(Box::new(UnaryKernel(f)))
}

impl Kernel for UnaryKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        if inputs[0].dtype != DType::F32 {
            op_bail!("input must be f32, got {}", inputs[0].dtype);
        }
        Ok(inputs[0].clone())
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let mut data = inputs[0].as_f32()?.to_vec();
        match self.0 {
            Unary::Relu => Activation::Relu.apply(&mut data),
            Unary::Relu6 => Activation::Relu6.apply(&mut data),
            Unary::Gelu => data.iter_mut().for_each(|v| *v = gelu(*v)),
        }
        Ok(Value::f32(inputs[0].shape.clone(), data))
    }
}

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function, |error| < 1.2e-7 (Numerical Recipes' `erfc` Chebyshev fit), evaluated
/// in f64 so the f32 result is correctly rounded nearly everywhere. std has no stable `erf`.
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from tables of erf.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn gelu_matches_hand_computed_values() {
        // gelu(1) = 0.5 · (1 + erf(1/√2)) = 0.841344746.
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) - -0.158_655_25).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
    }
}
