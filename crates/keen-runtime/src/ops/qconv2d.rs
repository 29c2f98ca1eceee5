//! INT8 convolution: u8/i8 activations × symmetric per-output-channel i8 weights, i32
//! accumulation in the INT8 GEMM (an implicit GEMM packing straight from the image; direct loops
//! for depthwise), then requantization with the bias, the input zero-point correction, a fused ReLU/ReLU6 and
//! the output zero point.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::conv2d::ConvShape;
use super::layout_cache::LayoutCache;
use super::requant::{
    check_zero_point, quant_bytes, to_u8_domain, QuantOut, RequantSpec, Requantizer,
};
use super::{expect_vector, for_each_image, with_scratch_i32, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::depthwise::depthwise_u8;
use crate::kernels::implicit::ImplicitIm2col;
use crate::kernels::qconv::qconv_implicit;
use crate::kernels::qgemm::{row_sums, PackedA, QgemmKernel};
use crate::kernels::reference::ConvGeometry;
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::QConv2d`]. Inputs: `[x_q, weight_i8 [out, in/groups, kh, kw],
/// weight_scales_f32 [out], bias_i32 [out]?]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QConv2dAttrs {
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Padding (top, left, bottom, right); padded pixels are the input zero point (real 0).
    #[serde(default)]
    pub padding: [usize; 4],
    /// Channel groups.
    pub groups: usize,
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

/// Largest GEMM depth: keeps `depth · 255 · 128 + 2^23` (sums plus bias) inside i32.
pub(crate) const MAX_DEPTH: usize = (1 << 16) - (1 << 8);

#[derive(Debug)]
struct QConv2dKernel {
    shape: ConvShape,
    input_dtype: DType,
    /// Input zero point in the u8 domain, and the XOR mask to get there.
    zero_point_u8: u8,
    flip: u8,
    weight: Vec<i8>,
    packed: Vec<PackedA>,
    requant: Requantizer,
    /// The implicit-im2col layout of the last input size seen (the same call after call).
    layout: LayoutCache,
}

/// The stored weight, per-channel scales and optional i32 bias of a quantized op.
pub(crate) type QuantWeights<'a> = (&'a Value, &'a [f32], Option<&'a [i32]>);

/// Reads the `[x, weight, scales, bias?]` inputs shared by QConv2d and QLinear.
pub(crate) fn quant_weights<'a>(
    inputs: &NodeInputs<'a>,
    channels_axis_len: impl Fn(&[usize]) -> OpResult<usize>,
) -> OpResult<QuantWeights<'a>> {
    inputs.expect_count(3, 4)?;
    let weight = inputs.constant(1, "weight", DType::I8)?;
    let channels = channels_axis_len(&weight.shape)?;
    let scales = inputs.constant(2, "weight_scales", DType::F32)?;
    expect_vector(scales, "weight_scales", channels)?;
    let bias = match inputs.consts.get(3) {
        Some(_) => {
            let b = inputs.constant(3, "bias", DType::I32)?;
            expect_vector(b, "bias", channels)?;
            Some(b.as_i32()?)
        }
        None => None,
    };
    Ok((weight, scales.as_f32()?, bias))
}

