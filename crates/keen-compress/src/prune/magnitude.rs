//! Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").
//!
//! During fine-tuning the target sparsity rises from `s_i` to `s_f` along a cubic,
//! `s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(t_1 − t_0))³`: fast at first, when many weights are
//! redundant, slowly near the end. At each of `updates` evenly spaced steps the smallest-magnitude
//! weights (per layer, or across all layers) are masked; after every optimizer step the masks are
//! applied again, so a pruned weight stays exactly zero whatever momentum or weight decay does.
//! Every weight of two or more dimensions (convolutions, linear layers) is prunable; biases and
//! normalisation parameters are not.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::TensorData;
use keen_models::KeenModel;
use keen_train::{LossInputs, ShardInputs, TrainHooks};
use serde::{Deserialize, Serialize};

/// Whether sparsity is reached per layer or across all layers together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneScope {
    /// Every layer reaches the target sparsity.
    Layerwise,
    /// One magnitude threshold for all layers: layers with many small weights lose more.
    Global,
}

/// Which weights magnitude pruning may zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparsityPattern {
    /// Any weight: the sparsity and scope decide.
    #[default]
    Unstructured,
    /// Semi-structured N:M: in every group of `m` consecutive weights along the input
    /// dimension (input channels of a convolution at each kernel position, inputs of a linear
    /// layer) the `n` largest survive. 2:4 is the pattern of NVIDIA's sparse tensor cores. The
    /// masks are set once, at the first step, and held; layers whose input count is not a
    /// multiple of `m` (the first convolution, depthwise convolutions) stay dense.
    NofM {
        /// Weights kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

impl SparsityPattern {
    /// Parses `"2:4"`-style N:M patterns and `"unstructured"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("unstructured") {
            return Ok(Self::Unstructured);
        }
        let parsed = text
            .split_once(':')
            .and_then(|(n, m)| Some((n.trim().parse().ok()?, m.trim().parse().ok()?)));
        match parsed {
            Some((n, m)) if 0 < n && n < m => Ok(Self::NofM { n, m }),
            _ => Err(format!(
                "'{text}' is not a sparsity pattern: use N:M with 0 < N < M (e.g. 2:4) or 'unstructured'"
            )),
        }
    }
}

/// Settings of gradual magnitude pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudePruneConfig {
    /// Sparsity at the end, in [0, 1).
    pub final_sparsity: f32,
    /// Layer-wise or global thresholds.
    pub scope: PruneScope,
    /// Fraction of the run's steps at which pruning ends (the rest fine-tunes the final mask).
    pub end_fraction: f32,
    /// Number of mask updates between the start and `end_fraction`.
    pub updates: usize,
    /// Unstructured, or N:M semi-structured (then `final_sparsity`, `scope` and the schedule
    /// do not apply).
    #[serde(default)]
    pub pattern: SparsityPattern,
}

impl Default for MagnitudePruneConfig {
    fn default() -> Self {
        Self {
            final_sparsity: 0.8,
            scope: PruneScope::Global,
            end_fraction: 0.7,
            updates: 10,
            pattern: SparsityPattern::Unstructured,
        }
    }
}

/// Target sparsity at `step` of a cubic schedule from `initial` (at step `start`) to `target`
/// (at step `end` and after).
pub fn cubic_sparsity(step: usize, start: usize, end: usize, initial: f32, target: f32) -> f32 {
    if step <= start {
        return initial;
    }
    if step >= end || end <= start {
        return target;
    }
    let progress = (step - start) as f32 / (end - start) as f32;
    target + (initial - target) * (1.0 - progress).powi(3)
}

/// Prunable weights by parameter path.
struct CollectWeights {
    path: Vec<String>,
    weights: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for CollectWeights {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D >= 2 {
            let value = param.val();
            let dims = value.dims().to_vec();
            let values = value
                .inner()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            self.weights.insert(self.path.join("."), (dims, values));
        }
    }
}

struct ApplyMasks<'a> {
    path: Vec<String>,
    masks: &'a BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleMapper for ApplyMasks<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((dims, mask)) = self.masks.get(&self.path.join(".")) else {
            return param;
        };
        param.map(|tensor| {
            if tensor.dims().as_slice() != dims.as_slice() {
                return tensor;
            }
            let active = tensor.is_require_grad();
            let mask = Tensor::<D>::from_data(
                TensorData::new(mask.clone(), tensor.dims()),
                &tensor.device(),
            );
            let out = tensor.detach().mul(mask).detach();
            if active {
                out.require_grad()
            } else {
                out
            }
        })
    }
}

