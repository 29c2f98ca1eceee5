//! `vit-tiny`: keen's reference Vision Transformer (Dosovitskiy et al. 2021), small enough for
//! 28×28 images.
//!
//! Conv2d(C,64,k4,s4) patches → 49 tokens + a cls token + learned positions; 4 pre-norm blocks
//! (dim 64, 4 heads, MLP 128, GELU); a final LayerNorm; Linear(64, classes) on the cls token.
//! Patch size, depth, width, heads and MLP width are a [`VitConfig`], so variants are one line.

use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::flops::linear_macs;
use crate::{ImageClassifier, ModelError, ModelSpec};

/// The shape of a ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitConfig {
    /// Side of a square patch in pixels.
    pub patch_size: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Token width.
    pub dim: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_dim: usize,
}

impl VitConfig {
    /// The reference `vit-tiny` of keen's benchmarks.
    pub const TINY: VitConfig = VitConfig {
        patch_size: 4,
        depth: 4,
        dim: 64,
        heads: 4,
        mlp_dim: 128,
    };
}

/// Multi-head self-attention with a fused query/key/value projection.
#[derive(Module, Debug)]
pub struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl SelfAttention {
    fn new(dim: usize, heads: usize, device: &Device) -> Self {
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            heads,
        }
    }

    /// Attends over `tokens` `[batch, n, dim]`.
    pub fn forward(&self, tokens: Tensor<3>) -> Tensor<3> {
        let [batch, n, dim] = tokens.dims();
        let head_dim = dim / self.heads;
        let qkv = self.qkv.forward(tokens);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * dim, dim)
                .reshape([batch, n, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let context = attention(
            split(0),
            split(1),
            split(2),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        self.proj
            .forward(context.swap_dims(1, 2).reshape([batch, n, dim]))
    }
}

/// A pre-norm transformer block.
#[derive(Module, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn new(config: &VitConfig, device: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(config.dim).init(device),
            attn: SelfAttention::new(config.dim, config.heads, device),
            norm2: LayerNormConfig::new(config.dim).init(device),
            fc1: LinearConfig::new(config.dim, config.mlp_dim).init(device),
            fc2: LinearConfig::new(config.mlp_dim, config.dim).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x));
        let hidden = gelu(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.fc2.forward(hidden)
    }
}

/// A Vision Transformer classifier.
#[derive(Module, Debug)]
pub struct Vit {
    patch_embed: Conv2d,
    cls_token: Param<Tensor<3>>,
    pos_embed: Param<Tensor<3>>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
    patch_size: usize,
    dim: usize,
    mlp_dim: usize,
    in_channels: usize,
}

impl Vit {
    /// Builds a ViT of shape `config` for `spec`'s images.
    pub fn new(spec: &ModelSpec, config: VitConfig, device: &Device) -> Result<Self, ModelError> {
        let [channels, height, width] = spec.input_shape();
        let p = config.patch_size;
        if !height.is_multiple_of(p) || !width.is_multiple_of(p) {
            return Err(spec.bad_input(&format!(
                "image sides must be multiples of the patch size {p}"
            )));
        }
        if !config.dim.is_multiple_of(config.heads) {
            return Err(spec.bad_input("the width must be a multiple of the head count"));
        }
        let tokens = (height / p) * (width / p) + 1;
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Ok(Self {
            patch_embed: Conv2dConfig::new([channels, config.dim], [p, p])
                .with_stride([p, p])
                .init(device),
            cls_token: small.init([1, 1, config.dim], device),
            pos_embed: small.init([1, tokens, config.dim], device),
            blocks: (0..config.depth)
                .map(|_| Block::new(&config, device))
                .collect(),
            norm: LayerNormConfig::new(config.dim).init(device),
            head: LinearConfig::new(config.dim, spec.num_classes).init(device),
            patch_size: p,
            dim: config.dim,
            mlp_dim: config.mlp_dim,
            in_channels: channels,
        })
    }
}

impl ImageClassifier for Vit {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let batch = images.dims()[0];
        // [B, dim, h, w] -> [B, h*w, dim]
        let patches = self
            .patch_embed
            .forward(images)
            .flatten::<3>(2, 3)
            .swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, self.dim]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + self.pos_embed.val();
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        x.narrow(1, 0, 1).flatten::<2>(1, 2)
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    fn num_features(&self) -> usize {
        self.dim
    }

    fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        self.head = LinearConfig::new(self.dim, num_classes).init(device);
        self
    }

    fn macs(&self, [_, height, width]: [usize; 3]) -> u64 {
        let p = self.patch_size;
        let patches = (height / p) * (width / p);
        let n = patches + 1;
        let d = self.dim;
        let embed = linear_macs(self.in_channels * p * p, d, patches);
        // qkv + attention scores + weighted sum + output projection + MLP.
        let per_block = linear_macs(d, 3 * d, n)
            + 2 * (n * n * d) as u64
            + linear_macs(d, d, n)
            + linear_macs(d, self.mlp_dim, n)
            + linear_macs(self.mlp_dim, d, n);
        embed + per_block * self.blocks.len() as u64 + linear_macs(d, self.num_classes(), 1)
    }
}
