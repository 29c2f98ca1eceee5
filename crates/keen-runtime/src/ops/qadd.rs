//! Quantized residual sum: `q = clamp(round_half_even(Ma·(a - za) + Mb·(b - zb)) + zo)` with
//! `Ma = sa/so`, `Mb = sb/so`, and an optional fused ReLU/ReLU6. Both inputs have one shape.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::requant::{check_scale, check_zero_point, range, round_half_even, QuantOut};
use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Data, Value, ValueInfo};

/// Attributes of [`crate::Op::QAdd`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QAddAttrs {
    /// Scale of the first input.
    pub a_scale: f32,
    /// Zero point of the first input.
    pub a_zero_point: i32,
    /// Scale of the second input.
    pub b_scale: f32,
    /// Zero point of the second input.
    pub b_zero_point: i32,
    /// Scale of the output.
    pub output_scale: f32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// `u8` or `i8`.
    pub output_dtype: DType,
    /// Activation fused into the output.
    #[serde(default, skip_serializing_if = "is_none")]
    pub activation: Activation,
}

#[derive(Debug)]
struct QAddKernel {
    attrs: QAddAttrs,
    dtypes: [DType; 2],
    ma: f32,
    mb: f32,
    lo: i32,
    hi: i32,
}

impl QAddAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(2, 2)?;
        for (what, s) in [
            ("a_scale", self.a_scale),
            ("b_scale", self.b_scale),
            ("output_scale", self.output_scale),
        ] {
            check_scale(what, s)?;
        }
        let dtypes = [inputs.info(0)?.dtype, inputs.info(1)?.dtype];
        check_zero_point("a_zero_point", self.a_zero_point, dtypes[0])?;
        check_zero_point("b_zero_point", self.b_zero_point, dtypes[1])?;
        check_zero_point(
            "output_zero_point",
            self.output_zero_point,
            self.output_dtype,
        )?;
        let (mut lo, mut hi) = range(self.output_dtype)?;
        let z = self.output_zero_point;
        if self.activation != Activation::None {
            lo = lo.max(z);
        }
        if self.activation == Activation::Relu6 {
            hi = hi.min(z + (6.0 / self.output_scale as f64).round().min(512.0) as i32);
        }
        Ok(Box::new(QAddKernel {
            attrs: self.clone(),
            dtypes,
            ma: (self.a_scale as f64 / self.output_scale as f64) as f32,
            mb: (self.b_scale as f64 / self.output_scale as f64) as f32,
            lo,
            hi,
        }))
    }
}

impl Kernel for QAddKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let (a, b) = (inputs[0], inputs[1]);
        if [a.dtype, b.dtype] != self.dtypes || a.shape != b.shape {
            op_bail!(
                "inputs must be {:?} of one shape, got {} {:?} and {} {:?}",
                self.dtypes,
                a.dtype,
                a.shape,
                b.dtype,
                b.shape
            );
        }
        Ok(ValueInfo::new(self.attrs.output_dtype, a.shape.clone()))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let info = self.infer(&[&inputs[0].info(), &inputs[1].info()])?;
        let a = widen(&inputs[0].data, self.attrs.a_zero_point)?;
        let b = widen(&inputs[1].data, self.attrs.b_zero_point)?;
        let data = match self.attrs.output_dtype {
            DType::U8 => u8::into_data(self.add(&a, &b)),
            _ => i8::into_data(self.add(&a, &b)),
        };
        Ok(Value {
            shape: info.shape,
            data,
        })
    }
}

impl QAddKernel {
    fn add<T: QuantOut>(&self, a: &[i32], b: &[i32]) -> Vec<T> {
        let z = self.attrs.output_zero_point;
        a.iter()
            .zip(b)
            .map(|(&x, &y)| {
                let v = round_half_even(self.ma * x as f32 + self.mb * y as f32) as i32;
                T::from_clamped((v + z).clamp(self.lo, self.hi))
            })
            .collect()
    }
}

/// `q - zero_point` as i32.
fn widen(data: &Data, zero_point: i32) -> OpResult<Vec<i32>> {
    Ok(match data {
        Data::U8(v) => v.iter().map(|&q| q as i32 - zero_point).collect(),
        Data::I8(v) => v.iter().map(|&q| q as i32 - zero_point).collect(),
        _ => op_bail!("inputs must be u8 or i8"),
    })
}
