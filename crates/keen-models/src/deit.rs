//! `deit-tiny`: the `vit-tiny` body with a distillation token (Touvron et al. 2021, DeiT).
//!
//! A second learned token joins the class token; after the last block the class token feeds the
//! class head and the distillation token its own head. In training the class head learns from
//! the labels and the distillation head from a teacher (keen-compress's DeiT hook reads both
//! through [`Deit::forward_heads`]). At inference the two heads' logits are averaged, as timm's
//! `VisionTransformerDistilled` does in eval mode: `forward` always returns that average, so
//! evaluation, export checks and attacks see the model a DeiT user deploys.

use burn::module::{Initializer, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::flops::linear_macs;
use crate::graph::quant::QuantState;
use crate::linear_quant::QuantPoints;
use crate::vit::{
    block_points, blocks_of_shapes, check_quant_state, head_point, map_blocks, patch_tokens,
    set_drop_path, AttentionMaps, Block, BlockShape, VitConfig,
};
use crate::{ImageClassifier, ModelError, ModelSpec};

/// A Vision Transformer with class and distillation tokens and two heads.
#[derive(Module, Debug)]
pub struct Deit {
    patch_embed: Conv2d,
    cls_token: Param<Tensor<3>>,
    dist_token: Param<Tensor<3>>,
    pos_embed: Param<Tensor<3>>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
    head_dist: Linear,
    patch_size: usize,
    dim: usize,
    heads: usize,
    mlp_dim: usize,
    in_channels: usize,
    /// Fake quantization of the layers with weights ([`crate::linear_quant`]); off by default.
    /// The distillation head's input is the point after the class head's.
    #[module(skip)]
    quant: QuantState,
}

impl Deit {
    /// Builds a DeiT of shape `config` for `spec`'s images.
    pub fn new(spec: &ModelSpec, config: VitConfig, device: &Device) -> Result<Self, ModelError> {
        config.check(spec)?;
        let [channels, height, width] = spec.input_shape();
        let [gh, gw] = config.grid(height, width);
        // Patches plus the class and distillation tokens, each with a learned position.
        let tokens = gh * gw + 2;
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Ok(Self {
            patch_embed: config.patch_conv(spec.input_shape(), device),
            cls_token: small.init([1, 1, config.dim], device),
            dist_token: small.init([1, 1, config.dim], device),
            pos_embed: small.init([1, tokens, config.dim], device),
            blocks: (0..config.depth)
                .map(|_| Block::new(&config, device))
                .collect(),
            norm: LayerNormConfig::new(config.dim).init(device),
            head: LinearConfig::new(config.dim, spec.num_classes).init(device),
            head_dist: LinearConfig::new(config.dim, spec.num_classes).init(device),
            patch_size: config.patch_size,
            dim: config.dim,
            heads: config.heads,
            mlp_dim: config.mlp_dim,
            in_channels: channels,
            quant: QuantState::default(),
        })
    }

    /// Quantization settings and ranges of its layers with weights.
    pub fn quant_state(&self) -> &QuantState {
        &self.quant
    }

    /// The same DeiT with `state`'s fake quantization (clones made before no longer share it).
    pub fn with_quant(mut self, state: QuantState) -> Result<Self, ModelError> {
        check_quant_state(&state, self.blocks.len(), 2)?;
        self.quant = state;
        Ok(self)
    }

    /// The same DeiT with stochastic depth at `rate` on its last block (linearly less before).
    pub fn with_drop_path(mut self, rate: f64) -> Self {
        set_drop_path(&mut self.blocks, rate);
        self
    }

    /// The class head's and the distillation head's logits, each `[batch, classes]`: what
    /// DeiT's training loss needs (timm returns this pair in training mode).
    pub fn forward_heads(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let features = self.forward_features(images);
        self.heads_from_features(features)
    }

    /// The registry shape it was built with (before any pruning).
    pub fn config(&self) -> VitConfig {
        VitConfig {
            patch_size: self.patch_size,
            depth: self.blocks.len(),
            dim: self.dim,
            heads: self.heads,
            mlp_dim: self.mlp_dim,
        }
    }

    /// The transformer blocks, first to last.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The same DeiT with every block rewritten by `f` (e.g. heads removed).
    pub fn map_blocks(
        mut self,
        f: &mut dyn FnMut(usize, &Block) -> Result<Block, ModelError>,
    ) -> Result<Self, ModelError> {
        self.blocks = map_blocks(&self.blocks, f)?;
        Ok(self)
    }

    /// The same DeiT with fresh blocks of `shapes` (to load a pruned model's weights into).
    pub fn with_block_shapes(
        mut self,
        shapes: &[BlockShape],
        device: &Device,
    ) -> Result<Self, ModelError> {
        self.blocks = blocks_of_shapes(self.dim, shapes, self.blocks.len(), device)?;
        Ok(self)
    }

    /// Class, distillation and patch tokens with positions: the first block's input.
    fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let batch = images.dims()[0];
        let patches = patch_tokens(&self.patch_embed, images, QuantPoints::new(&self.quant));
        let cls = self.cls_token.val().expand([batch, 1, self.dim]);
        let dist = self.dist_token.val().expand([batch, 1, self.dim]);
        Tensor::cat(vec![cls, dist, patches], 1) + self.pos_embed.val()
    }

    fn features_of_tokens(&self, x: Tensor<3>) -> Tensor<2> {
        self.norm.forward(x).narrow(1, 0, 2).flatten::<2>(1, 2)
    }

    /// The logits `forward` gives (to float rounding) and every block's attention
    /// probabilities, for attention rollout.
    pub fn forward_with_attention(&self, images: Tensor<4>) -> AttentionMaps {
        let [_, _, height, width] = images.dims();
        let mut x = self.embed(images);
        let mut layers = Vec::with_capacity(self.blocks.len());
        let points = QuantPoints::new(&self.quant);
        for (i, block) in self.blocks.iter().enumerate() {
            let (next, probs) = block.forward_with_attention(x, block_points(points, i));
            x = next;
            layers.push(probs);
        }
        AttentionMaps {
            logits: self.forward_head(self.features_of_tokens(x)),
            layers,
            prefix_tokens: 2,
            grid: self.config().grid(height, width),
        }
    }

    fn heads_from_features(&self, features: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let cls = features.clone().narrow(1, 0, self.dim);
        let dist = features.narrow(1, self.dim, self.dim);
        let points = QuantPoints::new(&self.quant);
        let head = head_point(self.blocks.len());
        (
            points.linear(head, &self.head, cls),
            points.linear(head + 1, &self.head_dist, dist),
        )
    }
}

