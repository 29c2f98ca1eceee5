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
            Unary::Gelu => gelu_slice(&mut data),
        }
        Ok(Value::f32(inputs[0].shape.clone(), data))
    }
}

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU in place over a slice: split across threads when large, and compiled for AVX-512
/// where the CPU has it (the crate's baseline is SSE2), since ViT MLPs apply it to every
/// hidden unit of every token.
pub(crate) fn gelu_slice(values: &mut [f32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let run = |chunk: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F was detected just above.
            unsafe { gelu_avx512(chunk) };
            return;
        }
        chunk.iter_mut().for_each(|v| *v = gelu(*v));
    };
    if values.len() > CHUNK && rayon::current_thread_index().is_none() {
        values.par_chunks_mut(CHUNK).for_each(run);
    } else {
        run(values);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu(*v));
}

/// erf as a rational function of x² on [-4, 4] (outside, ±1 to f32 precision), with the
/// coefficients Eigen and XLA use for f32: no `exp`, no branches, so loops over it vectorise.
/// Largest deviation from [`erf`] is checked in the tests.
#[inline(always)]
pub fn erf_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    for a in [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ] {
        p = p * x2 + a;
    }
    let mut q = -1.456_607_2e-5f32;
    for b in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = q * x2 + b;
    }
    x * p / q
}

/// exp(x) for f32 without a libm call, so loops over it vectorise: `2^n · p(r)` with
/// `n = round(x·log2 e)`, `r = x - n·ln 2` (ln 2 split in two for accuracy) and a degree-6
/// polynomial for `e^r` on |r| ≤ ln2/2. Relative error about 2 ulp; inputs below -87 give 0
/// and above 88 give `f32::MAX`-scale values (softmax subtracts the max first, so it only
/// sees x ≤ 0).
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let y = x * std::f32::consts::LOG2_E + MAGIC;
    // The rounded integer, read from the float's bits (Rust's saturating `as i32` does not
    // vectorise), and the same value as a float.
    let n_int = (y.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let n = y - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let mut p = 1.0 / 720.0f32;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    // 2^n from its exponent bits; n lies in [-126, 127] after the clamp.
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
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
    fn fast_erf_matches_the_accurate_one() {
        let mut worst = 0.0f32;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf_fast(x) - erf(x)).abs());
            x += 0.001;
        }
        assert!(worst < 1e-6, "largest difference {worst}");
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = -87.0f32;
        while x < 80.0 {
            let (got, want) = (exp_fast(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 5e-7,
                "exp({x}) = {got} vs {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp_fast(0.0), 1.0);
        assert_eq!(exp_fast(-1000.0), exp_fast(-87.0));
    }

    #[test]
    fn gelu_matches_hand_computed_values() {
        // gelu(1) = 0.5 · (1 + erf(1/√2)) = 0.841344746.
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) - -0.158_655_25).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
    }
}