/// Masks keeping all but the smallest `sparsity` fraction of weights (by magnitude), per layer
/// or across all.
pub fn magnitude_masks(
    weights: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    sparsity: f32,
    scope: PruneScope,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let threshold_of = |values: &mut Vec<f32>| -> f32 {
        let k = ((values.len() as f32) * sparsity).floor() as usize;
        if k == 0 || values.is_empty() {
            return -1.0;
        }
        let (_, kth, _) = values.select_nth_unstable_by(k - 1, f32::total_cmp);
        *kth
    };
    let global = match scope {
        PruneScope::Global => {
            let mut all: Vec<f32> = weights
                .values()
                .flat_map(|(_, v)| v.iter().map(|x| x.abs()))
                .collect();
            Some(threshold_of(&mut all))
        }
        PruneScope::Layerwise => None,
    };
    weights
        .iter()
        .map(|(path, (dims, values))| {
            let threshold = global.unwrap_or_else(|| {
                let mut mags: Vec<f32> = values.iter().map(|x| x.abs()).collect();
                threshold_of(&mut mags)
            });
            let mask = values
                .iter()
                .map(|v| if v.abs() <= threshold { 0.0 } else { 1.0 })
                .collect();
            (path.clone(), (dims.clone(), mask))
        })
        .collect()
}

/// N:M masks: in each group of `m` consecutive weights along a layer's input dimension, the `n`
/// of largest magnitude are kept (ties: the earlier). Convolution weights are
/// `[out, in, kh, kw]` (groups run over `in` at each kernel position), linear weights burn's
/// `[in, out]` (groups run over `in` for each output). Layers with an input count that is not
/// a multiple of `m` keep every weight.
pub fn n_of_m_masks(
    weights: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    n: usize,
    m: usize,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    weights
        .iter()
        .map(|(path, (dims, values))| {
            let mut mask = vec![1.0f32; values.len()];
            // (inputs, stride between consecutive inputs, the other positions' offsets)
            let layout: Option<(usize, usize, Vec<usize>)> = match dims.as_slice() {
                [out, inputs, kh, kw] => {
                    let (out, inputs, k) = (*out, *inputs, kh * kw);
                    let offsets = (0..out)
                        .flat_map(|o| (0..k).map(move |p| o * inputs * k + p))
                        .collect();
                    Some((inputs, k, offsets))
                }
                [inputs, out] => Some((*inputs, *out, (0..*out).collect())),
                _ => None,
            };
            if let Some((inputs, stride, offsets)) = layout {
                if m > 0 && inputs % m == 0 && inputs >= m {
                    let mut group: Vec<usize> = Vec::with_capacity(m);
                    for base in offsets {
                        for start in (0..inputs).step_by(m) {
                            group.clear();
                            group.extend((start..start + m).map(|i| base + i * stride));
                            // Largest magnitude first; a stable sort keeps the earlier of ties.
                            group.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
                            for &index in &group[n..] {
                                mask[index] = 0.0;
                            }
                        }
                    }
                }
            }
            (path.clone(), (dims.clone(), mask))
        })
        .collect()
}

/// The fraction of prunable weights of `model` that are exactly zero.
pub fn weight_sparsity<M: Module>(model: &M) -> f32 {
    let mut collect = CollectWeights {
        path: Vec::new(),
        weights: BTreeMap::new(),
    };
    model.visit(&mut collect);
    let (zeros, total) = collect
        .weights
        .values()
        .fold((0usize, 0usize), |(z, t), (_, v)| {
            (z + v.iter().filter(|x| **x == 0.0).count(), t + v.len())
        });
    zeros as f32 / total.max(1) as f32
}

/// Training hooks that prune gradually and keep pruned weights at zero; the loss is `inner`'s.
pub struct GradualMagnitudePruner {
    /// The settings.
    pub config: MagnitudePruneConfig,
    /// The loss and identity of what else the run does (plain training or distillation).
    pub inner: Box<dyn TrainHooks>,
    masks: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    sparsity: f32,
}

impl GradualMagnitudePruner {
    /// A pruner around `inner`'s loss.
    pub fn new(config: MagnitudePruneConfig, inner: Box<dyn TrainHooks>) -> Self {
        Self {
            config,
            inner,
            masks: BTreeMap::new(),
            sparsity: 0.0,
        }
    }

    /// The sparsity the masks currently impose.
    pub fn current_sparsity(&self) -> f32 {
        self.sparsity
    }

