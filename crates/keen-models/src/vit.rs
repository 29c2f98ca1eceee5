//! `vit-tiny`: keen's reference Vision Transformer (Dosovitskiy et al. 2021), small enough for
//! 28×28 images.
//!
//! Conv2d(C,64,k4,s4) patches → 49 tokens + a cls token + learned positions; 4 pre-norm blocks
//! (dim 64, 4 heads, MLP 128, GELU); a final LayerNorm; Linear(64, classes) on the cls token.
//! Patch size, depth, width, heads and MLP width are a [`VitConfig`], so variants are one line.
//! Stochastic depth ([`Vit::with_drop_path`]) is off unless training asks for it.

use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::drop_path::{linear_rates, DropPath};
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

    /// `vit-tiny-p7`: the tiny body on 7×7 patches, 16 tokens on 28×28 (a third of the
    /// tiny's cost; coarser tokens).
    pub const TINY_P7: VitConfig = VitConfig {
        patch_size: 7,
        ..Self::TINY
    };

    /// `vit-small`: 6 blocks of width 128 (4 heads of 32, MLP 256) on 4×4 patches.
    pub const SMALL: VitConfig = VitConfig {
        patch_size: 4,
        depth: 6,
        dim: 128,
        heads: 4,
        mlp_dim: 256,
    };

    /// Checks that the width splits into whole heads.
    pub(crate) fn check(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        if self.patch_size == 0 {
            return Err(spec.bad_input("the patch size must be at least 1"));
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return Err(spec.bad_input("the width must be a multiple of the head count"));
        }
        Ok(())
    }

    /// Patches along height and width: sides that are not multiples of the patch size are
    /// zero-padded at the bottom and right (timm's `dynamic_img_pad`), so `vit-tiny-p7` takes
    /// 32×32 images as well as 28×28.
    pub(crate) fn grid(&self, height: usize, width: usize) -> [usize; 2] {
        [
            height.div_ceil(self.patch_size),
            width.div_ceil(self.patch_size),
        ]
    }

    /// The patch-embedding convolution for `[channels, height, width]` images.
    pub(crate) fn patch_conv(
        &self,
        [channels, height, width]: [usize; 3],
        device: &Device,
    ) -> Conv2d {
        let p = self.patch_size;
        let [gh, gw] = self.grid(height, width);
        Conv2dConfig::new([channels, self.dim], [p, p])
            .with_stride([p, p])
            .with_padding(PaddingConfig2d::Explicit(
                0,
                0,
                gh * p - height,
                gw * p - width,
            ))
            .init(device)
    }
}

/// Multi-head self-attention with a fused query/key/value projection.
#[derive(Module, Debug)]
pub struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl SelfAttention {
    pub(crate) fn new(dim: usize, heads: usize, device: &Device) -> Self {
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            heads,
        }
    }

    /// MACs for `n` tokens of width `dim`: projections, scores and the weighted sum.
    pub(crate) fn macs(dim: usize, n: usize) -> u64 {
        linear_macs(dim, 3 * dim, n) + 2 * (n * n * dim) as u64 + linear_macs(dim, dim, n)
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
    drop_path: DropPath,
}

impl Block {
    pub(crate) fn new(config: &VitConfig, device: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(config.dim).init(device),
            attn: SelfAttention::new(config.dim, config.heads, device),
            norm2: LayerNormConfig::new(config.dim).init(device),
            fc1: LinearConfig::new(config.dim, config.mlp_dim).init(device),
            fc2: LinearConfig::new(config.mlp_dim, config.dim).init(device),
            drop_path: DropPath::new(0.0),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone()
            + self
                .drop_path
                .forward(self.attn.forward(self.norm1.forward(x)));
        let hidden = gelu(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.drop_path.forward(self.fc2.forward(hidden))
    }

    /// MACs of one block over `n` tokens.
    pub(crate) fn macs(config: &VitConfig, n: usize) -> u64 {
        let d = config.dim;
        SelfAttention::macs(d, n)
            + linear_macs(d, config.mlp_dim, n)
            + linear_macs(config.mlp_dim, d, n)
    }
}

/// Sets timm's linearly growing stochastic-depth rates (0 at the first block, `rate` at the
/// last) on `blocks`.
pub(crate) fn set_drop_path(blocks: &mut [Block], rate: f64) {
    let rates = linear_rates(rate, blocks.len());
    for (block, rate) in blocks.iter_mut().zip(rates) {
        block.drop_path.prob = rate;
    }
}

/// Patch embedding: `[B, C, H, W]` images to `[B, patches, dim]` tokens.
pub(crate) fn patch_tokens(patch_embed: &Conv2d, images: Tensor<4>) -> Tensor<3> {
    patch_embed
        .forward(images)
        .flatten::<3>(2, 3)
        .swap_dims(1, 2)
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
        config.check(spec)?;
        let [channels, height, width] = spec.input_shape();
        let [gh, gw] = config.grid(height, width);
        let tokens = gh * gw + 1;
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Ok(Self {
            patch_embed: config.patch_conv(spec.input_shape(), device),
            cls_token: small.init([1, 1, config.dim], device),
            pos_embed: small.init([1, tokens, config.dim], device),
            blocks: (0..config.depth)
                .map(|_| Block::new(&config, device))
                .collect(),
            norm: LayerNormConfig::new(config.dim).init(device),
            head: LinearConfig::new(config.dim, spec.num_classes).init(device),
            patch_size: config.patch_size,
            dim: config.dim,
            mlp_dim: config.mlp_dim,
            in_channels: channels,
        })
    }

