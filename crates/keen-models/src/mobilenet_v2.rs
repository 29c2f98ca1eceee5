//! `mobilenet-v2-tiny`: a depthwise-separable student after MobileNetV2 (Sandler et al. 2018),
//! sized for 28×28 and 32×32 images.
//!
//! A 3×3 stem, inverted residual blocks (1×1 expansion, 3×3 depthwise, linear 1×1 projection,
//! ReLU6, residual when the shape is kept), a 1×1 convolution to the feature width, global average
//! pooling and a linear head. Strides are chosen so a 28×28 image ends at 7×7.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use keen_kernels::{batch_norm, conv2d_layer};

use crate::feature_map::{global_avg_pool, SpatialFeatures};
use crate::flops::{conv2d_macs, conv_out, linear_macs};
use crate::graph::{GraphBuilder, GraphNet, OpDef, ValueId};
use crate::{ImageClassifier, ModelError, ModelSpec};

/// (expansion t, output channels c, repeats n, first stride s), as in the paper's table 2.
const SETTINGS: [(usize, usize, usize, usize); 4] =
    [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1)];
/// Channels of the stem convolution.
const STEM: usize = 16;
/// Width of the final 1×1 convolution, i.e. of the pooled features.
const FEATURES: usize = 256;

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// A convolution followed by batch norm.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_groups(groups)
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(channels[1]).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.bn, conv2d_layer(&self.conv, x))
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, x: ValueId) -> ValueId {
        let x = g.conv(&format!("{name}.conv"), &self.conv, x);
        g.batch_norm(&format!("{name}.bn"), &self.bn, x)
    }
}

/// Expansion, depthwise convolution and linear projection, with a residual when shapes match.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    in_channels: usize,
    hidden: usize,
    out_channels: usize,
    stride: usize,
}

impl InvertedResidual {
    fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        expansion: usize,
        device: &Device,
    ) -> Self {
        let hidden = in_channels * expansion;
        Self {
            expand: (expansion != 1).then(|| ConvBn::new([in_channels, hidden], 1, 1, 1, device)),
            depthwise: ConvBn::new([hidden, hidden], 3, stride, hidden, device),
            project: ConvBn::new([hidden, out_channels], 1, 1, 1, device),
            in_channels,
            hidden,
            out_channels,
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = x.clone();
        if let Some(expand) = &self.expand {
            out = relu6(expand.forward(out));
        }
        let out = self.project.forward(relu6(self.depthwise.forward(out)));
        if self.stride == 1 && self.in_channels == self.out_channels {
            out + x
        } else {
            out
        }
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, x: ValueId) -> ValueId {
        let mut out = x;
        if let Some(expand) = &self.expand {
            out = expand.lower(g, &format!("{name}.expand"), out);
            out = g.op(&format!("{name}.expand_relu"), OpDef::Relu6, &[out]);
        }
        out = self.depthwise.lower(g, &format!("{name}.depthwise"), out);
        out = g.op(&format!("{name}.depthwise_relu"), OpDef::Relu6, &[out]);
        out = self.project.lower(g, &format!("{name}.project"), out);
        if self.stride == 1 && self.in_channels == self.out_channels {
            out = g.op(&format!("{name}.add"), OpDef::Add, &[out, x]);
        }
        out
    }

    fn macs(&self, hw: [usize; 2]) -> (u64, [usize; 2]) {
        let out = [
            conv_out(hw[0], 3, self.stride, 1),
            conv_out(hw[1], 3, self.stride, 1),
        ];
        let mut macs = 0;
        if self.expand.is_some() {
            macs += conv2d_macs(self.in_channels, self.hidden, [1, 1], 1, hw);
        }
        macs += conv2d_macs(self.hidden, self.hidden, [3, 3], self.hidden, out);
        macs += conv2d_macs(self.hidden, self.out_channels, [1, 1], 1, out);
        (macs, out)
    }
}

/// The depthwise-separable student network.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    last: ConvBn,
    head: Linear,
    in_channels: usize,
}

impl MobileNetV2 {
    /// Builds the tiny MobileNetV2 for `spec`.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        if height < 4 || width < 4 {
            return Err(spec.bad_input("mobilenet-v2-tiny needs images of at least 4×4"));
        }
        let mut blocks = Vec::new();
        let mut in_channels = STEM;
        for (expansion, out_channels, repeats, first_stride) in SETTINGS {
            for repeat in 0..repeats {
                let stride = if repeat == 0 { first_stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    in_channels,
                    out_channels,
                    stride,
                    expansion,
                    device,
                ));
                in_channels = out_channels;
            }
        }
        Ok(Self {
            stem: ConvBn::new([channels, STEM], 3, 1, 1, device),
            blocks,
            last: ConvBn::new([in_channels, FEATURES], 1, 1, 1, device),
            head: LinearConfig::new(FEATURES, spec.num_classes).init(device),
            in_channels: channels,
        })
    }
}

impl MobileNetV2 {
    /// The same network as a graph, for compression and export.
    pub fn to_graph(&self, input: [usize; 3]) -> GraphNet {
        let mut g = GraphBuilder::new(input);
        let input = g.input();
        let x = self.stem.lower(&mut g, "stem", input);
        let mut x = g.op("stem_relu", OpDef::Relu6, &[x]);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.lower(&mut g, &format!("blocks.{i}"), x);
        }
        let x = self.last.lower(&mut g, "last", x);
        let x = g.op("last_relu", OpDef::Relu6, &[x]);
        let features = g.op("pool", OpDef::GlobalAvgPool, &[x]);
        let logits = g.linear("head", &self.head, features);
        g.finish(features, logits)
    }
}

impl SpatialFeatures for MobileNetV2 {
    fn forward_feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = relu6(self.stem.forward(images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        relu6(self.last.forward(x))
    }

    fn features_of_map(&self, map: Tensor<4>) -> Tensor<2> {
        global_avg_pool(map)
    }

    fn feature_map_name(&self) -> String {
        "last_relu".into()
    }
}

impl ImageClassifier for MobileNetV2 {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        self.features_of_map(self.forward_feature_map(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        FEATURES
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(FEATURES, num_classes).init(device);
        self
    }

    fn macs(&self, [_, height, width]: [usize; 3]) -> u64 {
        let mut hw = [height, width];
        let mut macs = conv2d_macs(self.in_channels, STEM, [3, 3], 1, hw);
        let mut last_in = STEM;
        for block in &self.blocks {
            let (block_macs, out) = block.macs(hw);
            macs += block_macs;
            hw = out;
            last_in = block.out_channels;
        }
        macs + conv2d_macs(last_in, FEATURES, [1, 1], 1, hw)
            + linear_macs(FEATURES, self.num_classes(), 1)
    }
}