    /// Applies the current masks to `model`.
    pub fn apply<M: Module>(&self, model: M) -> M {
        model.map(&mut ApplyMasks {
            path: Vec::new(),
            masks: &self.masks,
        })
    }

    fn update_masks<M: Module>(&mut self, model: &M, sparsity: f32) {
        let mut collect = CollectWeights {
            path: Vec::new(),
            weights: BTreeMap::new(),
        };
        model.visit(&mut collect);
        self.masks = magnitude_masks(&collect.weights, sparsity, self.config.scope);
        self.sparsity = sparsity;
    }
}

impl TrainHooks for GradualMagnitudePruner {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "prune": self.config, "inner": self.inner.describe() })
    }

    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        self.inner.loss(inputs, cross_entropy)
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        self.inner.forward_loss(model, shard, cross_entropy)
    }

    fn after_step(&mut self, model: KeenModel, step: usize, total_steps: usize) -> KeenModel {
        let model = self.inner.after_step(model, step, total_steps);
        if let SparsityPattern::NofM { n, m } = self.config.pattern {
            if self.masks.is_empty() {
                let mut collect = CollectWeights {
                    path: Vec::new(),
                    weights: BTreeMap::new(),
                };
                model.visit(&mut collect);
                self.masks = n_of_m_masks(&collect.weights, n, m);
            }
            let model = self.apply(model);
            self.sparsity = weight_sparsity(&model);
            return model;
        }
        let end = ((total_steps as f32) * self.config.end_fraction).round() as usize;
        let every = (end / self.config.updates.max(1)).max(1);
        if self.masks.is_empty() || (step <= end && step.is_multiple_of(every)) {
            // On the first step of a (resumed) run the weights' zeros are the current mask; the
            // schedule then decides where the sparsity goes next.
            let target = if step.is_multiple_of(every) || step >= end {
                cubic_sparsity(step, 0, end, 0.0, self.config.final_sparsity)
            } else {
                weight_sparsity(&model)
            };
            self.update_masks(&model, target);
        }
        self.apply(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
    use keen_models::{build_model, ImageClassifier, ModelSpec};

    #[test]
    fn cubic_schedule_starts_ends_and_front_loads() {
        assert_eq!(cubic_sparsity(0, 0, 100, 0.0, 0.8), 0.0);
        assert_eq!(cubic_sparsity(100, 0, 100, 0.0, 0.8), 0.8);
        assert_eq!(cubic_sparsity(500, 0, 100, 0.0, 0.8), 0.8);
        let half = cubic_sparsity(50, 0, 100, 0.0, 0.8);
        assert!((half - 0.8 * (1.0 - 0.125)).abs() < 1e-6, "{half}");
        let mut last = 0.0;
        for step in 0..=100 {
            let s = cubic_sparsity(step, 0, 100, 0.0, 0.8);
            assert!(s >= last);
            last = s;
        }
    }

    #[test]
    fn masks_reach_the_sparsity_layerwise_and_globally() {
        let mut weights = BTreeMap::new();
        weights.insert(
            "a".to_string(),
            (vec![2, 5], (0..10).map(|i| i as f32).collect()),
        );
        weights.insert(
            "b".to_string(),
            (vec![10, 1], (0..10).map(|i| 100.0 + i as f32).collect()),
        );
        let layerwise = magnitude_masks(&weights, 0.5, PruneScope::Layerwise);
        for (_, mask) in layerwise.values() {
            assert_eq!(mask.iter().filter(|m| **m == 0.0).count(), 5);
        }
        let global = magnitude_masks(&weights, 0.5, PruneScope::Global);
        assert!(
            global["a"].1.iter().all(|m| *m == 0.0),
            "small layer pruned first"
        );
        assert!(global["b"].1.iter().all(|m| *m == 1.0));
    }

    #[test]
    fn two_of_four_keeps_the_two_largest_of_every_group() {
        let mut weights = BTreeMap::new();
        // Linear [in 8, out 2]: output 0 reads column 0, output 1 column 1.
        let linear: Vec<f32> = vec![
            1.0, -8.0, //
            -5.0, 7.0, //
            3.0, 0.5, //
            2.0, 6.0, //
            0.1, 1.0, //
            0.2, 2.0, //
            0.3, 3.0, //
            -0.4, 4.0,
        ];
        weights.insert("fc".to_string(), (vec![8, 2], linear));
        // Conv [out 1, in 4, 1, 2]: groups over the 4 inputs at each of the 2 positions.
        let conv: Vec<f32> = vec![1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0];
        weights.insert("conv".to_string(), (vec![1, 4, 1, 2], conv));
        // Conv with 3 inputs: not a multiple of 4, stays dense.
        weights.insert("stem".to_string(), (vec![2, 3, 1, 1], vec![1.0; 6]));
        let masks = n_of_m_masks(&weights, 2, 4);
        let fc = &masks["fc"].1;
        // Output 0, inputs 0..4: |1, -5, 3, 2| keeps -5 and 3; inputs 4..8 keeps 0.3 and -0.4.
        let column = |col: usize| (0..8).map(|i| fc[i * 2 + col]).collect::<Vec<_>>();
        assert_eq!(column(0), [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(column(1), [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        // Position 0 reads [1, 2, 3, 4] → keeps 3, 4; position 1 reads [9, 8, 7, 6] → keeps 9, 8.
        assert_eq!(masks["conv"].1, [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
        assert!(masks["stem"].1.iter().all(|m| *m == 1.0));
        for mask in [&masks["fc"].1, &masks["conv"].1] {
            assert_eq!(mask.iter().filter(|m| **m == 0.0).count() * 2, mask.len());
        }
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            SparsityPattern::parse("2:4"),
            Ok(SparsityPattern::NofM { n: 2, m: 4 })
        );
        assert_eq!(
            SparsityPattern::parse("unstructured"),
            Ok(SparsityPattern::Unstructured)
        );
        for bad in ["4:2", "0:4", "2-4", "x:4", ""] {
            assert!(SparsityPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn two_of_four_masks_hold_through_training_steps() {
        let device = Device::flex().autodiff();
        let spec = ModelSpec::new("cnn-small", [1, 28, 28], 10);
        device.seed(5);
        let mut model = build_model(&spec, &device).unwrap();
        let mut pruner = GradualMagnitudePruner::new(
            MagnitudePruneConfig {
                pattern: SparsityPattern::NofM { n: 2, m: 4 },
                ..MagnitudePruneConfig::default()
            },
            Box::new(keen_train::PlainTraining),
        );
        let mut optimizer: ModuleOptimizer = SgdConfig::new().init();
        for step in 1..=3 {
            model = pruner.after_step(model, step, 3);
            let mut collect = CollectWeights {
                path: Vec::new(),
                weights: BTreeMap::new(),
            };
            model.visit(&mut collect);
            // conv1 has one input channel (dense); conv2, fc1 and the head are 2:4.
            for (path, (dims, values)) in &collect.weights {
                let inputs = if dims.len() == 4 { dims[1] } else { dims[0] };
                let zeros = values.iter().filter(|v| **v == 0.0).count();
                if inputs % 4 == 0 {
                    assert_eq!(zeros * 2, values.len(), "{path} after step {step}");
                } else {
                    assert_eq!(zeros, 0, "{path} stays dense");
                }
            }
            let images = Tensor::<4>::ones([2, 1, 28, 28], &device);
            let loss = model.forward(images).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.1, model, grads);
        }
    }

    #[test]
    fn pruned_weights_stay_zero_after_optimizer_steps() {
        let device = Device::flex().autodiff();
        let spec = ModelSpec::new("cnn-small", [1, 28, 28], 10);
        device.seed(9);
        let model = build_model(&spec, &device).unwrap();
        let mut pruner = GradualMagnitudePruner::new(
            MagnitudePruneConfig {
                final_sparsity: 0.7,
                scope: PruneScope::Layerwise,
                end_fraction: 0.5,
                updates: 1,
                pattern: SparsityPattern::Unstructured,
            },
            Box::new(keen_train::PlainTraining),
        );
        // Step 2 of 4 ends the schedule: the masks reach 70%.
        let mut model = pruner.after_step(model, 2, 4);
        assert!((weight_sparsity(&model) - 0.7).abs() < 0.01);
        let mut optimizer: ModuleOptimizer = SgdConfig::new().init();
        for step in 3..=4 {
            let images = Tensor::<4>::ones([2, 1, 28, 28], &device);
            let loss = model.forward(images).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.1, model, grads);
            assert!(
                weight_sparsity(&model) < 0.69,
                "the raw update revives pruned weights"
            );
            model = pruner.after_step(model, step, 4);
            assert!(
                (weight_sparsity(&model) - 0.7).abs() < 0.01,
                "masks hold after step {step}"
            );
        }
    }
}