    /// The same ViT with stochastic depth at `rate` on its last block (linearly less before).
    pub fn with_drop_path(mut self, rate: f64) -> Self {
        set_drop_path(&mut self.blocks, rate);
        self
    }

    fn config(&self) -> VitConfig {
        VitConfig {
            patch_size: self.patch_size,
            depth: self.blocks.len(),
            dim: self.dim,
            heads: self.blocks.first().map_or(1, |b| b.attn.heads),
            mlp_dim: self.mlp_dim,
        }
    }
}

impl ImageClassifier for Vit {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let batch = images.dims()[0];
        let patches = patch_tokens(&self.patch_embed, images);
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
        let config = self.config();
        let p = self.patch_size;
        let [gh, gw] = config.grid(height, width);
        let patches = gh * gw;
        let n = patches + 1;
        let d = self.dim;
        let embed = linear_macs(self.in_channels * p * p, d, patches);
        let per_block = Block::macs(&config, n);
        embed + per_block * self.blocks.len() as u64 + linear_macs(d, self.num_classes(), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// `x·W + b` for a row-major `[rows, in]` input and burn's `[in, out]` weight.
    fn linear_naive(x: &[f32], rows: usize, layer: &Linear) -> Vec<f32> {
        let [inputs, outputs] = layer.weight.dims();
        let w = values(layer.weight.val());
        let b = layer.bias.as_ref().map(|b| values(b.val()));
        let mut out = vec![0.0f32; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                let mut acc = b.as_ref().map_or(0.0, |b| b[o]);
                for i in 0..inputs {
                    acc += x[r * inputs + i] * w[i * outputs + o];
                }
                out[r * outputs + o] = acc;
            }
        }
        out
    }

    /// Multi-head self-attention with explicit loops and softmax: the reference.
    fn attention_naive(
        attn: &SelfAttention,
        x: &[f32],
        batch: usize,
        n: usize,
        dim: usize,
    ) -> Vec<f32> {
        let heads = attn.heads;
        let hd = dim / heads;
        let qkv = linear_naive(x, batch * n, &attn.qkv);
        let at = |b: usize, t: usize, part: usize, h: usize, j: usize| {
            qkv[(b * n + t) * 3 * dim + part * dim + h * hd + j]
        };
        let mut context = vec![0.0f32; batch * n * dim];
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..n {
                    let scores: Vec<f32> = (0..n)
                        .map(|k| {
                            (0..hd)
                                .map(|j| at(b, i, 0, h, j) * at(b, k, 1, h, j))
                                .sum::<f32>()
                                / (hd as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::MIN, f32::max);
                    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = exp.iter().sum();
                    for j in 0..hd {
                        context[(b * n + i) * dim + h * hd + j] =
                            (0..n).map(|k| exp[k] / total * at(b, k, 2, h, j)).sum();
                    }
                }
            }
        }
        linear_naive(&context, batch * n, &attn.proj)
    }

    #[test]
    fn multi_head_attention_matches_the_naive_reference() {
        let device = Device::flex();
        let (batch, n, dim) = (2, 5, 12);
        for heads in [1, 3, 4] {
            let attn = SelfAttention::new(dim, heads, &device);
            let x = Tensor::<3>::random([batch, n, dim], Distribution::Normal(0.0, 1.0), &device);
            let expected = attention_naive(&attn, &values(x.clone()), batch, n, dim);
            let actual = values(attn.forward(x));
            for (a, e) in actual.iter().zip(&expected) {
                assert!((a - e).abs() < 1e-4, "{heads} heads: {a} vs {e}");
            }
        }
    }

    #[test]
    fn variants_count_their_attention_macs() {
        let device = Device::flex();
        let spec = ModelSpec::new("vit-tiny", [1, 28, 28], 10);
        let tiny = Vit::new(&spec, VitConfig::TINY, &device).expect("tiny");
        let p7 = Vit::new(&spec, VitConfig::TINY_P7, &device).expect("p7");
        // 50 tokens: qkv 50·64·192, scores and sum 2·50²·64, proj 50·64², MLP 2·50·64·128.
        let block = 50 * 64 * 192 + 2 * 50 * 50 * 64 + 50 * 64 * 64 + 2 * 50 * 64 * 128;
        let expected = 49 * 16 * 64 + 4 * block + 64 * 10;
        assert_eq!(tiny.macs([1, 28, 28]), expected as u64);
        assert!(p7.macs([1, 28, 28]) < tiny.macs([1, 28, 28]) / 2);
        // 28 is not a multiple of 5: padded to 30, 6×6 patches.
        let p5 = VitConfig {
            patch_size: 5,
            ..VitConfig::TINY
        };
        let vit = Vit::new(&spec, p5, &device).expect("padded");
        assert_eq!(vit.pos_embed.dims(), [1, 37, 64]);
        let images = Tensor::<4>::zeros([2, 1, 28, 28], &device);
        assert_eq!(vit.forward(images).dims(), [2, 10]);
        let odd_heads = VitConfig {
            heads: 5,
            ..VitConfig::TINY
        };
        assert!(Vit::new(&spec, odd_heads, &device).is_err());
    }
}
