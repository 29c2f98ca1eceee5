//! keen's batch norm (+ ReLU) as backend ops on Flex: training mode with its backward step, and
//! inference mode with running statistics.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};

use crate::norm::{fused, BatchNormShape, BatchStats};

use super::{dense, flex_tensor, flex_vector, on_flex, values};

/// keen's training-mode batch norm as a backend op: `x` `[N, C, ...]`, `gamma` and `beta`
/// `[C]`, f32. Returns the output (after a ReLU when `relu`) and the batch mean and biased
/// variance, as burn's `batch_norm_train` does.
#[backend_extension(Flex, Autodiff)]
pub trait KeenBatchNormBackend: Backend {
    fn keen_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// keen's inference-mode batch norm as a backend op on plain Flex: `x` `[N, C, ...]`, the
/// other four `[C]`, f32. Devices that track gradients keep burn's differentiable ops for it
/// (a frozen layer on a training device), so this has no autodiff implementation.
#[backend_extension(Flex)]
pub trait KeenBatchNormInferenceBackend: Backend {
    fn keen_batch_norm_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;
}

/// Which implementation a batch norm call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// keen's training kernel: batch statistics, running statistics updated.
    Train,
    /// keen's inference kernel: running statistics.
    Inference,
    /// burn's `BatchNorm::forward`.
    Burn,
}

fn route<const D: usize>(bn: &BatchNorm, input: &Tensor<D>) -> Route {
    let f32_operands = input.dtype() == DType::F32
        && bn.gamma.val().dtype() == DType::F32
        && bn.beta.val().dtype() == DType::F32;
    let fits =
        BatchNormShape::new(&input.dims()).is_ok_and(|shape| shape.channels == bn.gamma.dims()[0]);
    if !(on_flex(input) && f32_operands && fits) {
        return Route::Burn;
    }
    // burn-nn's own test: batch statistics only on a device that tracks gradients and for a
    // layer not frozen out of training.
    match (input.device().is_autodiff(), bn.training.is_enabled()) {
        (true, true) => Route::Train,
        (false, _) => {
            let f32_statistics = bn.running_mean.value().dtype() == DType::F32
                && bn.running_var.value().dtype() == DType::F32;
            if f32_statistics {
                Route::Inference
            } else {
                Route::Burn
            }
        }
        // A frozen layer on a training device: its input may still need a gradient, which
        // burn's differentiable ops give.
        (true, false) => Route::Burn,
    }
}

/// Whether [`batch_norm`] runs keen's kernels for `bn` on `input`: on Flex, in f32, with an
/// input `[N, C, ...]` of `bn`'s channel count and no empty size, either training (an autodiff
/// device and `bn` not frozen) or inference (a plain Flex device).
pub fn uses_keen_batch_norm<const D: usize>(bn: &BatchNorm, input: &Tensor<D>) -> bool {
    route(bn, input) != Route::Burn
}

/// A drop-in for `bn.forward(input)`: keen's fused kernels where [`uses_keen_batch_norm`] holds
/// (in training the running statistics are updated exactly as burn's `BatchNorm` does), burn's
/// batch norm everywhere else. Outputs and gradients agree with burn's up to f32 rounding.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    forward(bn, input, false)
}

/// `relu(bn.forward(input))` as one op where [`uses_keen_batch_norm`] holds: the ReLU costs no
/// pass of its own, forward or backward.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    forward(bn, input, true)
}

fn forward<const D: usize>(bn: &BatchNorm, input: Tensor<D>, with_relu: bool) -> Tensor<D> {
    match route(bn, &input) {
        Route::Train => forward_train(bn, input, with_relu),
        Route::Inference => {
            let device = input.device();
            Tensor::from_dispatch(
                <Dispatch as KeenBatchNormInferenceBackend>::keen_batch_norm_inference(
                    input.into_dispatch(),
                    bn.gamma.val().into_dispatch(),
                    bn.beta.val().into_dispatch(),
                    bn.running_mean.value().to_device(&device).into_dispatch(),
                    bn.running_var.value().to_device(&device).into_dispatch(),
                    bn.epsilon,
                    with_relu,
                ),
            )
        }
        Route::Burn => {
            let output = bn.forward(input);
            if with_relu {
                relu(output)
            } else {
                output
            }
        }
    }
}

