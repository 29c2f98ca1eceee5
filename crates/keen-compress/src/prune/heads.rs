//! Structured pruning of ViT and DeiT blocks: whole attention heads and MLP hidden units.
//!
//! A head is the group of weights that only it uses: its query, key and value columns of the
//! fused `qkv` projection (weights and biases) and its rows of the output projection. An MLP
//! hidden unit is its column of `fc1` (with its bias) and its row of `fc2`. Each group is
//! scored by its L2 norm, torch-pruning's default importance (`MagnitudeImportance(p=2)` over
//! the dependency group that `prune_num_heads=True` builds for timm's `Attention`), and the
//! lowest-scoring fraction is removed in every block alike (torch-pruning's local pruning;
//! each block keeps at least one head and one unit).
//!
//! Removing a group shrinks the block ([`Block::retain`]): the kept heads and units compute
//! exactly what they computed before, so the pruned model equals the original with the
//! removed groups zeroed, and fine-tuning starts from there. The result is the same model
//! type, and its weight file records the new block shapes.

use burn::prelude::*;
use keen_models::vit::Block;
use keen_models::KeenModel;

use crate::error::CompressError;

/// Kept heads and MLP units of every block (increasing indices).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransformerPrunePlan {
    /// Per block, the heads that stay.
    pub heads: Vec<Vec<usize>>,
    /// Per block, the MLP hidden units that stay.
    pub hidden: Vec<Vec<usize>>,
}

impl TransformerPrunePlan {
    /// Per block, the heads that go (what [`Block::zero_heads`] silences to match).
    pub fn removed_heads(&self, blocks: &[Block]) -> Vec<Vec<usize>> {
        blocks
            .iter()
            .zip(&self.heads)
            .map(|(block, kept)| {
                (0..block.attention().heads())
                    .filter(|h| !kept.contains(h))
                    .collect()
            })
            .collect()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The L2 norm of each head's weights in `block` (q, k, v columns with biases, proj rows).
pub fn head_scores(block: &Block) -> Vec<f32> {
    let attn = block.attention();
    let (heads, head_dim) = (attn.heads(), attn.head_dim());
    let inner = heads * head_dim;
    let qkv = values(attn.qkv().weight.val());
    let qkv_bias = attn.qkv().bias.as_ref().map(|b| values(b.val()));
    let proj = values(attn.proj().weight.val());
    let dim = proj.len() / inner.max(1);
    let mut squares = vec![0.0f64; heads];
    for col in 0..3 * inner {
        let head = (col % inner) / head_dim;
        let column: f64 = (0..dim)
            .map(|i| (qkv[i * 3 * inner + col] as f64).powi(2))
            .sum();
        let bias = qkv_bias.as_ref().map_or(0.0, |b| (b[col] as f64).powi(2));
        squares[head] += column + bias;
    }
    for (row, chunk) in proj.chunks_exact(dim).enumerate() {
        squares[row / head_dim] += chunk.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
    }
    squares.into_iter().map(|s| s.sqrt() as f32).collect()
}

/// The L2 norm of each MLP hidden unit's weights in `block` (fc1 column and bias, fc2 row).
pub fn hidden_scores(block: &Block) -> Vec<f32> {
    let (fc1, fc2) = block.mlp();
    let [dim, hidden] = fc1.weight.dims();
    let w1 = values(fc1.weight.val());
    let b1 = fc1.bias.as_ref().map(|b| values(b.val()));
    let w2 = values(fc2.weight.val());
    (0..hidden)
        .map(|u| {
            let into: f64 = (0..dim).map(|i| (w1[i * hidden + u] as f64).powi(2)).sum();
            let bias = b1.as_ref().map_or(0.0, |b| (b[u] as f64).powi(2));
            let out: f64 = w2[u * dim..(u + 1) * dim]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum();
            (into + bias + out).sqrt() as f32
        })
        .collect()
}

/// The indices of the `scores.len() − round(ratio · len)` highest scores (at least one),
/// increasing; ties keep the lower index.
fn keep_highest(scores: &[f32], ratio: f32) -> Vec<usize> {
    let remove = ((ratio as f64 * scores.len() as f64).round() as usize).min(scores.len() - 1);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(scores.len() - remove);
    order.sort_unstable();
    order
}

fn check_ratio(name: &str, ratio: f32) -> Result<(), CompressError> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(CompressError::BadConfig(format!(
            "{name} ratio must be in [0, 1), got {ratio}"
        )));
    }
    Ok(())
}

/// Which heads (`head_ratio` of each block's, by L2 norm) and MLP units (`mlp_ratio`) of a
/// ViT or DeiT to keep.
pub fn plan_transformer(
    model: &KeenModel,
    head_ratio: f32,
    mlp_ratio: f32,
) -> Result<TransformerPrunePlan, CompressError> {
    check_ratio("head", head_ratio)?;
    check_ratio("MLP", mlp_ratio)?;
    let blocks = model.transformer_blocks().ok_or_else(|| {
        CompressError::BadConfig(
            "head and MLP pruning applies to vit and deit models; prune CNNs by --channels".into(),
        )
    })?;
    Ok(TransformerPrunePlan {
        heads: blocks
            .iter()
            .map(|b| keep_highest(&head_scores(b), head_ratio))
            .collect(),
        hidden: blocks
            .iter()
            .map(|b| keep_highest(&hidden_scores(b), mlp_ratio))
            .collect(),
    })
}

