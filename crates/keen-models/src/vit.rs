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
use burn::tensor::{Int, TensorData};
use keen_kernels::conv2d_layer;

pub use crate::attention::{AttentionMaps, SelfAttention};
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

/// The width of one block's parts: what pruning changes and a pruned file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockShape {
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Hidden width of the MLP.
    pub mlp_dim: usize,
}

impl BlockShape {
    /// The shape every block of `config` starts with.
    pub fn of(config: &VitConfig) -> Self {
        Self {
            heads: config.heads,
            head_dim: config.dim / config.heads.max(1),
            mlp_dim: config.mlp_dim,
        }
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
        Self::with_shape(config.dim, BlockShape::of(config), device)
    }

    /// A block over tokens of width `dim` with the parts `shape` says.
    pub(crate) fn with_shape(dim: usize, shape: BlockShape, device: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(dim).init(device),
            attn: SelfAttention::with_heads(dim, shape.heads, shape.head_dim, device),
            norm2: LayerNormConfig::new(dim).init(device),
            fc1: LinearConfig::new(dim, shape.mlp_dim).init(device),
            fc2: LinearConfig::new(shape.mlp_dim, dim).init(device),
            drop_path: DropPath::new(0.0),
        }
    }

    /// The block's attention.
    pub fn attention(&self) -> &SelfAttention {
        &self.attn
    }

    /// The MLP's two layers (`[dim, hidden]`, `[hidden, dim]`).
    pub fn mlp(&self) -> (&Linear, &Linear) {
        (&self.fc1, &self.fc2)
    }

    /// Its heads, head width and MLP width.
    pub fn shape(&self) -> BlockShape {
        BlockShape {
            heads: self.attn.heads(),
            head_dim: self.attn.head_dim(),
            mlp_dim: self.fc1.weight.dims()[1],
        }
    }

    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone()
            + self
                .drop_path
                .forward(self.attn.forward(self.norm1.forward(x)));
        self.mlp_residual(x)
    }

    /// [`forward`](Self::forward) and the attention probabilities `[batch, heads, n, n]`.
    pub(crate) fn forward_with_attention(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let (attended, probs) = self
            .attn
            .forward_with_attention(self.norm1.forward(x.clone()));
        let x = x + self.drop_path.forward(attended);
        (self.mlp_residual(x), probs)
    }

    fn mlp_residual(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = gelu(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.drop_path.forward(self.fc2.forward(hidden))
    }

    /// The same block with only heads `heads` and MLP hidden units `hidden` (increasing
    /// indices): the kept parts compute what they did, the removed ones contribute nothing.
    pub fn retain(&self, heads: &[usize], hidden: &[usize]) -> Result<Self, ModelError> {
        let width = self.fc1.weight.dims()[1];
        if hidden.is_empty()
            || hidden.windows(2).any(|w| w[0] >= w[1])
            || hidden[hidden.len() - 1] >= width
        {
            return Err(ModelError::BadConfig {
                reason: format!(
                    "MLP units to keep must be increasing, non-empty and below {width}; got {} units",
                    hidden.len()
                ),
            });
        }
        let device = self.fc1.weight.device();
        let len = hidden.len();
        let index: Vec<i64> = hidden.iter().map(|&u| u as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [len]), &device);
        let mut block = self.clone();
        block.attn = self.attn.retain_heads(heads)?;
        block.fc1.weight = block.fc1.weight.map(|w| w.select(1, index.clone()));
        block.fc1.bias = block
            .fc1
            .bias
            .map(|b| b.map(|b| b.select(0, index.clone())));
        block.fc2.weight = block.fc2.weight.map(|w| w.select(0, index));
        Ok(block)
    }

    /// The same block with heads `heads` silenced (see [`SelfAttention::zero_heads`]).
    pub fn zero_heads(&self, heads: &[usize]) -> Result<Self, ModelError> {
        let mut block = self.clone();
        block.attn = self.attn.zero_heads(heads)?;
        Ok(block)
    }

    /// MACs of the block over `n` tokens.
    pub(crate) fn macs(&self, n: usize) -> u64 {
        let [dim, hidden] = self.fc1.weight.dims();
        self.attn.macs(n) + linear_macs(dim, hidden, n) + linear_macs(hidden, dim, n)
    }
}