fn forward_train<const D: usize>(bn: &BatchNorm, input: Tensor<D>, with_relu: bool) -> Tensor<D> {
    let device = input.device();
    let (output, mean, variance) = <Dispatch as KeenBatchNormBackend>::keen_batch_norm_train(
        input.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        with_relu,
    );
    let (mean, variance) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(variance),
    );
    // burn-nn's `BatchNorm::forward_train`, step for step, so a model trains the same either way.
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - bn.momentum)
        .add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var
        .mul_scalar(1.0 - bn.momentum)
        .add(variance.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(output)
}

fn shape_of(x: &FlexTensor) -> (Vec<usize>, BatchNormShape) {
    let dims = x.layout().shape().as_slice().to_vec();
    let shape = BatchNormShape::new(&dims)
        .expect("batch_norm() only routes [N, C, ...] inputs with no empty size here");
    (dims, shape)
}

/// The forward pass on dense Flex primitives: output, mean and variance tensors, and the
/// statistics the backward step needs.
fn forward_dense(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    with_relu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor, BatchStats) {
    let (dims, shape) = shape_of(x);
    let result = fused::batch_norm_forward(
        &shape,
        values(x),
        values(gamma),
        values(beta),
        epsilon,
        with_relu,
    )
    .expect("buffer lengths follow from the shapes batch_norm() checked");
    (
        flex_tensor(result.output, &dims),
        flex_vector(result.stats.mean.clone()),
        flex_vector(result.stats.variance.clone()),
        result.stats,
    )
}

impl KeenBatchNormInferenceBackend for Flex {
    fn keen_batch_norm_inference(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> FlexTensor {
        let (x, gamma, beta) = (dense(x), dense(gamma), dense(beta));
        let stats = BatchStats {
            mean: values(&dense(mean)).to_vec(),
            variance: values(&dense(variance)).to_vec(),
        };
        let (dims, shape) = shape_of(&x);
        let output = fused::batch_norm_inference(
            &shape,
            values(&x),
            values(&gamma),
            values(&beta),
            &stats,
            epsilon,
            relu,
        )
        .expect("buffer lengths follow from the shapes batch_norm() checked");
        flex_tensor(output, &dims)
    }
}

impl KeenBatchNormBackend for Flex {
    fn keen_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (dense(x), dense(gamma), dense(beta));
        let (output, mean, variance, _) = forward_dense(&x, &gamma, &beta, epsilon, relu);
        (output, mean, variance)
    }
}

/// The backward step of keen's batch norm: the gradients of the input, `gamma` and `beta`
/// through the batch statistics (and the ReLU's mask).
#[derive(Debug)]
struct KeenBatchNormBackward {
    epsilon: f64,
    relu: bool,
}

/// What the backward step keeps from the forward pass: the dense input, `gamma`, `beta` (Flex
/// tensors share their storage, so these are references, not copies) and the batch statistics.
type SavedBatchNorm = (FlexTensor, FlexTensor, FlexTensor, BatchStats);

impl Backward<Flex, 3> for KeenBatchNormBackward {
    type State = SavedBatchNorm;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let out_grad = dense(grads.consume::<Flex>(&ops.node));
        let (x, gamma, beta, stats) = ops.state;
        let (dims, shape) = shape_of(&x);
        let computed = fused::batch_norm_backward(
            &shape,
            values(&x),
            values(&gamma),
            values(&beta),
            &stats,
            self.epsilon,
            self.relu,
            values(&out_grad),
        )
        .expect("buffer lengths follow from the shapes saved with these tensors");
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(computed.input, &dims));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_vector(computed.gamma));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_vector(computed.beta));
        }
    }
}

impl<C: CheckpointStrategy> KeenBatchNormBackend for Autodiff<Flex, C> {
    fn keen_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let backward = KeenBatchNormBackward { epsilon, relu };
        // The statistics leave untracked: burn's batch norm returns them detached as well.
        let untracked = <FloatTensor<Self>>::new;
        // Saved as they are rather than checkpointed, like the convolution: recomputing the input
        // would mean recomputing the convolution before it.
        match backward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma, beta) = (
                    dense(x.into_primitive()),
                    dense(gamma.into_primitive()),
                    dense(beta.into_primitive()),
                );
                let (output, mean, variance, stats) =
                    forward_dense(&x, &gamma, &beta, epsilon, relu);
                let output = prep.finish((x, gamma, beta, stats), output);
                (output, untracked(mean), untracked(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = Flex::keen_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (prep.finish(output), untracked(mean), untracked(variance))
            }
        }
    }
}
