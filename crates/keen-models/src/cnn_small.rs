//! `cnn-small`: keen's reference CNN, the one compared against other frameworks.
//!
//! Conv2d(C,32,k3,p1) ReLU MaxPool2 → Conv2d(32,64,k3,p1) ReLU MaxPool2 → Flatten →
//! Linear(64·H/4·W/4, 128) ReLU → Linear(128, classes). On 28×28 inputs the flatten is 3136 wide.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::flops::{conv2d_macs, linear_macs};
use crate::graph::{GraphBuilder, GraphNet, OpDef};
use crate::{ImageClassifier, ModelError, ModelSpec};

/// The reference CNN.
#[derive(Module, Debug)]
pub struct CnnSmall {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    head: Linear,
}

/// Width of the hidden fully-connected layer.
const HIDDEN: usize = 128;

impl CnnSmall {
    /// Builds the network for `spec`'s input shape and class count.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        if height < 4 || width < 4 {
            return Err(spec.bad_input("cnn-small needs images of at least 4×4"));
        }
        let flat = 64 * (height / 4) * (width / 4);
        Ok(Self {
            conv1: Conv2dConfig::new([channels, 32], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv2: Conv2dConfig::new([32, 64], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(flat, HIDDEN).init(device),
            head: LinearConfig::new(HIDDEN, spec.num_classes).init(device),
        })
    }
}

impl CnnSmall {
    /// The same network as a graph, for compression and export.
    pub fn to_graph(&self, input: [usize; 3]) -> GraphNet {
        let mut g = GraphBuilder::new(input);
        let pool = OpDef::MaxPool2d {
            kernel: 2,
            stride: 2,
        };
        let x = g.conv("conv1", &self.conv1, g.input());
        let x = g.op("relu1", OpDef::Relu, &[x]);
        let x = g.op("pool1", pool.clone(), &[x]);
        let x = g.conv("conv2", &self.conv2, x);
        let x = g.op("relu2", OpDef::Relu, &[x]);
        let x = g.op("pool2", pool, &[x]);
        let x = g.op("flatten", OpDef::Flatten, &[x]);
        let x = g.linear("fc1", &self.fc1, x);
        let features = g.op("relu3", OpDef::Relu, &[x]);
        let logits = g.linear("head", &self.head, features);
        g.finish(features, logits)
    }
}

impl ImageClassifier for CnnSmall {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(images)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        relu(self.fc1.forward(x.flatten::<2>(1, 3)))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        HIDDEN
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(HIDDEN, num_classes).init(device);
        self
    }

    fn macs(&self, [channels, height, width]: [usize; 3]) -> u64 {
        let (h2, w2) = (height / 2, width / 2);
        let (h4, w4) = (height / 4, width / 4);
        conv2d_macs(channels, 32, [3, 3], 1, [height, width])
            + conv2d_macs(32, 64, [3, 3], 1, [h2, w2])
            + linear_macs(64 * h4 * w4, HIDDEN, 1)
            + linear_macs(HIDDEN, self.num_classes(), 1)
    }
}
