//! The burn backend extensions that run keen's kernels on Flex: [`conv2d`] on im2col + GEMM,
//! [`max_pool2d`] on plane-parallel loops and [`batch_norm`] (training and inference mode,
//! optionally fused with a ReLU) on fused kernels.
//!
//! burn 0.22 models hold `Tensor<D>` on a runtime `Device`; its `Dispatch` backend routes each op
//! to the concrete backend. `#[backend_extension]` adds keen's own ops to that routing for Flex
//! and for `Autodiff<Flex>`, whose implementations register hand-written backward steps (the
//! macro generates no derivatives). Other devices never reach the extensions: the public
//! functions check the device first and call burn's own ops for them, since the generated
//! routing panics on a backend it was not given.

mod batch_norm;
mod conv;
mod pool;

pub use batch_norm::{batch_norm, batch_norm_relu, uses_keen_batch_norm};
pub use conv::{conv2d, conv2d_layer, conv2d_options, uses_keen_conv};
pub use pool::{max_pool2d, max_pool2d_layer, uses_keen_max_pool};

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::DispatchDevice;
use burn::tensor::{Bytes, DType, Shape, Tensor};

/// Whether `tensor` lives on a Flex device (with or without autodiff), the only backend keen's
/// kernels are registered for.
fn on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(
        tensor.device().as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

/// A contiguous f32 copy-free view of `tensor` where it is already dense, a dense copy otherwise.
fn dense(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().contiguous_offsets().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The shape of a rank-4 tensor, `None` for any other rank.
fn dims4(tensor: &FlexTensor) -> Option<[usize; 4]> {
    tensor.layout().shape().as_slice().try_into().ok()
}

/// The f32 elements of a tensor made dense by [`dense`].
fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("dense() returns a contiguous tensor and the callers checked the dtype is f32")
}

/// A dense f32 Flex tensor of `shape` holding `values`.
fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// A dense f32 Flex vector holding `values`.
fn flex_vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    flex_tensor(values, &[len])
}
