//! keen's convolution as a backend op: im2col + GEMM forward and backward on Flex.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use crate::conv::im2col_gemm::{self, WantedGrads};
use crate::conv::Conv2dGeometry;

use super::{dense, dims4, flex_tensor, flex_vector, on_flex, values};

/// keen's convolution as a backend op: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in, kh, kw]`,
/// optional `bias` `[C_out]`, groups = 1, f32.
#[backend_extension(Flex, Autodiff)]
pub trait KeenConvBackend: Backend {
    /// The convolution of `x` with `weight` under `options`.
    fn keen_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The convolution of `x` with `weight`, plus `bias` `[C_out]`. A method of its own because
    /// burn 0.22's extension macro does not unwrap an `Option<FloatTensor>` input.
    fn keen_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// Whether [`conv2d`] runs keen's kernels for these operands rather than burn's convolution:
/// a Flex device (with or without autodiff), f32, groups = 1 and sizes that make a convolution.
pub fn uses_keen_conv(input: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    on_flex(input)
        && input.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && geometry_of(input.dims(), weight.dims(), options).is_some()
}

/// A drop-in for `burn::tensor::module::conv2d`: keen's im2col + GEMM kernels where
/// [`uses_keen_conv`] holds, burn's convolution everywhere else (other devices, groups > 1,
/// other dtypes, and shapes burn itself rejects). Results and gradients agree with burn's up to
/// f32 summation order.
pub fn conv2d(
    input: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !uses_keen_conv(&input, &weight, &options) {
        return burn::tensor::module::conv2d(input, weight, bias, options);
    }
    let (input, weight) = (input.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => <Dispatch as KeenConvBackend>::keen_conv2d_bias(
            input,
            weight,
            bias.into_dispatch(),
            options,
        ),
        None => <Dispatch as KeenConvBackend>::keen_conv2d(input, weight, options),
    })
}

/// `conv.forward(input)` through [`conv2d`].
pub fn conv2d_layer(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let options = conv2d_options(conv, input.dims());
    conv2d(
        input,
        conv.weight.val(),
        conv.bias.as_ref().map(|bias| bias.val()),
        options,
    )
}

/// The options `Conv2d::forward` builds for an input of `input_dims`.
pub fn conv2d_options(conv: &Conv2d, input_dims: [usize; 4]) -> ConvOptions<2> {
    let [_, _, height, width] = input_dims;
    let padding = match &conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [
            same_padding(conv.kernel_size[0], conv.stride[0], height),
            same_padding(conv.kernel_size[1], conv.stride[1], width),
        ],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(*top, *bottom), (*left, *right)],
    };
    ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups)
}

/// `(begin, end)` padding of a "same" convolution, as burn-nn computes it (its helper is
/// private): the output is `ceil(size / stride)` long and an odd total puts the extra pixel at
/// the end. Like burn's, it ignores dilation, so both paths see the same padding.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

fn geometry_of(
    input_dims: [usize; 4],
    weight_dims: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<Conv2dGeometry> {
    if options.groups != 1 {
        return None;
    }
    Conv2dGeometry::new(
        input_dims,
        weight_dims,
        options.stride,
        options.padding,
        options.dilation,
    )
    .ok()
}

/// The geometry of a Flex convolution call, or `None` where keen's kernels do not apply (then
/// the callers hand the call to burn's own convolution).
fn flex_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<Conv2dGeometry> {
    let all_f32 = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32);
    if !all_f32 {
        return None;
    }
    geometry_of(dims4(x)?, dims4(weight)?, options)
}

/// The forward pass on Flex primitives with a geometry already checked.
fn forward(
    geometry: &Conv2dGeometry,
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
) -> FlexTensor {
    let (x, weight, bias) = (dense(x), dense(weight), bias.map(dense));
    let out = im2col_gemm::conv2d_forward(
        geometry,
        values(&x),
        values(&weight),
        bias.as_ref().map(values),
    )
    .expect("buffer lengths follow from the geometry of these tensors' shapes");
    flex_tensor(out, &geometry.output_shape())
}

