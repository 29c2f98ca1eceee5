//! fp32 2-D convolution with optional bias and fused ReLU/ReLU6: an implicit GEMM reading the
//! padded image directly on AVX-512 CPUs (`kernels::sconv`), im2col + GEMM per group elsewhere, a
//! plain GEMM for 1×1 stride-1 convolutions (no unfolding), a direct loop for depthwise ones,
//! and a sparse × dense product when pruning left at most 15% of the weights non-zero.

use serde::{Deserialize, Serialize};

use super::activation::{is_none, Activation};
use super::layout_cache::LayoutCache;
use super::{expect_vector, for_each_image, with_scratch_f32, Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::depthwise::depthwise_f32;
use crate::kernels::im2col::im2col;
use crate::kernels::implicit::ImplicitIm2col;
use crate::kernels::reference::ConvGeometry;
use crate::kernels::sconv::{sconv_implicit, PackedWeights, SconvKernel};
use crate::kernels::sgemm::{sgemm, MatRef};
use crate::kernels::sparse::{CsrMatrix, SPARSE_MAX_DENSITY};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Conv2d`]. The kernel size is the weight's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dAttrs {
    /// Stride (vertical, horizontal).
    #[serde(default = "one2")]
    pub stride: [usize; 2],
    /// Zero padding (top, left, bottom, right).
    #[serde(default)]
    pub padding: [usize; 4],
    /// Channel groups: 1 for a dense convolution, `channels` for a depthwise one.
    #[serde(default = "one")]
    pub groups: usize,
    /// Activation fused into the output.
    #[serde(default, skip_serializing_if = "is_none")]
    pub activation: Activation,
}

fn one() -> usize {
    1
}
fn one2() -> [usize; 2] {
    [1, 1]
}

impl Default for Conv2dAttrs {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            padding: [0; 4],
            groups: 1,
            activation: Activation::None,
        }
    }
}

/// Convolution geometry checked against the weight shape; shared with `QConv2d`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub groups: usize,
}

impl ConvShape {
    /// Validates stride, padding and groups against a `[out, in/groups, kh, kw]` weight.
    pub fn new(
        weight_shape: &[usize],
        stride: [usize; 2],
        padding: [usize; 4],
        groups: usize,
    ) -> OpResult<Self> {
        let &[out_channels, in_per_group, kh, kw] = weight_shape else {
            op_bail!("weight must be [out, in/groups, kh, kw], got {weight_shape:?}");
        };
        if kh == 0 || kw == 0 || in_per_group == 0 || out_channels == 0 {
            op_bail!("weight shape {weight_shape:?} has an empty axis");
        }
        if stride[0] == 0 || stride[1] == 0 {
            op_bail!("stride {stride:?} must be at least 1");
        }
        if groups == 0 || !out_channels.is_multiple_of(groups) {
            op_bail!("groups {groups} must divide the {out_channels} output channels");
        }
        if padding[0] >= kh || padding[2] >= kh || padding[1] >= kw || padding[3] >= kw {
            op_bail!("padding {padding:?} must be smaller than the kernel {kh}×{kw}");
        }
        let Some(in_channels) = in_per_group.checked_mul(groups) else {
            op_bail!("groups {groups} overflow");
        };
        Ok(Self {
            in_channels,
            out_channels,
            kernel: [kh, kw],
            stride,
            padding,
            groups,
        })
    }

    /// True for one filter per channel (depthwise).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// True when no unfolding is needed: 1×1, stride 1, no padding.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0; 4]
    }

    /// Geometry for an input of `[batch, C, h, w]`.
    pub fn geometry(&self, batch: usize, in_hw: [usize; 2]) -> ConvGeometry {
        ConvGeometry {
            batch,
            in_channels: self.in_channels,
            in_hw,
            out_channels: self.out_channels,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            groups: self.groups,
        }
    }

    /// Output shape for input `shape` of `dtype`, checking channels and that the kernel fits.
    pub fn infer(&self, input: &ValueInfo, dtypes: &[DType]) -> OpResult<Vec<usize>> {
        if !dtypes.contains(&input.dtype) || input.shape.len() != 4 {
            op_bail!(
                "input must be [N, C, H, W] of {dtypes:?}, got {} {:?}",
                input.dtype,
                input.shape
            );
        }
        let s = &input.shape;
        if s[1] != self.in_channels {
            op_bail!(
                "input has {} channels, the weight expects {}",
                s[1],
                self.in_channels
            );
        }
        let Some([oh, ow]) = self.geometry(s[0], [s[2], s[3]]).out_hw() else {
            op_bail!(
                "kernel {:?} does not fit the {}×{} input padded by {:?}",
                self.kernel,
                s[2],
                s[3],
                self.padding
            );
        };
        Ok(vec![s[0], self.out_channels, oh, ow])
    }

    /// Depth of the GEMM per group: `in/groups · kh · kw`.
    pub fn depth(&self) -> usize {
        self.in_channels / self.groups * self.kernel[0] * self.kernel[1]
    }
}

#[derive(Debug)]
struct Conv2dKernel {
    shape: ConvShape,
    weight: Vec<f32>,
    /// Per group, the weights as CSR when they are sparse enough for that to pay.
    sparse: Option<Vec<CsrMatrix>>,
    bias: Option<Vec<f32>>,
    activation: Activation,
    /// The implicit-GEMM path (AVX-512 CPUs, dense k×k weights): its tile and, per group, the
    /// packed weights.
    implicit: Option<(SconvKernel, Vec<PackedWeights>)>,
    /// The implicit-im2col layout of the last input size seen.
    layout: LayoutCache,
}

impl Conv2dAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(2, 3)?;
        let weight = inputs.constant(1, "weight", DType::F32)?;
        let shape = ConvShape::new(&weight.shape, self.stride, self.padding, self.groups)?;
        let bias = match inputs.consts.get(2) {
            Some(_) => {
                let b = inputs.constant(2, "bias", DType::F32)?;
                expect_vector(b, "bias", shape.out_channels)?;
                Some(b.as_f32()?.to_vec())
            }
            None => None,
        };
        let w = weight.as_f32()?;
        let (cout_g, depth) = (shape.out_channels / shape.groups, shape.depth());
        let sparse: Vec<CsrMatrix> = (0..shape.groups)
            .map(|g| {
                CsrMatrix::from_dense(cout_g, depth, &w[g * cout_g * depth..][..cout_g * depth])
            })
            .collect();
        let dense_enough = sparse.iter().any(|m| m.density() > SPARSE_MAX_DENSITY);
        let sparse = (!shape.is_depthwise() && !dense_enough).then_some(sparse);
        // 1×1 stride-1 convolutions need no unfolding: the `gemm` crate reads the image as is.
        let implicit = match SconvKernel::fast() {
            Some(k) if sparse.is_none() && !shape.is_depthwise() && !shape.is_pointwise() => {
                let packed = (0..shape.groups)
                    .map(|g| {
                        PackedWeights::pack(
                            cout_g,
                            depth,
                            &w[g * cout_g * depth..][..cout_g * depth],
                        )
                    })
                    .collect();
                Some((k, packed))
            }
            _ => None,
        };
        Ok(Box::new(Conv2dKernel {
            shape,
            sparse,
            implicit,
            layout: LayoutCache::default(),
            weight: w.to_vec(),
            bias,
            activation: self.activation,
        }))
    }
}

impl Kernel for Conv2dKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        Ok(ValueInfo::new(
            DType::F32,
            self.shape.infer(inputs[0], &[DType::F32])?,
        ))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let out_shape = self.shape.infer(&x.info(), &[DType::F32])?;
        let g = self.shape.geometry(x.shape[0], [x.shape[2], x.shape[3]]);
        let (cout, ohw) = (out_shape[1], out_shape[2] * out_shape[3]);
        let in_per_image = self.shape.in_channels * x.shape[2] * x.shape[3];
        let layout = match self.implicit {
            Some(_) => Some(self.layout.get(&g)?),
            None => None,
        };
        let mut out = vec![0f32; out_shape.iter().product()];
        let failed = std::sync::atomic::AtomicBool::new(false);
        for_each_image(&mut out, cout * ohw, x.as_f32()?, in_per_image, |o, i| {
            if !self.image(&g, layout.as_deref(), i, o) {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            self.epilogue(o, ohw);
        });
        if failed.into_inner() {
            op_bail!(
                "internal error: GEMM shapes disagree for input {:?}",
                x.shape
            );
        }
        Ok(Value::f32(out_shape, out))
    }
}

impl Conv2dKernel {
    /// Convolves one image; `false` on an internal shape mismatch.
    fn image(
        &self,
        g: &ConvGeometry,
        layout: Option<&ImplicitIm2col>,
        input: &[f32],
        out: &mut [f32],
    ) -> bool {
        if self.shape.is_depthwise() {
            depthwise_f32(g, input, &self.weight, out);
            return true;
        }
        let Some([oh, ow]) = g.out_hw() else {
            return false;
        };
        let ohw = oh * ow;
        let hw = g.in_hw[0] * g.in_hw[1];
        let (cin_g, cout_g, depth) = (
            g.in_channels / g.groups,
            g.out_channels / g.groups,
            self.shape.depth(),
        );
        if let (Some((kernel, packed)), Some(layout)) = (&self.implicit, layout) {
            let mut ok = true;
            for (group, w) in packed.iter().enumerate() {
                ok &= sconv_implicit(
                    *kernel,
                    layout,
                    w,
                    &input[group * cin_g * hw..(group + 1) * cin_g * hw],
                    &mut out[group * cout_g * ohw..(group + 1) * cout_g * ohw],
                );
            }
            return ok;
        }
        let mut ok = true;
        for group in 0..g.groups {
            let x = &input[group * cin_g * hw..(group + 1) * cin_g * hw];
            let w = MatRef::row_major(
                &self.weight[group * cout_g * depth..(group + 1) * cout_g * depth],
                cout_g,
                depth,
            );
            let o = &mut out[group * cout_g * ohw..(group + 1) * cout_g * ohw];
            let sparse = self.sparse.as_ref().map(|s| &s[group]);
            let multiply = |b: MatRef, o: &mut [f32]| match sparse {
                Some(csr) => csr.matmul(b, o),
                None => sgemm(w, b, o, ohw, false),
            };
            ok &= if self.shape.is_pointwise() {
                multiply(MatRef::row_major(x, depth, ohw), o)
            } else {
                with_scratch_f32(depth * ohw, |cols| {
                    im2col(g, cin_g, x, 0.0, cols)
                        && multiply(MatRef::row_major(cols, depth, ohw), o)
                })
            };
        }
        ok
    }

    fn epilogue(&self, out: &mut [f32], ohw: usize) {
        if let Some(bias) = &self.bias {
            for (plane, &b) in out.chunks_mut(ohw.max(1)).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
        self.activation.apply(out);
    }
}
