//! CIFAR-style ResNets (He et al. 2016, §4.2): `resnet8` and `resnet20`.
//!
//! A 3×3 stem of 16 channels, then three stages of `n` basic blocks with 16, 32 and 64 channels
//! (stride 2 at the start of stages 2 and 3), global average pooling and a linear head; depth is
//! 6n + 2. Shortcuts that change shape use a 1×1 convolution with batch norm (option B), which
//! is what torchvision-style ports and most Fashion-MNIST baselines use.
//!
//! [`ResNet::with_gate`] puts a squeeze-and-excitation or global context gate
//! ([`crate::channel_gate`]) on every block's residual branch (`resnet20-se`, `resnet20-gc`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use keen_kernels::{batch_norm, batch_norm_relu, conv2d_layer};

use crate::channel_gate::{ChannelGate, GateKind};
use crate::feature_map::{global_avg_pool, SpatialFeatures};
use crate::flops::{conv2d_macs, conv_out, linear_macs};
use crate::graph::{GraphBuilder, GraphNet, OpDef, ValueId};
use crate::{ImageClassifier, ModelError, ModelSpec};

/// Channel widths of the three stages of the standard CIFAR ResNets.
pub const STAGE_WIDTHS: [usize; 3] = [16, 32, 64];
/// Half the standard widths: `resnet8-slim`, a student a tenth the size of `resnet20`.
pub const SLIM_WIDTHS: [usize; 3] = [8, 16, 32];

pub(crate) fn conv3x3(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// A 1×1 convolution and batch norm that match a shortcut to its block's output shape.
#[derive(Module, Debug)]
pub struct Projection {
    conv: Conv2d,
    bn: BatchNorm,
}

/// Two 3×3 convolutions with batch norm and a residual connection.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Projection>,
    gate: Option<ChannelGate>,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
}

impl Projection {
    /// The projection shortcut of a block from `in_channels` to `out_channels` at `stride`, or
    /// none where the identity fits.
    pub(crate) fn for_block(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        device: &Device,
    ) -> Option<Self> {
        (stride != 1 || in_channels != out_channels).then(|| Projection {
            conv: Conv2dConfig::new([in_channels, out_channels], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_channels).init(device),
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.bn, conv2d_layer(&self.conv, x))
    }
}

impl BasicBlock {
    pub(crate) fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        gate: Option<GateKind>,
        device: &Device,
    ) -> Self {
        let shortcut = Projection::for_block(in_channels, out_channels, stride, device);
        Self {
            conv1: conv3x3(in_channels, out_channels, stride, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv3x3(out_channels, out_channels, 1, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
            shortcut,
            gate: gate.map(|kind| ChannelGate::new(kind, out_channels, device)),
            in_channels,
            out_channels,
            stride,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(projection) => projection.forward(x.clone()),
            None => x.clone(),
        };
        let out = batch_norm_relu(&self.bn1, conv2d_layer(&self.conv1, x));
        let mut out = batch_norm(&self.bn2, conv2d_layer(&self.conv2, out));
        if let Some(gate) = &self.gate {
            out = gate.forward(out);
        }
        relu(out + identity)
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, x: ValueId) -> ValueId {
        let identity = match &self.shortcut {
            Some(p) => {
                let s = g.conv(&format!("{name}.shortcut.conv"), &p.conv, x);
                g.batch_norm(&format!("{name}.shortcut.bn"), &p.bn, s)
            }
            None => x,
        };
        let out = g.conv(&format!("{name}.conv1"), &self.conv1, x);
        let out = g.batch_norm(&format!("{name}.bn1"), &self.bn1, out);
        let out = g.op(&format!("{name}.relu1"), OpDef::Relu, &[out]);
        let out = g.conv(&format!("{name}.conv2"), &self.conv2, out);
        let out = g.batch_norm(&format!("{name}.bn2"), &self.bn2, out);
        let sum = g.op(&format!("{name}.add"), OpDef::Add, &[out, identity]);
        g.op(&format!("{name}.relu2"), OpDef::Relu, &[sum])
    }

    /// MACs for an input of `hw`, and the output size.
    pub(crate) fn macs(&self, hw: [usize; 2]) -> (u64, [usize; 2]) {
        let out = [
            conv_out(hw[0], 3, self.stride, 1),
            conv_out(hw[1], 3, self.stride, 1),
        ];
        let mut macs = conv2d_macs(self.in_channels, self.out_channels, [3, 3], 1, out)
            + conv2d_macs(self.out_channels, self.out_channels, [3, 3], 1, out);
        if self.shortcut.is_some() {
            macs += conv2d_macs(self.in_channels, self.out_channels, [1, 1], 1, out);
        }
        if let Some(gate) = &self.gate {
            macs += gate.macs(out[0] * out[1]);
        }
        (macs, out)
    }
}

/// A CIFAR-style ResNet of depth 6n + 2.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    head: Linear,
    in_channels: usize,
    widths: [usize; 3],
}

impl ResNet {
    /// Builds a ResNet with `blocks_per_stage` basic blocks in each of the three stages.
    pub fn new(
        spec: &ModelSpec,
        blocks_per_stage: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::with_widths(spec, blocks_per_stage, STAGE_WIDTHS, device)
    }

