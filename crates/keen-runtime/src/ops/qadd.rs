//! Quantized residual sum: `q = clamp(round_half_even(Ma·(a - za) + Mb·(b - zb)) + zo)` with
//! `Ma = sa/so`, `Mb = sb/so`, and an optional fused ReLU/ReLU6. Both inputs have one shape.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
#[cfg(test)]
use super::requant::round_half_even;
use super::requant::{
    check_scale, check_zero_point, quant_bytes, range, round_half_even_i32, to_u8_domain, QuantOut,
};
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
        let dtypes = [inputs.info(0)?.dtype, inputs.info(1)?.dtype];
        Ok(Box::new(self.kernel(dtypes)?))
    }

    /// The checked kernel for inputs of `dtypes`.
    fn kernel(&self, dtypes: [DType; 2]) -> OpResult<QAddKernel> {
        for (what, s) in [
            ("a_scale", self.a_scale),
            ("b_scale", self.b_scale),
            ("output_scale", self.output_scale),
        ] {
            check_scale(what, s)?;
        }
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
        Ok(QAddKernel {
            attrs: self.clone(),
            dtypes,
            ma: (self.a_scale as f64 / self.output_scale as f64) as f32,
            mb: (self.b_scale as f64 / self.output_scale as f64) as f32,
            lo,
            hi,
        })
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
        let a = self.operand(&inputs[0].data, self.attrs.a_zero_point, self.ma)?;
        let b = self.operand(&inputs[1].data, self.attrs.b_zero_point, self.mb)?;
        let data = match self.attrs.output_dtype {
            DType::U8 => u8::into_data(self.add_fast(a, b)),
            _ => i8::into_data(self.add_fast(a, b)),
        };
        Ok(Value {
            shape: info.shape,
            data,
        })
    }
}

/// One input of the fast path: its bytes, the XOR mask that maps them to the u8 domain, its
/// zero point there, and its multiplier.
#[derive(Clone, Copy)]
struct Operand<'a> {
    bytes: &'a [u8],
    flip: u8,
    zero_point: i32,
    multiplier: f32,
}

impl QAddKernel {
    fn operand<'a>(
        &self,
        data: &'a Data,
        zero_point: i32,
        multiplier: f32,
    ) -> OpResult<Operand<'a>> {
        let dtype = match data {
            Data::U8(_) => DType::U8,
            _ => DType::I8,
        };
        let (zero_point, flip) = to_u8_domain(zero_point, dtype);
        Ok(Operand {
            bytes: quant_bytes(data)?,
            flip,
            zero_point: zero_point as i32,
            multiplier,
        })
    }

    /// One fused pass over both inputs (no widened copies), in chunks across threads for large
    /// tensors, each chunk in an AVX-512 build of the loop when the CPU has it. Computes
    /// exactly what [`QAddKernel::add_reference`] computes (same float expression, same
    /// rounding); the tests compare them.
    fn add_fast<T: QuantOut>(&self, a: Operand, b: Operand) -> Vec<T> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 15;
        let mut out = vec![T::default(); a.bytes.len()];
        let run = |(i, o): (usize, &mut [T])| {
            let range = i * CHUNK..i * CHUNK + o.len();
            let (a, b) = (
                Operand {
                    bytes: &a.bytes[range.clone()],
                    ..a
                },
                Operand {
                    bytes: &b.bytes[range],
                    ..b
                },
            );
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                // SAFETY: the features were detected just above.
                unsafe { self.add_avx512(a, b, o) };
                return;
            }
            self.add_slice(a, b, o);
        };
        if out.len() > CHUNK && rayon::current_thread_index().is_none() {
            out.par_chunks_mut(CHUNK).enumerate().for_each(run);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(run);
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    unsafe fn add_avx512<T: QuantOut>(&self, a: Operand, b: Operand, out: &mut [T]) {
        self.add_slice(a, b, out);
    }

    /// Branch-free, so the compiler vectorises it.
    #[inline(always)]
    fn add_slice<T: QuantOut>(&self, a: Operand, b: Operand, out: &mut [T]) {
        let (z, lo, hi) = (self.attrs.output_zero_point, self.lo, self.hi);
        for ((o, &x), &y) in out.iter_mut().zip(a.bytes).zip(b.bytes) {
            let x = ((x ^ a.flip) as i32 - a.zero_point) as f32;
            let y = ((y ^ b.flip) as i32 - b.zero_point) as f32;
            let v = round_half_even_i32(a.multiplier * x + b.multiplier * y);
            *o = T::from_clamped(v.wrapping_add(z).clamp(lo, hi));
        }
    }

    /// The plain definition: widen, rescale, round, clamp.
    #[cfg(test)]
    fn add_reference<T: QuantOut>(&self, a: &[i32], b: &[i32]) -> Vec<T> {
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
#[cfg(test)]
fn widen(data: &Data, zero_point: i32) -> OpResult<Vec<i32>> {
    Ok(match data {
        Data::U8(v) => v.iter().map(|&q| q as i32 - zero_point).collect(),
        Data::I8(v) => v.iter().map(|&q| q as i32 - zero_point).collect(),
        _ => op_bail!("inputs must be u8 or i8"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused fast path equals the plain definition on every pair of codes, for u8 and i8
    /// inputs and outputs, every activation, and tensors long enough to be split into chunks.
    #[test]
    fn fast_path_equals_reference() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let len = (1 << 16) + 77;
        for (case, (da, db, dout)) in [
            (DType::U8, DType::U8, DType::U8),
            (DType::I8, DType::U8, DType::I8),
            (DType::U8, DType::I8, DType::U8),
            (DType::I8, DType::I8, DType::I8),
        ]
        .into_iter()
        .enumerate()
        {
            for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
                let zp = |d: DType, v: u64| match d {
                    DType::U8 => (v % 256) as i32,
                    _ => (v % 256) as i32 - 128,
                };
                let attrs = QAddAttrs {
                    a_scale: 0.01 + (next() % 1000) as f32 * 1e-4,
                    a_zero_point: zp(da, next()),
                    b_scale: 0.01 + (next() % 1000) as f32 * 1e-4,
                    b_zero_point: zp(db, next()),
                    output_scale: 0.02 + (next() % 1000) as f32 * 1e-4,
                    output_zero_point: zp(dout, next()),
                    output_dtype: dout,
                    activation,
                };
                let k = attrs.kernel([da, db]).unwrap();
                let data = |d: DType, next: &mut dyn FnMut() -> u64| match d {
                    DType::U8 => Data::U8((0..len).map(|_| next() as u8).collect()),
                    _ => Data::I8((0..len).map(|_| next() as i8).collect()),
                };
                let (a, b) = (data(da, &mut next), data(db, &mut next));
                let wa = widen(&a, attrs.a_zero_point).unwrap();
                let wb = widen(&b, attrs.b_zero_point).unwrap();
                let oa = k.operand(&a, attrs.a_zero_point, k.ma).unwrap();
                let ob = k.operand(&b, attrs.b_zero_point, k.mb).unwrap();
                match dout {
                    DType::U8 => assert_eq!(
                        k.add_fast::<u8>(oa, ob),
                        k.add_reference::<u8>(&wa, &wb),
                        "case {case} {activation:?}"
                    ),
                    _ => assert_eq!(
                        k.add_fast::<i8>(oa, ob),
                        k.add_reference::<i8>(&wa, &wb),
                        "case {case} {activation:?}"
                    ),
                }
            }
        }
    }
}
