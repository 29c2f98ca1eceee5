//! `resnet20-bot`: a BoTNet hybrid (Srinivas et al. 2021, "Bottleneck Transformers").
//!
//! resnet20's first two stages are kept; in the last stage every 3×3 convolution is replaced by
//! multi-head self-attention over the feature map's positions with 2-D relative position
//! logits: for a query at (y, x) and a key at (y', x'), `qᵀk/√d + qᵀr_h[y'−y] + qᵀr_w[x'−x]`, with
//! one learned embedding per height offset and one per width offset, shared by all positions.
//! Attention at 7×7 (28×28 images) or 8×8 (32×32) positions costs little.
//!
//! One deviation from the paper: BoTNet's strided first block attends at the higher resolution
//! and average-pools 2×2 after; here the pooling comes first, so every attention layer of the
//! stage runs at the final resolution (4× fewer tokens, 16× smaller attention matrices on a CPU)
//! and one relative-position table size serves the stage.

use burn::module::{Initializer, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::TensorData;
use keen_kernels::{batch_norm, batch_norm_relu, conv2d_layer};

use crate::feature_map::{global_avg_pool, SpatialFeatures};
use crate::flops::{conv2d_macs, linear_macs};
use crate::resnet::{conv3x3, BasicBlock, Projection, STAGE_WIDTHS};
use crate::{ImageClassifier, ModelError, ModelSpec};

/// Heads of every attention layer (64 channels: 4 heads of 16).
const HEADS: usize = 4;

/// Learned relative position embeddings along height and width (the paper's `r_h`, `r_w`).
#[derive(Module, Debug)]
pub struct RelativePosition2d {
    rel_height: Param<Tensor<2>>,
    rel_width: Param<Tensor<2>>,
    height: usize,
    width: usize,
}

impl RelativePosition2d {
    /// Embeddings of width `head_dim` for a `height × width` map: `2h − 1` height offsets and
    /// `2w − 1` width offsets.
    pub fn new(height: usize, width: usize, head_dim: usize, device: &Device) -> Self {
        // timm's PosEmbedRel scale: the logits start on the scale of qᵀk/√d.
        let init = Initializer::Normal {
            mean: 0.0,
            std: (head_dim as f64).powf(-0.5),
        };
        Self {
            rel_height: init.init([2 * height - 1, head_dim], device),
            rel_width: init.init([2 * width - 1, head_dim], device),
            height,
            width,
        }
    }

    /// Relative logits `[batch, heads, hw, hw]` for queries `[batch, heads, hw, head_dim]`:
    /// entry (i, j) is `q_i · r_h[y_j − y_i] + q_i · r_w[x_j − x_i]`.
    ///
    /// Each query is dotted with every offset's embedding once (`[.., hw, 2h − 1]`), then the
    /// offset of each key is gathered: the "relative logits" trick of the paper's code, rather
    /// than materialising an embedding per (query, key) pair.
    pub fn logits(&self, q: Tensor<4>) -> Tensor<4> {
        let [batch, heads, positions, head_dim] = q.dims();
        let device = q.device();
        let flat = q.reshape([batch * heads * positions, head_dim]);
        let along = |table: Tensor<2>, offset_of: &dyn Fn(usize) -> usize, span: usize| {
            let offsets = table.dims()[0];
            let per_offset = flat
                .clone()
                .matmul(table.transpose())
                .reshape([batch, heads, positions, offsets]);
            let index: Vec<i64> = (0..positions)
                .flat_map(|i| (0..positions).map(move |j| (i, j)))
                .map(|(i, j)| (offset_of(j) + span - 1 - offset_of(i)) as i64)
                .collect();
            let index = Tensor::<4, Int>::from_data(
                TensorData::new(index, [1, 1, positions, positions]),
                &device,
            )
            .expand([batch, heads, positions, positions]);
            per_offset.gather(3, index)
        };
        let width = self.width;
        let row = move |p: usize| p / width;
        let col = move |p: usize| p % width;
        along(self.rel_height.val(), &row, self.height)
            + along(self.rel_width.val(), &col, self.width)
    }

    /// MACs for `heads · head_dim = channels` (one dot product per query and offset).
    fn macs(&self, channels: usize) -> u64 {
        let positions = self.height * self.width;
        (positions * (2 * self.height - 1 + 2 * self.width - 1) * channels) as u64
    }
}

/// Multi-head self-attention over a feature map's positions with relative position logits: the
/// BoTNet replacement of a 3×3 convolution. Projections have no bias (a batch norm follows).
#[derive(Module, Debug)]
pub struct RelPosSelfAttention {
    qkv: Linear,
    relative: RelativePosition2d,
    heads: usize,
    out_channels: usize,
}

impl RelPosSelfAttention {
    /// Attention from `in_channels` to `out_channels` over a `hw` map.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        heads: usize,
        hw: [usize; 2],
        device: &Device,
    ) -> Self {
        Self {
            qkv: LinearConfig::new(in_channels, 3 * out_channels)
                .with_bias(false)
                .init(device),
            relative: RelativePosition2d::new(hw[0], hw[1], out_channels / heads, device),
            heads,
            out_channels,
        }
    }

    /// `[batch, in, h, w]` to `[batch, out, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let n = height * width;
        let (out, heads) = (self.out_channels, self.heads);
        let tokens = x.reshape([batch, channels, n]).swap_dims(1, 2);
        let qkv = self.qkv.forward(tokens);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * out, out)
                .reshape([batch, n, heads, out / heads])
                .swap_dims(1, 2)
        };
        let q = split(0);
        let bias = self.relative.logits(q.clone());
        let context = attention(
            q,
            split(1),
            split(2),
            None,
            Some(bias),
            AttentionModuleOptions::default(),
        );
        context
            .swap_dims(1, 2)
            .reshape([batch, n, out])
            .swap_dims(1, 2)
            .reshape([batch, out, height, width])
    }

    /// MACs at the layer's resolution.
    pub fn macs(&self) -> u64 {
        let [inputs, _] = self.qkv.weight.dims();
        let n = self.relative.height * self.relative.width;
        let out = self.out_channels;
        linear_macs(inputs, 3 * out, n) + 2 * (n * n * out) as u64 + self.relative.macs(out)
    }
}