impl QConv2dAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        let (weight, scales, bias) = quant_weights(inputs, |s| match s.first() {
            Some(&c) if s.len() == 4 => Ok(c),
            _ => op_bail!("weight must be [out, in/groups, kh, kw], got {s:?}"),
        })?;
        let shape = ConvShape::new(&weight.shape, self.stride, self.padding, self.groups)?;
        let depth = shape.depth();
        if depth > MAX_DEPTH {
            op_bail!("depth {depth} exceeds {MAX_DEPTH}: i32 accumulators could overflow");
        }
        let input_dtype = inputs.info(0)?.dtype;
        check_zero_point("input_zero_point", self.input_zero_point, input_dtype)?;
        let (zero_point_u8, flip) = to_u8_domain(self.input_zero_point, input_dtype);
        let w = weight.as_i8()?.to_vec();
        let cout_g = shape.out_channels / shape.groups;
        let requant = Requantizer::new(RequantSpec {
            input_scale: self.input_scale,
            input_zero_point: zero_point_u8,
            weight_scales: scales,
            bias,
            weight_sums: &row_sums(shape.out_channels, depth, &w),
            output_scale: self.output_scale,
            output_zero_point: self.output_zero_point,
            output_dtype: self.output_dtype,
            activation: self.activation,
        })?;
        let packed = if shape.is_depthwise() {
            Vec::new()
        } else {
            (0..shape.groups)
                .map(|g| {
                    PackedA::pack(
                        cout_g,
                        depth,
                        &w[g * cout_g * depth..(g + 1) * cout_g * depth],
                    )
                })
                .collect()
        };
        Ok(Box::new(QConv2dKernel {
            shape,
            input_dtype,
            zero_point_u8,
            flip,
            weight: w,
            packed,
            requant,
            layout: LayoutCache::default(),
        }))
    }
}

impl Kernel for QConv2dKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        Ok(ValueInfo::new(
            self.requant.dtype,
            self.shape.infer(inputs[0], &[self.input_dtype])?,
        ))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let out_shape = self.shape.infer(&x.info(), &[self.input_dtype])?;
        let g = self.shape.geometry(x.shape[0], [x.shape[2], x.shape[3]]);
        let bytes = quant_bytes(&x.data)?;
        let data = match self.requant.dtype {
            DType::U8 => u8::into_data(self.run_typed::<u8>(&g, bytes, &out_shape)?),
            _ => i8::into_data(self.run_typed::<i8>(&g, bytes, &out_shape)?),
        };
        Ok(Value {
            shape: out_shape,
            data,
        })
    }
}

impl QConv2dKernel {
    fn run_typed<T: QuantOut>(
        &self,
        g: &ConvGeometry,
        input: &[u8],
        out_shape: &[usize],
    ) -> OpResult<Vec<T>> {
        let (cout, ohw) = (out_shape[1], out_shape[2] * out_shape[3]);
        let in_per_image = g.in_channels * g.in_hw[0] * g.in_hw[1];
        let layout = match self.shape.is_depthwise() {
            true => None,
            false => Some(self.layout.get(g)?),
        };
        let mut out = vec![T::default(); out_shape.iter().product()];
        let failed = std::sync::atomic::AtomicBool::new(false);
        for_each_image(&mut out, cout * ohw, input, in_per_image, |o, i| {
            let ok = with_scratch_i32(cout * ohw, |acc| {
                let ok = self.accumulate(g, layout.as_deref(), i, acc);
                self.requant.apply_all(acc, ohw, false, o);
                ok
            });
            if !ok {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        if failed.into_inner() {
            op_bail!("internal error: INT8 GEMM shapes disagree");
        }
        Ok(out)
    }

    /// i32 sums of one image into `acc` `[out, oh·ow]`; `false` on an internal mismatch.
    fn accumulate(
        &self,
        g: &ConvGeometry,
        layout: Option<&ImplicitIm2col>,
        input: &[u8],
        acc: &mut [i32],
    ) -> bool {
        let Some(layout) = layout else {
            if self.flip == 0 {
                depthwise_u8(g, input, self.zero_point_u8, &self.weight, acc);
            } else {
                let flipped: Vec<u8> = input.iter().map(|b| b ^ self.flip).collect();
                depthwise_u8(g, &flipped, self.zero_point_u8, &self.weight, acc);
            }
            return true;
        };
        let Some([oh, ow]) = g.out_hw() else {
            return false;
        };
        let (ohw, hw) = (oh * ow, g.in_hw[0] * g.in_hw[1]);
        let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let kernel = QgemmKernel::best();
        let mut ok = true;
        for (group, packed) in self.packed.iter().enumerate() {
            ok &= qconv_implicit(
                kernel,
                layout,
                packed,
                &input[group * cin_g * hw..(group + 1) * cin_g * hw],
                self.zero_point_u8,
                self.flip,
                &mut acc[group * cout_g * ohw..(group + 1) * cout_g * ohw],
            );
        }
        ok
    }
}