/// Replaces `blocks` by `f`'s rewrite of each (`f` gets the block's index), checking the count.
pub(crate) fn map_blocks(
    blocks: &[Block],
    f: &mut dyn FnMut(usize, &Block) -> Result<Block, ModelError>,
) -> Result<Vec<Block>, ModelError> {
    blocks.iter().enumerate().map(|(i, b)| f(i, b)).collect()
}

/// Fresh blocks of `shapes` (weights are then loaded from a file).
pub(crate) fn blocks_of_shapes(
    dim: usize,
    shapes: &[BlockShape],
    depth: usize,
    device: &Device,
) -> Result<Vec<Block>, ModelError> {
    if shapes.len() != depth {
        return Err(ModelError::BadConfig {
            reason: format!("{} block shapes for {depth} blocks", shapes.len()),
        });
    }
    if let Some(s) = shapes
        .iter()
        .find(|s| s.heads == 0 || s.head_dim == 0 || s.mlp_dim == 0)
    {
        return Err(ModelError::BadConfig {
            reason: format!("block shape {s:?} has an empty part"),
        });
    }
    Ok(shapes
        .iter()
        .map(|&shape| Block::with_shape(dim, shape, device))
        .collect())
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
    conv2d_layer(patch_embed, images)
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
    /// The registry shape's heads and MLP width; pruned blocks may have fewer.
    heads: usize,
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
            heads: config.heads,
            mlp_dim: config.mlp_dim,
            in_channels: channels,
        })
    }

    /// The same ViT with stochastic depth at `rate` on its last block (linearly less before).
    pub fn with_drop_path(mut self, rate: f64) -> Self {
        set_drop_path(&mut self.blocks, rate);
        self
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

    /// The same ViT with every block rewritten by `f` (e.g. heads removed).
    pub fn map_blocks(
        mut self,
        f: &mut dyn FnMut(usize, &Block) -> Result<Block, ModelError>,
    ) -> Result<Self, ModelError> {
        self.blocks = map_blocks(&self.blocks, f)?;
        Ok(self)
    }

    /// The same ViT with fresh blocks of `shapes` (to load a pruned model's weights into).
    pub fn with_block_shapes(
        mut self,
        shapes: &[BlockShape],
        device: &Device,
    ) -> Result<Self, ModelError> {
        self.blocks = blocks_of_shapes(self.dim, shapes, self.blocks.len(), device)?;
        Ok(self)
    }

    /// Class token, patches and positions: the first block's input `[batch, 1 + patches, dim]`.
    fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let batch = images.dims()[0];
        let patches = patch_tokens(&self.patch_embed, images);
        let cls = self.cls_token.val().expand([batch, 1, self.dim]);
        Tensor::cat(vec![cls, patches], 1) + self.pos_embed.val()
    }

    fn features_of_tokens(&self, x: Tensor<3>) -> Tensor<2> {
        self.norm.forward(x).narrow(1, 0, 1).flatten::<2>(1, 2)
    }

    /// The logits `forward` gives (to float rounding) and every block's attention
    /// probabilities, for attention rollout.
    pub fn forward_with_attention(&self, images: Tensor<4>) -> AttentionMaps {
        let [_, _, height, width] = images.dims();
        let mut x = self.embed(images);
        let mut layers = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (next, probs) = block.forward_with_attention(x);
            x = next;
            layers.push(probs);
        }
        AttentionMaps {
            logits: self.forward_head(self.features_of_tokens(x)),
            layers,
            prefix_tokens: 1,
            grid: self.config().grid(height, width),
        }
    }
}

impl ImageClassifier for Vit {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.embed(images);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.features_of_tokens(x)
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
        let [gh, gw] = self.config().grid(height, width);
        let patches = gh * gw;
        let d = self.dim;
        let embed = linear_macs(self.in_channels * p * p, d, patches);
        let blocks: u64 = self.blocks.iter().map(|b| b.macs(patches + 1)).sum();
        embed + blocks + linear_macs(d, self.num_classes(), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn forward_with_attention_gives_the_forward_logits() {
        let device = Device::flex();
        let spec = ModelSpec::new("vit-tiny", [1, 28, 28], 10);
        let vit = Vit::new(&spec, VitConfig::TINY, &device).expect("vit");
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let maps = vit.forward_with_attention(images.clone());
        maps.logits.into_data().assert_approx_eq::<f32>(
            &vit.forward(images).into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        assert_eq!(maps.layers.len(), 4);
        assert_eq!(maps.layers[0].dims(), [2, 4, 50, 50]);
        assert_eq!((maps.prefix_tokens, maps.grid), (1, [7, 7]));
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
