//! Quantization parameters and requantization, shared by the quantized ops.
//!
//! Conventions (the exporter must follow them):
//! - real value `r = scale · (q - zero_point)`; `scale` positive and finite, `zero_point` within
//!   the dtype (u8: 0..=255, i8: -128..=127); weights are symmetric (zero point 0) per output
//!   channel;
//! - an INT8 bias is i32 with scale `input_scale · weight_scale[c]` and zero point 0;
//! - requantization uses a float multiplier: `q = clamp(round_half_even((acc + bias) · M[c]) +
//!   z_out)` with `M[c] = input_scale · weight_scale[c] / output_scale` computed in f64 and
//!   rounded to f32 once; `acc + bias` is summed exactly in i32 (a bias beyond ±2²³ after
//!   the zero-point correction is rejected at load). A fused ReLU clamps at `z_out`, a ReLU6 also at
//!   `z_out + round(6 / output_scale)`.

use super::activation::Activation;
use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Data};

/// Fails unless `scale` is positive and finite.
pub(crate) fn check_scale(what: &str, scale: f32) -> OpResult<()> {
    if !(scale.is_finite() && scale > 0.0) {
        op_bail!("{what} must be positive and finite, got {scale}");
    }
    Ok(())
}

/// Integer range of a quantized dtype.
pub(crate) fn range(dtype: DType) -> OpResult<(i32, i32)> {
    match dtype {
        DType::U8 => Ok((0, 255)),
        DType::I8 => Ok((-128, 127)),
        other => op_bail!("quantized values must be u8 or i8, not {other}"),
    }
}

/// Fails unless `zero_point` lies in `dtype`'s range.
pub(crate) fn check_zero_point(what: &str, zero_point: i32, dtype: DType) -> OpResult<()> {
    let (lo, hi) = range(dtype)?;
    if zero_point < lo || zero_point > hi {
        op_bail!("{what} {zero_point} is outside the {dtype} range {lo}..={hi}");
    }
    Ok(())
}

/// Zero point of a u8 or i8 activation moved to the u8 domain the GEMM works in (i8 bytes are
/// XOR-ed with 0x80, i.e. offset by 128), and that XOR mask.
pub(crate) fn to_u8_domain(zero_point: i32, dtype: DType) -> (u8, u8) {
    match dtype {
        DType::I8 => ((zero_point + 128) as u8, 0x80),
        _ => (zero_point as u8, 0),
    }
}

/// Per-channel requantization of i32 accumulators to u8/i8 outputs.
#[derive(Debug, Clone)]
pub(crate) struct Requantizer {
    multiplier: Vec<f32>,
    /// Bias with the activation zero-point correction folded in: `bias[c] - z_in · Σ w[c]`,
    /// checked at load so that `acc + bias` cannot overflow i32.
    bias: Vec<i32>,
    zero_point: i32,
    lo: i32,
    hi: i32,
    pub dtype: DType,
}

/// Everything [`Requantizer::new`] needs.
pub(crate) struct RequantSpec<'a> {
    pub input_scale: f32,
    /// Input zero point in the u8 domain.
    pub input_zero_point: u8,
    pub weight_scales: &'a [f32],
    pub bias: Option<&'a [i32]>,
    /// `Σ_k w[c][k]` per output channel.
    pub weight_sums: &'a [i32],
    pub output_scale: f32,
    pub output_zero_point: i32,
    pub output_dtype: DType,
    pub activation: Activation,
}

impl Requantizer {
    pub fn new(spec: RequantSpec) -> OpResult<Self> {
        check_scale("input_scale", spec.input_scale)?;
        check_scale("output_scale", spec.output_scale)?;
        check_zero_point(
            "output_zero_point",
            spec.output_zero_point,
            spec.output_dtype,
        )?;
        for (c, &s) in spec.weight_scales.iter().enumerate() {
            check_scale(&format!("weight scale of channel {c}"), s)?;
        }
        let multiplier: Vec<f32> = spec
            .weight_scales
            .iter()
            .map(|&w| (spec.input_scale as f64 * w as f64 / spec.output_scale as f64) as f32)
            .collect();
        if multiplier.iter().any(|m| !m.is_finite() || *m == 0.0) {
            op_bail!("a requantization multiplier over- or underflows f32");
        }
        // |acc| <= depth · 255 · 128 < 2^31 - 2^23 (the ops cap the depth), so a bias within
        // ±2^23 keeps `acc + bias` inside i32.
        let mut bias = Vec::with_capacity(spec.weight_sums.len());
        for (c, &s) in spec.weight_sums.iter().enumerate() {
            let b = spec.bias.map_or(0, |b| b[c]) as i64 - spec.input_zero_point as i64 * s as i64;
            if b.abs() >= 1 << 23 {
                op_bail!("bias of channel {c} ({b} after the zero-point correction) exceeds 2^23");
            }
            bias.push(b as i32);
        }
        let (mut lo, mut hi) = range(spec.output_dtype)?;
        let z = spec.output_zero_point;
        match spec.activation {
            Activation::None => {}
            Activation::Relu => lo = lo.max(z),
            Activation::Relu6 => {
                lo = lo.max(z);
                let six = (6.0 / spec.output_scale as f64).round();
                hi = hi.min((z as f64 + six).min(i32::MAX as f64) as i32);
            }
        }
        Ok(Self {
            multiplier,
            bias,
            zero_point: z,
            lo,
            hi,
            dtype: spec.output_dtype,
        })
    }

