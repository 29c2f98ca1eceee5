//! keen's 2-D max pooling as a backend op on Flex: the plane-parallel kernels forward and
//! backward, for windows without padding or dilation (every pooling keen's models use).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::module::max_pool2d as burn_max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{DType, Tensor};

use crate::pool::{parallel, MaxPool2dGeometry, MaxPoolOutput};

use super::{dense, dims4, flex_tensor, on_flex, values};

/// keen's max pooling as a backend op: `x` `[N, C, H, W]`, f32, no padding, no dilation, floor
/// mode.
#[backend_extension(Flex, Autodiff)]
pub trait KeenMaxPoolBackend: Backend {
    fn keen_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// Whether [`max_pool2d`] runs keen's kernels for `input`: a Flex device (with or without
/// autodiff), f32 and a window that fits the input.
pub fn uses_keen_max_pool(input: &Tensor<4>, kernel: [usize; 2], stride: [usize; 2]) -> bool {
    on_flex(input)
        && input.dtype() == DType::F32
        && MaxPool2dGeometry::new(input.dims(), kernel, stride).is_ok()
}

/// Max pooling with a `kernel` window moved by `stride`, no padding, no dilation, floor mode: keen's
/// kernels where [`uses_keen_max_pool`] holds, burn's `max_pool2d` everywhere else. Values and
/// gradients are burn's exactly (the same input wins every window, ties and NaN included).
pub fn max_pool2d(input: Tensor<4>, kernel: [usize; 2], stride: [usize; 2]) -> Tensor<4> {
    if !uses_keen_max_pool(&input, kernel, stride) {
        return burn_max_pool2d(input, MaxPoolOptions::new(kernel).with_stride(stride));
    }
    Tensor::from_dispatch(<Dispatch as KeenMaxPoolBackend>::keen_max_pool2d(
        input.into_dispatch(),
        kernel,
        stride,
    ))
}

/// `pool.forward(input)` through [`max_pool2d`] when the layer has no padding or dilation and
/// floor mode; `pool.forward` itself otherwise.
pub fn max_pool2d_layer(pool: &MaxPool2d, input: Tensor<4>) -> Tensor<4> {
    let plain = matches!(
        pool.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    if plain && pool.dilation == [1, 1] && !pool.ceil_mode {
        max_pool2d(input, pool.kernel_size, pool.stride)
    } else {
        pool.forward(input)
    }
}

fn flex_geometry(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Option<MaxPool2dGeometry> {
    if x.dtype() != DType::F32 {
        return None;
    }
    MaxPool2dGeometry::new(dims4(x)?, kernel, stride).ok()
}

/// The forward pass on a Flex primitive with a geometry already checked.
fn forward(geometry: &MaxPool2dGeometry, x: FlexTensor) -> (FlexTensor, Vec<u32>) {
    let x = dense(x);
    let MaxPoolOutput {
        values: out,
        argmax,
    } = parallel::max_pool2d_forward(geometry, values(&x))
        .expect("the buffer length follows from the geometry of this tensor's shape");
    (flex_tensor(out, &geometry.output_shape()), argmax)
}

impl KeenMaxPoolBackend for Flex {
    fn keen_max_pool2d(x: FlexTensor, kernel: [usize; 2], stride: [usize; 2]) -> FlexTensor {
        match flex_geometry(&x, kernel, stride) {
            Some(geometry) => forward(&geometry, x).0,
            None => Flex::max_pool2d(x, kernel, stride, [0, 0], [1, 1], false),
        }
    }
}

/// The backward step of keen's max pooling: sends each output's gradient to the input its
/// maximum came from.
#[derive(Debug)]
struct KeenMaxPool2dBackward {
    geometry: MaxPool2dGeometry,
}

impl Backward<Flex, 1> for KeenMaxPool2dBackward {
    /// Where each output's maximum came from, inside its input plane.
    type State = Arc<Vec<u32>>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = dense(grads.consume::<Flex>(&ops.node));
        let Some(node) = &ops.parents[0] else {
            return;
        };
        let grad = parallel::max_pool2d_backward(&self.geometry, &ops.state, values(&out_grad))
            .expect("the buffer lengths follow from the geometry saved with these indices");
        grads.register::<Flex>(node.id, flex_tensor(grad, &self.geometry.input_shape()));
    }
}

impl<C: CheckpointStrategy> KeenMaxPoolBackend for Autodiff<Flex, C> {
    fn keen_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> FloatTensor<Self> {
        let Some(geometry) = flex_geometry(x.primitive(), kernel, stride) else {
            return Autodiff::<Flex, C>::max_pool2d(x, kernel, stride, [0, 0], [1, 1], false);
        };
        // The indices are all the backward step needs, and far smaller than recomputing the
        // forward pass would cost.
        let backward = KeenMaxPool2dBackward { geometry };
        match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, argmax) = forward(&geometry, x.into_primitive());
                prep.finish(Arc::new(argmax), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&geometry, x.into_primitive()).0),
        }
    }
}
