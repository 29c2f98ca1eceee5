//! Fake quantization of a transformer's layers with weights, without a graph form: the ViT's and
//! DeiT's patch-embedding convolution, every block's `qkv`, `proj`, `fc1` and `fc2`, and the
//! heads. Attention's softmax and matmuls, layer norms, GELU and the residual stream stay in
//! float, as in PyTorch's and ONNX Runtime's INT8 recipes for transformers.
//!
//! The scheme is the graph's ([`crate::graph::quant`]): weights symmetric INT8 per output
//! channel, and the input of each layer affine UINT8 per tensor over a calibrated range, both
//! with the straight-through gradient. Each layer's input is a quantization point, numbered in
//! the model's order (see [`QuantPoints`]); the model holds one [`QuantState`] with the
//! settings and every point's range, which a weight file stores under
//! [`crate::weights::LINEAR_QUANT_KEY`].
//!
//! What the state's settings mean here:
//! - `enabled` off and `observe` on: calibration; every batch's range is folded in, in float.
//! - `enabled` on: weights and inputs fake-quantized; with `observe` on (QAT), training batches
//!   (autodiff tensors) still move the ranges, evaluation batches do not.
//! - `float_nodes`: points kept in float (their input and their weight).

use burn::nn::conv::Conv2d;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::linear;

use crate::graph::quant::{
    fake_quant_activation, fake_quant_conv_weight, fake_quant_linear_weight, QuantState,
};
use crate::{KeenModel, ModelError};

/// Points of a ViT block, from its first: `qkv`'s input, `proj`'s, `fc1`'s, `fc2`'s.
pub const POINTS_PER_BLOCK: usize = 4;

/// The quantization points of one part of a model: the shared state (`None`: always float)
/// and the number of the part's first point.
#[derive(Clone, Copy, Debug)]
pub struct QuantPoints<'a> {
    state: Option<&'a QuantState>,
    first: usize,
}

impl<'a> QuantPoints<'a> {
    /// No quantization: every layer runs in float.
    pub const FLOAT: QuantPoints<'static> = QuantPoints {
        state: None,
        first: 0,
    };

    /// Points numbered from 0 over `state`.
    pub fn new(state: &'a QuantState) -> Self {
        Self {
            state: Some(state),
            first: 0,
        }
    }

    /// The points from `offset` on (a block's own, numbered from 0).
    pub fn skip(self, offset: usize) -> Self {
        Self {
            first: self.first + offset,
            ..self
        }
    }

    /// `layer` applied to `x` through point `k`.
    pub fn linear<const D: usize>(&self, k: usize, layer: &Linear, x: Tensor<D>) -> Tensor<D> {
        match self.input(k, x) {
            (x, false) => layer.forward(x),
            (x, true) => linear(
                x,
                fake_quant_linear_weight(layer.weight.val()),
                layer.bias.as_ref().map(|b| b.val()),
            ),
        }
    }

    /// `conv` applied to `x` through point `k`.
    pub fn conv(&self, k: usize, conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        match self.input(k, x) {
            (x, false) => keen_kernels::conv2d_layer(conv, x),
            (x, true) => {
                // A copy whose weight is computed from the original's: gradients still reach
                // the original parameter.
                let mut quantized = conv.clone();
                quantized.weight = quantized.weight.map(fake_quant_conv_weight);
                keen_kernels::conv2d_layer(&quantized, x)
            }
        }
    }

    /// Observes and fake-quantizes the input of point `k`; says whether the layer's weight is
    /// to be quantized too.
    fn input<const D: usize>(&self, k: usize, x: Tensor<D>) -> (Tensor<D>, bool) {
        let Some(state) = self.state else {
            return (x, false);
        };
        let config = &state.config;
        let point = self.first + k;
        if config.float_nodes.contains(&point) {
            return (x, false);
        }
        if config.observe && (!config.enabled || x.is_autodiff()) {
            state.observe(point, min_max(&x));
        }
        if !config.enabled {
            return (x, false);
        }
        let x = match state.range(point) {
            Some(range) => fake_quant_activation(x, range),
            None => x,
        };
        (x, true)
    }
}

impl KeenModel {
    /// The quantization state of a ViT's or DeiT's layers with weights; `None` for other
    /// models (CNNs quantize through their graph form).
    pub fn linear_quant(&self) -> Option<&QuantState> {
        match self {
            KeenModel::Vit(m) => Some(m.quant_state()),
            KeenModel::Deit(m) => Some(m.quant_state()),
            _ => None,
        }
    }

