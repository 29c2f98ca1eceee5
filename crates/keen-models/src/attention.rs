//! Multi-head self-attention for the ViT and DeiT blocks, with what explaining and pruning
//! need to see inside it: the attention probabilities, each head's output, and heads removed
//! or silenced.
//!
//! The fused projection keeps timm's layout: `qkv`'s outputs are `[q | k | v]`, each
//! `heads × head_dim` wide with head `h` at columns `h·head_dim..(h+1)·head_dim`, and `proj`
//! reads the heads' outputs in the same order. Removing a head therefore removes three column
//! blocks of `qkv` and one row block of `proj`, and leaves every other head's numbers as they
//! were.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, TensorData};

use crate::flops::linear_macs;
use crate::linear_quant::QuantPoints;
use crate::ModelError;

/// Multi-head self-attention with a fused query/key/value projection.
#[derive(Module, Debug)]
pub struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    /// Attention over tokens of width `dim` split evenly into `heads` heads.
    pub fn new(dim: usize, heads: usize, device: &Device) -> Self {
        Self::with_heads(dim, heads, dim / heads.max(1), device)
    }

    /// Attention with `heads` heads of width `head_dim` over tokens of width `dim`: the shape
    /// of a block whose heads were pruned (`heads · head_dim < dim`).
    pub(crate) fn with_heads(dim: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        let inner = heads * head_dim;
        Self {
            qkv: LinearConfig::new(dim, 3 * inner).init(device),
            proj: LinearConfig::new(inner, dim).init(device),
            heads,
            head_dim,
        }
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The fused query/key/value projection (`[dim, 3·heads·head_dim]`).
    pub fn qkv(&self) -> &Linear {
        &self.qkv
    }

    /// The output projection (`[heads·head_dim, dim]`).
    pub fn proj(&self) -> &Linear {
        &self.proj
    }

    fn inner(&self) -> usize {
        self.heads * self.head_dim
    }

    /// MACs for `n` tokens: projections, scores and the weighted sum.
    pub(crate) fn macs(&self, n: usize) -> u64 {
        let dim = self.proj.weight.dims()[1];
        let inner = self.inner();
        linear_macs(dim, 3 * inner, n) + 2 * (n * n * inner) as u64 + linear_macs(inner, dim, n)
    }

    /// Queries, keys and values, each `[batch, heads, n, head_dim]`.
    fn split_qkv(&self, tokens: Tensor<3>, points: QuantPoints) -> [Tensor<4>; 3] {
        let [batch, n, _] = tokens.dims();
        let inner = self.inner();
        let qkv = points.linear(0, &self.qkv, tokens);
        [0, 1, 2].map(|i| {
            qkv.clone()
                .narrow(2, i * inner, inner)
                .reshape([batch, n, self.heads, self.head_dim])
                .swap_dims(1, 2)
        })
    }

    /// The heads' outputs `[batch, heads, n, head_dim]` joined and projected to `[batch, n, dim]`.
    fn project(&self, context: Tensor<4>, points: QuantPoints) -> Tensor<3> {
        let [batch, _, n, _] = context.dims();
        let joined = context.swap_dims(1, 2).reshape([batch, n, self.inner()]);
        points.linear(1, &self.proj, joined)
    }

    /// Attends over `tokens` `[batch, n, dim]`.
    pub fn forward(&self, tokens: Tensor<3>) -> Tensor<3> {
        self.forward_through(tokens, QuantPoints::FLOAT)
    }

    /// [`forward`](Self::forward) with `qkv` and `proj` through quantization points 0 and 1 of
    /// `points`.
    pub fn forward_through(&self, tokens: Tensor<3>, points: QuantPoints) -> Tensor<3> {
        let [q, k, v] = self.split_qkv(tokens, points);
        let context = attention(q, k, v, None, None, AttentionModuleOptions::default());
        self.project(context, points)
    }

    /// Each head's output before the output projection, `[batch, heads, n, head_dim]`, and the
    /// attention probabilities `[batch, heads, n, n]` (row `i`: how token `i` spreads its
    /// attention), computed with an explicit softmax so the probabilities can be read.
    pub fn head_outputs(&self, tokens: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        self.head_outputs_through(tokens, QuantPoints::FLOAT)
    }

    fn head_outputs_through(
        &self,
        tokens: Tensor<3>,
        points: QuantPoints,
    ) -> (Tensor<4>, Tensor<4>) {
        let [q, k, v] = self.split_qkv(tokens, points);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let probs = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        (probs.clone().matmul(v), probs)
    }

    /// [`forward_through`](Self::forward_through)'s result (to float rounding) and the
    /// attention probabilities `[batch, heads, n, n]`.
    pub fn forward_with_attention(
        &self,
        tokens: Tensor<3>,
        points: QuantPoints,
    ) -> (Tensor<3>, Tensor<4>) {
        let (context, probs) = self.head_outputs_through(tokens, points);
        (self.project(context, points), probs)
    }

    fn check_heads(&self, heads: &[usize], keep: bool) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::BadConfig { reason });
        if let Some(h) = heads.iter().find(|&&h| h >= self.heads) {
            return bad(format!("head {h} does not exist ({} heads)", self.heads));
        }
        if heads.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("head list {heads:?} must be increasing"));
        }
        if keep && heads.is_empty() {
            return bad("a block must keep at least one head".into());
        }
        Ok(())
    }

    /// Indices into `qkv`'s outputs (or, `parts = 1`, `proj`'s inputs) of heads `heads`.
    fn head_columns(&self, heads: &[usize], parts: usize, device: &Device) -> Tensor<1, Int> {
        let inner = self.inner();
        let columns: Vec<i64> = (0..parts)
            .flat_map(|part| {
                heads.iter().flat_map(move |&h| {
                    let start = part * inner + h * self.head_dim;
                    (start..start + self.head_dim).map(|c| c as i64)
                })
            })
            .collect();
        let len = columns.len();
        Tensor::from_data(TensorData::new(columns, [len]), device)
    }

    /// The same attention with only heads `keep` (increasing indices), in that order: their
    /// query, key and value columns and their rows of the output projection. The kept heads
    /// compute exactly what they computed before; the result equals the original with the
    /// other heads' outputs zeroed ([`zero_heads`](Self::zero_heads)).
    pub fn retain_heads(&self, keep: &[usize]) -> Result<Self, ModelError> {
        self.check_heads(keep, true)?;
        let device = self.qkv.weight.device();
        let qkv_columns = self.head_columns(keep, 3, &device);
        let proj_rows = self.head_columns(keep, 1, &device);
        let mut qkv = self.qkv.clone();
        qkv.weight = qkv.weight.map(|w| w.select(1, qkv_columns.clone()));
        qkv.bias = qkv.bias.map(|b| b.map(|b| b.select(0, qkv_columns)));
        let mut proj = self.proj.clone();
        proj.weight = proj.weight.map(|w| w.select(0, proj_rows));
        Ok(Self {
            qkv,
            proj,
            heads: keep.len(),
            head_dim: self.head_dim,
        })
    }

    /// The same attention with heads `silenced` contributing nothing: their rows of the output
    /// projection are zero. This is the reference a pruned block must match, and the
    /// ablation head-importance studies use (Michel et al. 2019).
    pub fn zero_heads(&self, silenced: &[usize]) -> Result<Self, ModelError> {
        self.check_heads(silenced, false)?;
        let device = self.proj.weight.device();
        let mut mask = vec![1.0f32; self.inner()];
        for &h in silenced {
            mask[h * self.head_dim..(h + 1) * self.head_dim].fill(0.0);
        }
        let mask = Tensor::<1>::from_data(TensorData::new(mask, [self.inner()]), &device)
            .unsqueeze_dim::<2>(1);
        let mut zeroed = self.clone();
        zeroed.proj.weight = zeroed.proj.weight.map(|w| w * mask);
        Ok(zeroed)
    }
}

