//! `cnn-wong`: the small MNIST network of Wong & Kolter (2018), which Wong, Rice & Kolter (2020)
//! train with fast FGSM to ~88.8% accuracy under PGD-50 × 10 at ε = 0.3 in ten epochs.
//!
//! Conv2d(C,16,k4,s2,p1) ReLU → Conv2d(16,32,k4,s2,p1) ReLU → Flatten →
//! Linear(32·⌊H/4⌋·⌊W/4⌋, 100) ReLU → Linear(100, classes). On 28×28 inputs: 166k parameters and
//! 0.6M multiply-adds, a seventh of `cnn-small`'s, which makes multi-step adversarial training
//! and PGD-50 × 10 evaluation affordable on a CPU.
//!
//! It is built directly as a [`GraphNet`]: the layers are plain convolutions and linear layers,
//! so compression, export and Grad-CAM work on it with no lowering code.

use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::graph::{GraphBuilder, GraphNet, OpDef};
use crate::{ModelError, ModelSpec};

/// Output side of a k4 s2 p1 convolution: ⌊(n + 2 − 4) / 2⌋ + 1 = ⌊n / 2⌋.
fn halved(side: usize) -> usize {
    side / 2
}

/// Builds the network for `spec`'s input shape and class count, freshly initialised (burn's
/// defaults are PyTorch's: uniform in ±1/√fan_in).
pub fn build(spec: &ModelSpec, device: &Device) -> Result<GraphNet, ModelError> {
    let [channels, height, width] = spec.input_shape();
    if height < 4 || width < 4 {
        return Err(spec.bad_input("cnn-wong needs images of at least 4×4"));
    }
    let conv = |input: usize, output: usize| {
        Conv2dConfig::new([input, output], [4, 4])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device)
    };
    let conv1 = conv(channels, 16);
    let conv2 = conv(16, 32);
    let flat = 32 * halved(halved(height)) * halved(halved(width));
    let fc1 = LinearConfig::new(flat, 100).init(device);
    let head = LinearConfig::new(100, spec.num_classes).init(device);

    let mut g = GraphBuilder::new(spec.input_shape());
    let x = g.conv("conv1", &conv1, g.input());
    let x = g.op("relu1", OpDef::Relu, &[x]);
    let x = g.conv("conv2", &conv2, x);
    let x = g.op("relu2", OpDef::Relu, &[x]);
    let x = g.op("flatten", OpDef::Flatten, &[x]);
    let x = g.linear("fc1", &fc1, x);
    let features = g.op("relu3", OpDef::Relu, &[x]);
    let logits = g.linear("head", &head, features);
    Ok(g.finish(features, logits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{trainable_params, ImageClassifier};

    #[test]
    fn has_the_published_layout_on_mnist() {
        let device = Device::flex();
        let net = build(&ModelSpec::new("cnn-wong", [1, 28, 28], 10), &device).unwrap();
        // 16·1·16+16 + 32·16·16+32 + 1568·100+100 + 100·10+10
        assert_eq!(trainable_params(&net), 272 + 8_224 + 156_900 + 1_010);
        let logits = net.forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(logits.dims(), [3, 10]);
    }

    #[test]
    fn odd_sizes_flatten_to_the_floor_of_a_quarter() {
        let device = Device::flex();
        let net = build(&ModelSpec::new("cnn-wong", [3, 30, 33], 4), &device).unwrap();
        let logits = net.forward(Tensor::zeros([2, 3, 30, 33], &device));
        assert_eq!(logits.dims(), [2, 4]);
        assert!(build(&ModelSpec::new("cnn-wong", [1, 3, 28], 10), &device).is_err());
    }
}