    /// Requantizes one accumulator of output channel `c`.
    #[inline(always)]
    fn one(acc: i32, bias: i32, multiplier: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
        // `acc + bias` cannot overflow (depth and bias are capped at load); the rounded value
        // is within ±2^22, so adding the zero point cannot overflow either.
        let v = round_half_even_i32(acc.wrapping_add(bias) as f32 * multiplier);
        v.wrapping_add(zero_point).clamp(lo, hi)
    }

    /// Requantizes `acc` laid out `[channels][n]` into `out` laid out `[channels][n]`
    /// (`transposed == false`, convolutions) or `[n][channels]` (`true`, linear layers).
    pub fn apply_all<T: QuantOut>(&self, acc: &[i32], n: usize, transposed: bool, out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::x86::has_avx512_vnni() {
            // SAFETY: the CPU has AVX-512 F and BW (checked just above).
            unsafe { self.apply_all_avx512(acc, n, transposed, out) };
            return;
        }
        self.apply_all_generic(acc, n, transposed, out);
    }

    /// The same loops compiled for AVX-512, so the contiguous one runs 16 lanes wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    unsafe fn apply_all_avx512<T: QuantOut>(
        &self,
        acc: &[i32],
        n: usize,
        transposed: bool,
        out: &mut [T],
    ) {
        self.apply_all_generic(acc, n, transposed, out);
    }

    #[inline(always)]
    fn apply_all_generic<T: QuantOut>(
        &self,
        acc: &[i32],
        n: usize,
        transposed: bool,
        out: &mut [T],
    ) {
        let channels = self.multiplier.len();
        let (z, lo, hi) = (self.zero_point, self.lo, self.hi);
        let params = self.bias.iter().zip(&self.multiplier);
        for (c, (row, (&b, &m))) in acc.chunks_exact(n.max(1)).zip(params).enumerate() {
            if transposed {
                for (j, &a) in row.iter().enumerate() {
                    out[j * channels + c] = T::from_clamped(Self::one(a, b, m, z, lo, hi));
                }
            } else {
                // Contiguous and branch-free: the compiler vectorises this loop.
                for (o, &a) in out[c * n..(c + 1) * n].iter_mut().zip(row) {
                    *o = T::from_clamped(Self::one(a, b, m, z, lo, hi));
                }
            }
        }
    }
}

/// Round half to even: for |x| < 2²² exactly `f32::round_ties_even`, larger values clamped
/// to ±2²² (far outside any 8-bit range). Adding and subtracting 1.5·2²³ makes the FPU round
/// at integer precision; unlike `round_ties_even`, which is one instruction only with SSE4.1,
/// this vectorises with the x86-64 baseline.
#[inline(always)]
pub(crate) fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-4_194_304.0, 4_194_304.0);
    (x + MAGIC) - MAGIC
}

/// [`round_half_even`] straight to i32, reading the integer out of the float's bits (for
/// `y = x + 1.5·2²³` with |x| ≤ 2²², `bits(y) - bits(1.5·2²³) = x`), which vectorises where
/// Rust's saturating `f32 as i32` does not. The input must not be NaN (requantization
/// products never are: accumulators and multipliers are finite).
#[inline(always)]
pub(crate) fn round_half_even_i32(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let y = x.clamp(-4_194_304.0, 4_194_304.0) + MAGIC;
    (y.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// A quantized output element type.
pub(crate) trait QuantOut: Copy + Default + Send + Sync {
    /// From an i32 already clamped to the type's range.
    fn from_clamped(v: i32) -> Self;
    /// Wraps a vector into [`Data`].
    fn into_data(v: Vec<Self>) -> Data;
}

impl QuantOut for u8 {
    #[inline(always)]
    fn from_clamped(v: i32) -> Self {
        v as u8
    }
    fn into_data(v: Vec<Self>) -> Data {
        Data::U8(v)
    }
}

impl QuantOut for i8 {
    #[inline(always)]
    fn from_clamped(v: i32) -> Self {
        v as i8
    }
    fn into_data(v: Vec<Self>) -> Data {
        Data::I8(v)
    }
}

/// The bytes of a u8 or i8 value (i8 reinterpreted), with the XOR mask that maps them to u8.
pub(crate) fn quant_bytes(data: &Data) -> OpResult<&[u8]> {
    match data {
        Data::U8(v) => Ok(v),
        Data::I8(v) => Ok(crate::kernels::qgemm::i8_as_u8(v)),
        _ => op_bail!("expected a u8 or i8 tensor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_rounding_is_round_half_even() {
        let mut x = -5000.0f32;
        while x < 5000.0 {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
            assert_eq!(round_half_even_i32(x), x.round_ties_even() as i32, "{x}");
            x += 0.125;
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -2.5, 4_194_303.5, 0.499_999_97] {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
        assert_eq!(round_half_even(1e30), 4_194_304.0);
        assert_eq!(round_half_even(f32::NEG_INFINITY), -4_194_304.0);
    }
}