impl KeenConvBackend for Flex {
    fn keen_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        flex_conv2d(x, weight, None, options)
    }

    fn keen_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        flex_conv2d(x, weight, Some(bias), options)
    }
}

fn flex_conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
) -> FlexTensor {
    match flex_geometry(&x, &weight, bias.as_ref(), &options) {
        Some(geometry) => forward(&geometry, x, weight, bias),
        None => Flex::conv2d(x, weight, bias, options),
    }
}

/// The backward step of keen's convolution: saves the input and weight, and computes the
/// gradients of whichever parents need one.
#[derive(Debug)]
struct KeenConv2dBackward {
    geometry: Conv2dGeometry,
}

/// What the backward step keeps from the forward pass: the dense input and weight (Flex tensors
/// share their storage, so this holds references, not copies).
type SavedOperands = (FlexTensor, FlexTensor);

impl KeenConv2dBackward {
    fn run<const N: usize>(self, ops: Ops<SavedOperands, N>, grads: &mut Gradients) {
        let parents = ops.parents;
        let [x_node, weight_node] = [&parents[0], &parents[1]];
        let bias_node = parents.get(2).and_then(Option::as_ref);
        let out_grad = dense(grads.consume::<Flex>(&ops.node));
        let (x, weight) = ops.state;
        let wanted = WantedGrads {
            input: x_node.is_some(),
            weight: weight_node.is_some(),
            bias: bias_node.is_some(),
        };
        let computed = im2col_gemm::conv2d_backward(
            &self.geometry,
            values(&x),
            values(&weight),
            values(&out_grad),
            wanted,
        )
        .expect("buffer lengths follow from the geometry saved with these tensors");
        if let (Some(node), Some(grad)) = (x_node, computed.input) {
            grads.register::<Flex>(node.id, flex_tensor(grad, &self.geometry.input_shape()));
        }
        if let (Some(node), Some(grad)) = (weight_node, computed.weight) {
            grads.register::<Flex>(node.id, flex_tensor(grad, &self.geometry.weight_shape()));
        }
        if let (Some(node), Some(grad)) = (bias_node, computed.bias) {
            grads.register::<Flex>(node.id, flex_vector(grad));
        }
    }
}

impl Backward<Flex, 2> for KeenConv2dBackward {
    type State = SavedOperands;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        self.run(ops, grads);
    }
}

impl Backward<Flex, 3> for KeenConv2dBackward {
    type State = SavedOperands;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        self.run(ops, grads);
    }
}

impl<C: CheckpointStrategy> KeenConvBackend for Autodiff<Flex, C> {
    fn keen_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        autodiff_conv2d::<C>(x, weight, None, options)
    }

    fn keen_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        autodiff_conv2d::<C>(x, weight, Some(bias), options)
    }
}

fn autodiff_conv2d<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: Option<FloatTensor<Autodiff<Flex, C>>>,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let geometry = flex_geometry(
        x.primitive(),
        weight.primitive(),
        bias.as_ref().map(|b| b.primitive()),
        &options,
    );
    let Some(geometry) = geometry else {
        return Autodiff::<Flex, C>::conv2d(x, weight, bias, options);
    };
    let backward = KeenConv2dBackward { geometry };
    // The saved input and weight are kept as they are rather than checkpointed: a convolution
    // is compute-bound, so recomputing its inputs would cost more than holding them.
    match bias {
        Some(bias) => match backward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (dense(x.into_primitive()), dense(weight.into_primitive()));
                let saved = (x.clone(), weight.clone());
                prep.finish(
                    saved,
                    forward(&geometry, x, weight, Some(bias.into_primitive())),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(
                &geometry,
                x.into_primitive(),
                weight.into_primitive(),
                Some(bias.into_primitive()),
            )),
        },
        None => match backward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (dense(x.into_primitive()), dense(weight.into_primitive()));
                let saved = (x.clone(), weight.clone());
                prep.finish(saved, forward(&geometry, x, weight, None))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(
                &geometry,
                x.into_primitive(),
                weight.into_primitive(),
                None,
            )),
        },
    }
}
