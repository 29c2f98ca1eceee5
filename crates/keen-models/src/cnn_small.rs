//! `cnn-small`: keen's reference CNN, the one compared against other frameworks.
//!
//! Conv2d(C,32,k3,p1) ReLU MaxPool2 → Conv2d(32,64,k3,p1) ReLU MaxPool2 → Flatten →
//! Linear(64·H/4·W/4, 128) ReLU → Linear(128, classes). On 28×28 inputs the flatten is 3136 wide.
//!
//! `cnn-madry` is the same layout with 5×5 kernels and a 1,024-wide hidden layer: the MNIST
//! network of Madry et al. (2018), whose adversarial-training results robustness papers quote.
//! Adversarial robustness needs capacity that clean accuracy does not, hence a second size.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use keen_kernels::{conv2d_layer, max_pool2d_layer};

use crate::feature_map::SpatialFeatures;
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

/// The sizes that differ between `cnn-small` and `cnn-madry`.
#[derive(Debug, Clone, Copy)]
pub struct CnnShape {
    /// Side of both convolutions' square kernels (odd: padding keeps the size).
    pub kernel: usize,
    /// Width of the hidden fully-connected layer.
    pub hidden: usize,
}

impl CnnShape {
    /// `cnn-small`, the reference.
    pub const SMALL: CnnShape = CnnShape {
        kernel: 3,
        hidden: 128,
    };
    /// `cnn-madry`: Madry et al.'s MNIST network.
    pub const MADRY: CnnShape = CnnShape {
        kernel: 5,
        hidden: 1024,
    };
}

impl CnnSmall {
    /// Builds the reference network for `spec`'s input shape and class count.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        Self::with_shape(spec, CnnShape::SMALL, device)
    }

    /// Builds the network with `shape`'s kernel and hidden width.
    pub fn with_shape(
        spec: &ModelSpec,
        shape: CnnShape,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        if height < 4 || width < 4 {
            return Err(spec.bad_input("this CNN needs images of at least 4×4"));
        }
        let flat = 64 * (height / 4) * (width / 4);
        let (k, pad) = (shape.kernel, shape.kernel / 2);
        Ok(Self {
            conv1: Conv2dConfig::new([channels, 32], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device),
            conv2: Conv2dConfig::new([32, 64], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(flat, shape.hidden).init(device),
            head: LinearConfig::new(shape.hidden, spec.num_classes).init(device),
        })
    }

    /// Width of the hidden layer, read from the weights (so loading needs no extra field).
    fn hidden(&self) -> usize {
        self.fc1.weight.dims()[1]
    }

    /// Side of the convolution kernels, read from the weights.
    fn kernel(&self) -> usize {
        self.conv1.weight.dims()[2]
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

impl SpatialFeatures for CnnSmall {
    /// The second convolution's pooled output, the last map before the fully-connected layers.
    fn forward_feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let x = max_pool2d_layer(&self.pool, relu(conv2d_layer(&self.conv1, images)));
        max_pool2d_layer(&self.pool, relu(conv2d_layer(&self.conv2, x)))
    }

    fn features_of_map(&self, map: Tensor<4>) -> Tensor<2> {
        relu(self.fc1.forward(map.flatten::<2>(1, 3)))
    }

    fn feature_map_name(&self) -> String {
        "pool2".into()
    }
}

impl ImageClassifier for CnnSmall {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        self.features_of_map(self.forward_feature_map(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        self.hidden()
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(self.hidden(), num_classes).init(device);
        self
    }

    fn macs(&self, [channels, height, width]: [usize; 3]) -> u64 {
        let (h2, w2) = (height / 2, width / 2);
        let (h4, w4) = (height / 4, width / 4);
        let (k, hidden) = (self.kernel(), self.hidden());
        conv2d_macs(channels, 32, [k, k], 1, [height, width])
            + conv2d_macs(32, 64, [k, k], 1, [h2, w2])
            + linear_macs(64 * h4 * w4, hidden, 1)
            + linear_macs(hidden, self.num_classes(), 1)
    }
}