    /// The same ViT or DeiT with `state`'s fake quantization of its layers with weights.
    pub fn with_linear_quant(self, state: QuantState) -> Result<Self, ModelError> {
        match self {
            KeenModel::Vit(m) => Ok(KeenModel::Vit(m.with_quant(state)?)),
            KeenModel::Deit(m) => Ok(KeenModel::Deit(m.with_quant(state)?)),
            _ => Err(ModelError::BadConfig {
                reason: "only vit and deit models quantize their linear layers outside a graph; \
                         CNNs quantize through their graph form"
                    .into(),
            }),
        }
    }
}

fn min_max<const D: usize>(x: &Tensor<D>) -> [f32; 2] {
    let flat = x.clone().inner().flatten::<1>(0, D - 1);
    [
        flat.clone().min().into_scalar::<f32>(),
        flat.max().into_scalar::<f32>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::quant::{Observer, QuantConfig};
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn state(enabled: bool, observe: bool) -> QuantState {
        let mut state = QuantState::new(0);
        state.config = QuantConfig {
            enabled,
            observe,
            observer: Observer::MinMax,
            float_nodes: Vec::new(),
        };
        state
    }

    #[test]
    fn calibration_observes_in_float_and_quantization_rounds_weights_and_inputs() {
        let device = Device::flex();
        let layer = LinearConfig::new(8, 4).init(&device);
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let float = layer.forward(x.clone());

        let calibrating = state(false, true);
        let out = QuantPoints::new(&calibrating)
            .skip(3)
            .linear(1, &layer, x.clone());
        out.into_data().assert_approx_eq::<f32>(
            &float.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        let range = calibrating.range(4).expect("point 3 + 1 observed");
        let values = x.clone().into_data().try_to_vec::<f32>().expect("f32");
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(range, [lo, hi]);

        let mut quantized = calibrating.detached();
        quantized.config.enabled = true;
        quantized.config.observe = false;
        let out = QuantPoints::new(&quantized)
            .skip(3)
            .linear(1, &layer, x.clone());
        let diff = (out - float.clone()).abs().max().into_scalar::<f32>();
        // Close to float but not equal: both operands were rounded.
        assert!(diff > 0.0 && diff < 0.1, "{diff}");
        // A point kept in float computes in float.
        quantized.config.float_nodes = vec![4];
        let out = QuantPoints::new(&quantized).skip(3).linear(1, &layer, x);
        out.into_data()
            .assert_approx_eq::<f32>(&float.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn straight_through_gradients_reach_the_weight_and_the_input() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let layer = LinearConfig::new(6, 3).init(&device);
        let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let qat = state(true, true);
        // Wide enough that no input is clipped (clipped inputs get no gradient).
        qat.set_ranges(vec![Some([-8.0, 8.0])]);
        let out = QuantPoints::new(&qat).linear(0, &layer, x.clone());
        let grads = out.sum().backward();
        let weight_grad = layer.weight.grad(&grads).expect("weight gradient");
        let input_grad = x.grad(&grads).expect("input gradient");
        // Through the straight-through estimator each operand's gradient is the float
        // matmul's at the other (rounded) operand: d(sum)/dW is the rounded input's column
        // sums over the batch, d(sum)/dx the rounded weight's row sums.
        let x_rounded = fake_quant_activation(x.clone().inner(), [-8.0, 8.0]);
        let expected = x_rounded.sum_dim(0).reshape([6, 1]).expand([6, 3]);
        weight_grad.into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        let w_rounded = fake_quant_linear_weight(layer.weight.val().inner());
        let expected = w_rounded.sum_dim(1).reshape([1, 6]).expand([4, 6]);
        input_grad.into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        // Training batches move ranges, evaluation batches (no autodiff) do not.
        qat.set_ranges(vec![Some([-0.5, 0.5])]);
        let _ = QuantPoints::new(&qat).linear(0, &layer.valid(), x.clone().inner());
        assert_eq!(qat.range(0), Some([-0.5, 0.5]));
        let _ = QuantPoints::new(&qat).linear(0, &layer, x);
        let [lo, hi] = qat.range(0).expect("range");
        assert!(lo < -0.5 && hi > 0.5, "{lo} {hi}");
    }
}