impl ImageClassifier for Deit {
    /// The normalised class and distillation tokens side by side, `[batch, 2·dim]`.
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.embed(images);
        let points = QuantPoints::new(&self.quant);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, block_points(points, i));
        }
        self.features_of_tokens(x)
    }

    /// The average of the two heads' logits (DeiT's inference rule).
    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        let (cls, dist) = self.heads_from_features(features);
        (cls + dist).div_scalar(2.0)
    }

    fn num_features(&self) -> usize {
        2 * self.dim
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(self.dim, num_classes).init(device);
        self.head_dist = LinearConfig::new(self.dim, num_classes).init(device);
        self
    }

    fn macs(&self, [_, height, width]: [usize; 3]) -> u64 {
        let p = self.patch_size;
        let [gh, gw] = self.config().grid(height, width);
        let patches = gh * gw;
        let embed = linear_macs(self.in_channels * p * p, self.dim, patches);
        let blocks: u64 = self.blocks.iter().map(|b| b.macs(patches + 2)).sum();
        embed + blocks + 2 * linear_macs(self.dim, self.num_classes(), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tolerance};

    fn tiny(device: &Device) -> Deit {
        let spec = ModelSpec::new("deit-tiny", [1, 28, 28], 10);
        Deit::new(&spec, VitConfig::TINY, device).expect("deit")
    }

    #[test]
    fn forward_is_the_average_of_the_two_heads() {
        let device = Device::flex();
        let model = tiny(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let (cls, dist) = model.forward_heads(images.clone());
        assert_eq!(cls.dims(), [3, 10]);
        assert_eq!(dist.dims(), [3, 10]);
        // Two heads initialised apart give different logits.
        let gap = (cls.clone() - dist.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(gap > 1e-4);
        let expected = (cls + dist).div_scalar(2.0).into_data();
        model
            .forward(images)
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
    }

    #[test]
    fn the_distillation_loss_reaches_the_distillation_token() {
        let device = Device::flex().autodiff();
        let model = tiny(&device);
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        // A loss on the distillation head alone: its gradient flows back to the dist token
        // (through attention) and to the dist head, and not to the class head.
        let (_, dist) = model.forward_heads(images);
        let grads = GradientsParams::from_grads(dist.powi_scalar(2).mean().backward(), &model);
        let token = grads
            .get::<3>(model.dist_token.id)
            .expect("dist token gradient");
        assert!(token.abs().sum().into_scalar::<f32>() > 0.0);
        assert!(grads.get::<2>(model.head_dist.weight.id).is_some());
        assert!(grads.get::<2>(model.head.weight.id).is_none());
    }

    #[test]
    fn costs_two_more_tokens_and_one_more_head_than_the_vit() {
        let device = Device::flex();
        let spec = ModelSpec::new("vit-tiny", [1, 28, 28], 10);
        let vit = crate::vit::Vit::new(&spec, VitConfig::TINY, &device).expect("vit");
        let deit = tiny(&device);
        assert!(deit.macs([1, 28, 28]) > vit.macs([1, 28, 28]));
        // One more token (64), its position (64) and one more head (64·10 + 10).
        assert_eq!(
            crate::trainable_params(&deit),
            crate::trainable_params(&vit) + 64 + 64 + 650
        );
    }
}