/// A basic block whose two 3×3 convolutions are attention layers.
#[derive(Module, Debug)]
pub struct BotBlock {
    attn1: RelPosSelfAttention,
    bn1: BatchNorm,
    attn2: RelPosSelfAttention,
    bn2: BatchNorm,
    shortcut: Option<Projection>,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
}

impl BotBlock {
    fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        out_hw: [usize; 2],
        device: &Device,
    ) -> Self {
        Self {
            attn1: RelPosSelfAttention::new(in_channels, out_channels, HEADS, out_hw, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            attn2: RelPosSelfAttention::new(out_channels, out_channels, HEADS, out_hw, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
            shortcut: Projection::for_block(in_channels, out_channels, stride, device),
            in_channels,
            out_channels,
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(projection) => projection.forward(x.clone()),
            None => x.clone(),
        };
        let x = if self.stride > 1 {
            // s×s average pooling (the sides are multiples of s, checked at construction).
            let s = self.stride;
            let [b, c, h, w] = x.dims();
            x.reshape([b, c, h / s, s, w / s, s])
                .mean_dim(5)
                .mean_dim(3)
                .reshape([b, c, h / s, w / s])
        } else {
            x
        };
        let out = batch_norm_relu(&self.bn1, self.attn1.forward(x));
        let out = batch_norm(&self.bn2, self.attn2.forward(out));
        relu(out + identity)
    }

    fn macs(&self) -> u64 {
        let mut macs = self.attn1.macs() + self.attn2.macs();
        if self.shortcut.is_some() {
            let hw = [self.attn1.relative.height, self.attn1.relative.width];
            macs += conv2d_macs(self.in_channels, self.out_channels, [1, 1], 1, hw);
        }
        macs
    }
}

/// resnet20 with attention in its last stage.
#[derive(Module, Debug)]
pub struct BotNet {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    bot_blocks: Vec<BotBlock>,
    head: Linear,
    in_channels: usize,
}

impl BotNet {
    /// A BoTNet hybrid with `blocks_per_stage` blocks per stage for `spec`'s images.
    pub fn new(
        spec: &ModelSpec,
        blocks_per_stage: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        // Stage 2 halves the map with a stride-2 convolution (rounding up); the attention stage
        // halves it again with a 2×2 pool, which needs even sides.
        let stage2 = [height.div_ceil(2), width.div_ceil(2)];
        if height < 4 || width < 4 || stage2[0] % 2 != 0 || stage2[1] % 2 != 0 {
            return Err(spec.bad_input(
                "the attention stage needs the half-size map to have even sides (e.g. 28×28, 32×32)",
            ));
        }
        let stage3 = [stage2[0] / 2, stage2[1] / 2];
        let w = STAGE_WIDTHS;
        let mut blocks = Vec::new();
        let mut in_channels = w[0];
        for (stage, &width) in w[..2].iter().enumerate() {
            for block in 0..blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(in_channels, width, stride, None, device));
                in_channels = width;
            }
        }
        let bot_blocks = (0..blocks_per_stage)
            .map(|block| {
                let stride = if block == 0 { 2 } else { 1 };
                let b = BotBlock::new(in_channels, w[2], stride, stage3, device);
                in_channels = w[2];
                b
            })
            .collect();
        Ok(Self {
            stem: conv3x3(channels, w[0], 1, device),
            stem_bn: BatchNormConfig::new(w[0]).init(device),
            blocks,
            bot_blocks,
            head: LinearConfig::new(w[2], spec.num_classes).init(device),
            in_channels: channels,
        })
    }
}