/// What a transformer's forward pass attended to: the logits and, per block, the attention
/// probabilities `[batch, heads, tokens, tokens]`, with where the patch tokens sit.
pub struct AttentionMaps {
    /// Class logits `[batch, classes]`, as `forward` returns them.
    pub logits: Tensor<2>,
    /// One `[batch, heads, tokens, tokens]` tensor per block, first block first.
    pub layers: Vec<Tensor<4>>,
    /// Tokens before the patches: 1 (class) for a ViT, 2 (class, distillation) for a DeiT.
    pub prefix_tokens: usize,
    /// Patches along height and width; the patch tokens are row-major over this grid.
    pub grid: [usize; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

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

    fn tokens(device: &Device) -> Tensor<3> {
        Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn explicit_softmax_path_matches_the_fused_attention() {
        let device = Device::flex();
        let attn = SelfAttention::new(12, 3, &device);
        let x = tokens(&device);
        let (out, probs) = attn.forward_with_attention(x.clone(), QuantPoints::FLOAT);
        out.into_data()
            .assert_approx_eq::<f32>(&attn.forward(x).into_data(), Tolerance::absolute(1e-5));
        assert_eq!(probs.dims(), [2, 3, 5, 5]);
        let rows = probs.sum_dim(3);
        rows.into_data().assert_approx_eq::<f32>(
            &Tensor::<4>::ones([2, 3, 5, 1], &device).into_data(),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn retained_heads_compute_what_they_computed_before() {
        let device = Device::flex();
        let attn = SelfAttention::new(12, 4, &device);
        let x = tokens(&device);
        let keep = [0, 2, 3];
        let pruned = attn.retain_heads(&keep).expect("prune");
        assert_eq!(pruned.heads(), 3);
        assert_eq!(pruned.qkv().weight.dims(), [12, 27]);
        assert_eq!(pruned.proj().weight.dims(), [9, 12]);
        let (before, before_probs) = attn.head_outputs(x.clone());
        let (after, after_probs) = pruned.head_outputs(x.clone());
        for (new, &old) in keep.iter().enumerate() {
            let pick = |t: Tensor<4>, h: usize| t.narrow(1, h, 1).into_data();
            pick(after.clone(), new)
                .assert_approx_eq::<f32>(&pick(before.clone(), old), Tolerance::absolute(1e-6));
            pick(after_probs.clone(), new).assert_approx_eq::<f32>(
                &pick(before_probs.clone(), old),
                Tolerance::absolute(1e-6),
            );
        }
        // The whole block equals the original with head 1 silenced.
        let zeroed = attn.zero_heads(&[1]).expect("zero");
        pruned
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&zeroed.forward(x).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn bad_head_lists_are_errors() {
        let device = Device::flex();
        let attn = SelfAttention::new(12, 4, &device);
        assert!(attn.retain_heads(&[]).is_err());
        assert!(attn.retain_heads(&[4]).is_err());
        assert!(attn.retain_heads(&[2, 1]).is_err());
        assert!(attn.zero_heads(&[]).is_ok());
    }
}