/// The smaller model that keeps what `plan` says.
pub fn prune_transformer(
    model: KeenModel,
    plan: &TransformerPrunePlan,
) -> Result<KeenModel, CompressError> {
    let depth = model.transformer_blocks().map_or(0, <[Block]>::len);
    if plan.heads.len() != depth || plan.hidden.len() != depth {
        return Err(CompressError::BadConfig(format!(
            "the plan covers {} blocks, the model has {depth}",
            plan.heads.len()
        )));
    }
    Ok(model
        .map_transformer_blocks(&mut |i, block| block.retain(&plan.heads[i], &plan.hidden[i]))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use keen_models::{build_model, trainable_params, ImageClassifier, ModelSpec};

    fn vit(name: &str, device: &Device) -> KeenModel {
        build_model(&ModelSpec::new(name, [1, 28, 28], 10), device).expect("model")
    }

    #[test]
    fn keep_highest_drops_the_lowest_and_keeps_one() {
        assert_eq!(keep_highest(&[0.3, 0.1, 0.4, 0.2], 0.5), vec![0, 2]);
        assert_eq!(keep_highest(&[0.3, 0.1, 0.4, 0.2], 0.25), vec![0, 2, 3]);
        assert_eq!(keep_highest(&[0.3, 0.1], 0.99), vec![0]);
        assert_eq!(keep_highest(&[1.0, 1.0, 1.0], 0.34), vec![0, 1]);
    }

    #[test]
    fn head_scores_sum_the_heads_own_weights() {
        let device = Device::flex();
        let model = vit("vit-tiny", &device);
        let block = &model.transformer_blocks().expect("blocks")[0];
        let scores = head_scores(block);
        assert_eq!(scores.len(), 4);
        // The four heads' groups partition qkv and proj, so their squares add up to those
        // matrices' squared norms.
        let attn = block.attention();
        let total = |t: Tensor<2>| t.powi_scalar(2).sum().into_scalar::<f32>();
        let bias = attn
            .qkv()
            .bias
            .as_ref()
            .map_or(0.0, |b| b.val().powi_scalar(2).sum().into_scalar::<f32>());
        let expected = total(attn.qkv().weight.val()) + bias + total(attn.proj().weight.val());
        let sum: f32 = scores.iter().map(|s| s * s).sum();
        assert!(
            (sum - expected).abs() < 1e-3 * expected,
            "{sum} vs {expected}"
        );
        assert_eq!(hidden_scores(block).len(), 128);
    }

    #[test]
    fn head_pruning_equals_zeroing_the_removed_heads() {
        let device = Device::flex();
        for name in ["vit-tiny", "deit-tiny"] {
            let model = vit(name, &device);
            let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
            let plan = plan_transformer(&model, 0.5, 0.0).expect("plan");
            assert!(plan.heads.iter().all(|kept| kept.len() == 2));
            let removed = plan.removed_heads(model.transformer_blocks().expect("blocks"));
            let pruned = prune_transformer(model.clone(), &plan).expect("prune");
            let zeroed = model
                .clone()
                .map_transformer_blocks(&mut |i, b| b.zero_heads(&removed[i]))
                .expect("zero");
            pruned
                .forward(images.clone())
                .into_data()
                .assert_approx_eq::<f32>(
                    &zeroed.forward(images.clone()).into_data(),
                    Tolerance::absolute(1e-4),
                );
            // Every kept head of the first block sees the same tokens and computes the same.
            let tokens = Tensor::<3>::random([2, 50, 64], Distribution::Default, &device);
            let original = &model.transformer_blocks().expect("blocks")[0];
            let smaller = &pruned.transformer_blocks().expect("blocks")[0];
            let (before, _) = original.attention().head_outputs(tokens.clone());
            let (after, _) = smaller.attention().head_outputs(tokens);
            for (new, &old) in plan.heads[0].iter().enumerate() {
                after
                    .clone()
                    .narrow(1, new, 1)
                    .into_data()
                    .assert_approx_eq::<f32>(
                        &before.clone().narrow(1, old, 1).into_data(),
                        Tolerance::absolute(1e-6),
                    );
            }
            assert!(trainable_params(&pruned) < trainable_params(&model));
            assert!(pruned.macs([1, 28, 28]) < model.macs([1, 28, 28]));
        }
    }

    #[test]
    fn mlp_pruning_keeps_the_model_type_and_saves_and_loads() {
        let device = Device::flex();
        let model = vit("vit-tiny", &device);
        let plan = plan_transformer(&model, 0.25, 0.25).expect("plan");
        assert!(plan.hidden.iter().all(|kept| kept.len() == 96));
        let pruned = prune_transformer(model, &plan).expect("prune");
        assert!(matches!(pruned, KeenModel::Vit(_)));
        let spec = ModelSpec::new("vit-tiny", [1, 28, 28], 10);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pruned.safetensors");
        keen_models::weights::save(&pruned, &spec, &Default::default(), &path).expect("save");
        let loaded = keen_models::weights::load(&path, &device).expect("load");
        assert_eq!(trainable_params(&loaded.model), trainable_params(&pruned));
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        loaded
            .model
            .forward(images.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &pruned.forward(images).into_data(),
                Tolerance::absolute(1e-5),
            );
    }

    #[test]
    fn cnns_and_bad_ratios_are_refused() {
        let device = Device::flex();
        let cnn = build_model(&ModelSpec::new("cnn-small", [1, 28, 28], 10), &device).expect("cnn");
        assert!(plan_transformer(&cnn, 0.25, 0.25).is_err());
        let model = vit("vit-tiny", &device);
        assert!(plan_transformer(&model, 1.0, 0.0).is_err());
        assert!(plan_transformer(&model, 0.0, -0.1).is_err());
    }
}