impl SpatialFeatures for BotNet {
    /// The attention stage's output: attention layers keep the map's layout, so it is the
    /// last spatial map as in a ResNet.
    fn forward_feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = batch_norm_relu(&self.stem_bn, conv2d_layer(&self.stem, images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        for block in &self.bot_blocks {
            x = block.forward(x);
        }
        x
    }

    fn features_of_map(&self, map: Tensor<4>) -> Tensor<2> {
        global_avg_pool(map)
    }

    fn feature_map_name(&self) -> String {
        format!(
            "bot_blocks.{}.relu2",
            self.bot_blocks.len().saturating_sub(1)
        )
    }
}

impl ImageClassifier for BotNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        self.features_of_map(self.forward_feature_map(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        STAGE_WIDTHS[2]
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(STAGE_WIDTHS[2], num_classes).init(device);
        self
    }

    fn macs(&self, [_, height, width]: [usize; 3]) -> u64 {
        let mut hw = [height, width];
        let mut macs = conv2d_macs(self.in_channels, STAGE_WIDTHS[0], [3, 3], 1, hw);
        for block in &self.blocks {
            let (block_macs, out) = block.macs(hw);
            macs += block_macs;
            hw = out;
        }
        macs += self.bot_blocks.iter().map(BotBlock::macs).sum::<u64>();
        macs + linear_macs(STAGE_WIDTHS[2], self.num_classes(), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn relative_logits_have_one_entry_per_query_and_key() {
        let device = Device::flex();
        let rel = RelativePosition2d::new(3, 4, 8, &device);
        let q = Tensor::<4>::random([2, 4, 12, 8], Distribution::Default, &device);
        assert_eq!(rel.logits(q).dims(), [2, 4, 12, 12]);
        assert_eq!(rel.rel_height.dims(), [5, 8]);
        assert_eq!(rel.rel_width.dims(), [7, 8]);
    }

    #[test]
    fn relative_logits_depend_only_on_the_offset() {
        let device = Device::flex();
        let (h, w, d) = (3, 4, 8);
        let rel = RelativePosition2d::new(h, w, d, &device);
        // The same query at every position: a logit may then depend on the key's offset from
        // the query only, never on where the pair sits.
        let q = Tensor::<4>::random([1, 1, 1, d], Distribution::Default, &device).expand([
            1,
            1,
            h * w,
            d,
        ]);
        let logits = values(rel.logits(q));
        let at = |i: usize, j: usize| logits[i * h * w + j];
        let mut by_offset = std::collections::HashMap::new();
        for i in 0..h * w {
            for j in 0..h * w {
                let offset = (
                    (j / w) as i64 - (i / w) as i64,
                    (j % w) as i64 - (i % w) as i64,
                );
                let first = *by_offset.entry(offset).or_insert(at(i, j));
                assert!((first - at(i, j)).abs() < 1e-5, "offset {offset:?}");
            }
        }
        // Every offset in [-(h-1), h-1] × [-(w-1), w-1] occurs.
        assert_eq!(by_offset.len(), (2 * h - 1) * (2 * w - 1));
        // And the value is the hand-computed q·r_h[dy] + q·r_w[dx].
        let q = values(rel.logits(Tensor::<4>::ones([1, 1, h * w, d], &device)));
        let sum_row =
            |t: &Param<Tensor<2>>, r: usize| t.val().narrow(0, r, 1).sum().into_scalar::<f32>();
        // Query (0, 0), key (2, 3): offsets +2, +3 -> rows h-1+2 and w-1+3.
        let expected = sum_row(&rel.rel_height, h - 1 + 2) + sum_row(&rel.rel_width, w - 1 + 3);
        assert!((q[2 * w + 3] - expected).abs() < 1e-5);
    }

    #[test]
    fn attention_layer_keeps_the_map_size() {
        let device = Device::flex();
        let attn = RelPosSelfAttention::new(32, 64, 4, [7, 7], &device);
        let x = Tensor::<4>::random([2, 32, 7, 7], Distribution::Default, &device);
        assert_eq!(attn.forward(x).dims(), [2, 64, 7, 7]);
        // qkv 49·32·192, scores and sum 2·49²·64, relative 49·(13 + 13)·64.
        assert_eq!(
            attn.macs(),
            (49 * 32 * 192 + 2 * 49 * 49 * 64 + 49 * 26 * 64) as u64
        );
    }

    #[test]
    fn odd_half_size_maps_are_refused() {
        let device = Device::flex();
        let spec = ModelSpec::new("resnet20-bot", [1, 30, 30], 10);
        assert!(BotNet::new(&spec, 3, &device).is_err());
    }
}