    /// A ResNet whose three stages have `widths` channels.
    pub fn with_widths(
        spec: &ModelSpec,
        blocks_per_stage: usize,
        widths: [usize; 3],
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::with_gate(spec, blocks_per_stage, widths, None, device)
    }

    /// A ResNet whose blocks each carry a `gate` (squeeze-and-excitation or global context).
    pub fn with_gate(
        spec: &ModelSpec,
        blocks_per_stage: usize,
        widths: [usize; 3],
        gate: Option<GateKind>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        if height < 4 || width < 4 {
            return Err(spec.bad_input("a ResNet needs images of at least 4×4"));
        }
        let mut blocks = Vec::with_capacity(3 * blocks_per_stage);
        let mut in_channels = widths[0];
        for (stage, &width) in widths.iter().enumerate() {
            for block in 0..blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(in_channels, width, stride, gate, device));
                in_channels = width;
            }
        }
        Ok(Self {
            stem: conv3x3(channels, widths[0], 1, device),
            stem_bn: BatchNormConfig::new(widths[0]).init(device),
            blocks,
            head: LinearConfig::new(widths[2], spec.num_classes).init(device),
            in_channels: channels,
            widths,
        })
    }
}

impl ResNet {
    /// Whether [`ResNet::to_graph`] can lower this network: not with gates, which need a
    /// sigmoid and a broadcast multiply the graph does not have.
    pub fn check_lowerable(&self) -> Result<(), ModelError> {
        if self.blocks.iter().any(|b| b.gate.is_some()) {
            return Err(ModelError::BadGraph {
                reason: "ResNets with squeeze-and-excitation or global context gates cannot be \
                         lowered to a graph yet (gates are not graph ops)"
                    .into(),
            });
        }
        Ok(())
    }

    /// The same network as a graph, for compression and export (gates are not lowered: check
    /// [`ResNet::check_lowerable`] first).
    pub fn to_graph(&self, input: [usize; 3]) -> GraphNet {
        let mut g = GraphBuilder::new(input);
        let x = g.conv("stem", &self.stem, g.input());
        let x = g.batch_norm("stem_bn", &self.stem_bn, x);
        let mut x = g.op("stem_relu", OpDef::Relu, &[x]);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.lower(&mut g, &format!("blocks.{i}"), x);
        }
        let features = g.op("pool", OpDef::GlobalAvgPool, &[x]);
        let logits = g.linear("head", &self.head, features);
        g.finish(features, logits)
    }
}

impl SpatialFeatures for ResNet {
    fn forward_feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = batch_norm_relu(&self.stem_bn, conv2d_layer(&self.stem, images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        x
    }

    fn features_of_map(&self, map: Tensor<4>) -> Tensor<2> {
        global_avg_pool(map)
    }

    fn feature_map_name(&self) -> String {
        format!("blocks.{}.relu2", self.blocks.len().saturating_sub(1))
    }
}

impl ImageClassifier for ResNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        self.features_of_map(self.forward_feature_map(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        self.widths[2]
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(self.widths[2], num_classes).init(device);
        self
    }

    fn macs(&self, [_, height, width]: [usize; 3]) -> u64 {
        let mut hw = [height, width];
        let mut macs = conv2d_macs(self.in_channels, self.widths[0], [3, 3], 1, hw);
        for block in &self.blocks {
            let (block_macs, out) = block.macs(hw);
            macs += block_macs;
            hw = out;
        }
        macs + linear_macs(self.widths[2], self.num_classes(), 1)
    }
}
