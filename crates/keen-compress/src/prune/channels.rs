//! Structured pruning: whole channels removed from the model, so that it really has fewer
//! parameters and FLOPs and runs faster.
//!
//! Channels are coupled: a residual addition forces its two inputs and its output to keep the same
//! channels, and so do batch norm, activations, pooling and depthwise convolutions, which work per
//! channel. Following Fang et al. (2023, "DepGraph"), the graph's values are grouped by a
//! union-find over these couplings; each group is pruned as one, with a channel's importance summed
//! over every layer that produces it. A convolution or linear layer starts a new group with its
//! output; the network's input and logits are never pruned.

use std::collections::BTreeMap;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use keen_models::graph::{infer_shapes, GraphNet, OpDef, ValueId};
use serde::{Deserialize, Serialize};

use crate::edit::{EditableGraph, Layer};

/// How a channel's importance is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelCriterion {
    /// L1 norm of the filters producing the channel (Li et al. 2017), each layer's norms scaled
    /// by their mean so that layers of different scale weigh alike.
    L1,
    /// Magnitude of the batch-norm scale γ (Liu et al. 2017, network slimming); groups without
    /// batch norm fall back to L1.
    BnScale,
}

/// A set of coupled values whose channels are pruned together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelGroup {
    /// The values of the group.
    pub values: Vec<ValueId>,
    /// Channels of each value.
    pub channels: usize,
    /// Whether the group may be pruned (not the input, the logits, or a grouped convolution's).
    pub prunable: bool,
    /// A readable name: the first layer producing it.
    pub name: String,
}

/// The dependency groups of `graph`, and for each value the group it belongs to (`None` for
/// values without a channel dimension of their own, such as flattened vectors).
pub fn channel_groups(graph: &GraphNet) -> (Vec<ChannelGroup>, Vec<Option<usize>>) {
    let def = graph.graph();
    let values = def.nodes.len() + 1;
    let shapes = infer_shapes(def).unwrap_or_default();
    let mut parent: Vec<usize> = (0..values).collect();
    fn find(parent: &mut [usize], v: usize) -> usize {
        let mut root = v;
        while parent[root] != root {
            root = parent[root];
        }
        let mut v = v;
        while parent[v] != root {
            let next = parent[v];
            parent[v] = root;
            v = next;
        }
        root
    }
    let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            parent[rb] = ra;
        }
    };
    let mut frozen = vec![false; values];
    let mut has_channels = vec![true; values];
    for (i, node) in def.nodes.iter().enumerate() {
        let out = i + 1;
        let input = node.inputs[0];
        match &node.op {
            OpDef::BatchNorm { .. }
            | OpDef::Relu
            | OpDef::Relu6
            | OpDef::MaxPool2d { .. }
            | OpDef::GlobalAvgPool => union(&mut parent, input, out),
            OpDef::Add => {
                union(&mut parent, node.inputs[0], out);
                union(&mut parent, node.inputs[1], out);
            }
            OpDef::Conv2d {
                in_channels,
                out_channels,
                groups,
                ..
            } => {
                if *groups == *in_channels && *groups == *out_channels && *groups > 1 {
                    union(&mut parent, input, out);
                } else if *groups != 1 {
                    frozen[input] = true;
                    frozen[out] = true;
                }
            }
            OpDef::Linear { .. } => {}
            OpDef::Flatten => has_channels[out] = false,
        }
    }
    frozen[0] = true;
    frozen[def.output] = true;
    let mut group_of_root: BTreeMap<usize, usize> = BTreeMap::new();
    let mut groups: Vec<ChannelGroup> = Vec::new();
    let mut membership = vec![None; values];
    for v in 0..values {
        if !has_channels[v] {
            continue;
        }
        let root = find(&mut parent, v);
        let index = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(ChannelGroup {
                values: Vec::new(),
                channels: shapes.get(v).and_then(|s| s.first().copied()).unwrap_or(0),
                prunable: true,
                name: if v == 0 {
                    "input".into()
                } else {
                    def.nodes[v - 1].name.clone()
                },
            });
            groups.len() - 1
        });
        groups[index].values.push(v);
        if frozen[v] {
            groups[index].prunable = false;
        }
        membership[v] = Some(index);
    }
    (groups, membership)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Importance of each channel of each group.
pub fn channel_importance(graph: &GraphNet, criterion: ChannelCriterion) -> Vec<Vec<f32>> {
    let (groups, membership) = channel_groups(graph);
    let def = graph.graph();
    let slots = keen_models::graph::layer_slots(def);
    let mut l1 = vec![vec![0.0f32; 0]; groups.len()];
    let mut bn = vec![vec![0.0f32; 0]; groups.len()];
    for (g, group) in groups.iter().enumerate() {
        l1[g] = vec![0.0; group.channels];
        bn[g] = vec![0.0; group.channels];
    }
    let add_scaled = |acc: &mut Vec<f32>, norms: Vec<f32>| {
        let mean = norms.iter().sum::<f32>() / norms.len().max(1) as f32;
        if mean > 0.0 && acc.len() == norms.len() {
            for (a, n) in acc.iter_mut().zip(norms) {
                *a += n / mean;
            }
        }
    };
    for (i, node) in def.nodes.iter().enumerate() {
        let Some(g) = membership[i + 1] else {
            continue;
        };
        match &node.op {
            OpDef::Conv2d { .. } => {
                let weight = graph.convs[slots[i]].weight.val();
                let [out, a, b, c] = weight.dims();
                let norms = to_vec(weight.abs().reshape([out, a * b * c]).sum_dim(1));
                add_scaled(&mut l1[g], norms);
            }
            OpDef::Linear { .. } => {
                let weight = graph.linears[slots[i]].weight.val();
                let norms = to_vec(weight.abs().sum_dim(0));
                add_scaled(&mut l1[g], norms);
            }
            OpDef::BatchNorm { .. } => {
                let gamma = to_vec(graph.norms[slots[i]].gamma.val().abs());
                add_scaled(&mut bn[g], gamma);
            }
            _ => {}
        }
    }
    (0..groups.len())
        .map(|g| match criterion {
            ChannelCriterion::BnScale if bn[g].iter().any(|v| *v > 0.0) => bn[g].clone(),
            _ => l1[g].clone(),
        })
        .collect()
}

/// Which channels each group keeps (sorted), for a pruning `ratio` in [0, 1) of every prunable
/// group's channels.
pub fn plan_channels(
    graph: &GraphNet,
    ratio: f32,
    criterion: ChannelCriterion,
) -> Vec<Option<Vec<usize>>> {
    let (groups, _) = channel_groups(graph);
    let importance = channel_importance(graph, criterion);
    groups
        .iter()
        .zip(importance)
        .map(|(group, scores)| {
            if !group.prunable || group.channels < 2 {
                return None;
            }
            let keep = ((group.channels as f32) * (1.0 - ratio)).round().max(1.0) as usize;
            if keep >= group.channels {
                return None;
            }
            let mut order: Vec<usize> = (0..group.channels).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut kept: Vec<usize> = order.into_iter().take(keep).collect();
            kept.sort_unstable();
            Some(kept)
        })
        .collect()
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

fn select_param<const D: usize>(
    param: &Param<Tensor<D>>,
    dim: usize,
    keep: &[usize],
) -> Param<Tensor<D>> {
    let value = param.val();
    let device = value.device();
    Param::from_tensor(value.select(dim, index_tensor(keep, &device)).detach())
}

/// Removes the channels `plan` drops (from [`plan_channels`]) from every layer they touch.
pub fn remove_channels(graph: GraphNet, plan: &[Option<Vec<usize>>]) -> GraphNet {
    let (_, membership) = channel_groups(&graph);
    let shapes = infer_shapes(graph.graph()).unwrap_or_default();
    let kept_of = |value: ValueId| -> Option<&Vec<usize>> {
        membership
            .get(value)
            .copied()
            .flatten()
            .and_then(|g| plan.get(g))
            .and_then(|p| p.as_ref())
    };
    // Inputs of flattened vectors: channel c becomes features c·k .. (c+1)·k.
    let flat_source: BTreeMap<ValueId, (ValueId, usize)> = graph
        .graph()
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op == OpDef::Flatten)
        .map(|(i, n)| {
            let s = &shapes[n.inputs[0]];
            (
                i + 1,
                (n.inputs[0], s.iter().skip(1).product::<usize>().max(1)),
            )
        })
        .collect();
    let input_keep = |value: ValueId| -> Option<Vec<usize>> {
        if let Some(keep) = kept_of(value) {
            return Some(keep.clone());
        }
        let (source, block) = flat_source.get(&value)?;
        let keep = kept_of(*source)?;
        Some(
            keep.iter()
                .flat_map(|&c| c * block..(c + 1) * block)
                .collect(),
        )
    };
    let mut editable = EditableGraph::from_graph(graph);
    for i in 0..editable.nodes.len() {
        let out_keep = kept_of(i + 1).cloned();
        let in_keep = input_keep(editable.nodes[i].0.inputs[0]);
        let (node, layer) = &mut editable.nodes[i];
        match (&mut node.op, layer) {
            (
                OpDef::Conv2d {
                    in_channels,
                    out_channels,
                    groups,
                    ..
                },
                Layer::Conv(conv),
            ) => {
                let depthwise = *groups > 1 && *groups == *in_channels;
                if let Some(keep) = &out_keep {
                    conv.weight = select_param(&conv.weight, 0, keep);
                    if let Some(bias) = &conv.bias {
                        conv.bias = Some(select_param(bias, 0, keep));
                    }
                    *out_channels = keep.len();
                }
                if depthwise {
                    *in_channels = *out_channels;
                    *groups = *out_channels;
                    conv.groups = *groups;
                } else if let Some(keep) = &in_keep {
                    conv.weight = select_param(&conv.weight, 1, keep);
                    *in_channels = keep.len();
                }
            }
            (OpDef::BatchNorm { channels, .. }, Layer::Norm(bn)) => {
                if let Some(keep) = &out_keep {
                    bn.gamma = select_param(&bn.gamma, 0, keep);
                    bn.beta = select_param(&bn.beta, 0, keep);
                    let device = bn.gamma.val().device();
                    let idx = index_tensor(keep, &device);
                    bn.running_mean =
                        RunningState::new(bn.running_mean.value().select(0, idx.clone()));
                    bn.running_var = RunningState::new(bn.running_var.value().select(0, idx));
                    *channels = keep.len();
                }
            }
            (
                OpDef::Linear {
                    in_features,
                    out_features,
                    ..
                },
                Layer::Linear(linear),
            ) => {
                if let Some(keep) = &out_keep {
                    linear.weight = select_param(&linear.weight, 1, keep);
                    if let Some(bias) = &linear.bias {
                        linear.bias = Some(select_param(bias, 0, keep));
                    }
                    *out_features = keep.len();
                }
                if let Some(keep) = &in_keep {
                    linear.weight = select_param(&linear.weight, 0, keep);
                    *in_features = keep.len();
                }
            }
            _ => {}
        }
    }
    editable.into_graph()
}

/// Zeroes, instead of removing, the weights through which dropped channels reach the layers that
/// read them: the model then computes exactly what the pruned model computes, which is what the
/// tests compare against.
pub fn silence_channels(graph: GraphNet, plan: &[Option<Vec<usize>>]) -> GraphNet {
    let (groups, membership) = channel_groups(&graph);
    let shapes = infer_shapes(graph.graph()).unwrap_or_default();
    let mut editable = EditableGraph::from_graph(graph);
    let masks: Vec<Option<Vec<f32>>> = groups
        .iter()
        .zip(plan)
        .map(|(group, keep)| {
            keep.as_ref().map(|keep| {
                let mut mask = vec![0.0; group.channels];
                for &c in keep {
                    mask[c] = 1.0;
                }
                mask
            })
        })
        .collect();
    for i in 0..editable.nodes.len() {
        let input = editable.nodes[i].0.inputs[0];
        let (mask, block) = match editable.nodes[i].0.op {
            OpDef::Linear { .. }
                if input > 0 && editable.nodes[input - 1].0.op == OpDef::Flatten =>
            {
                let source = editable.nodes[input - 1].0.inputs[0];
                let block: usize = shapes[source].iter().skip(1).product();
                (membership[source].and_then(|g| masks[g].clone()), block)
            }
            _ => (membership[input].and_then(|g| masks[g].clone()), 1),
        };
        let Some(mask) = mask else { continue };
        let mask: Vec<f32> = mask
            .iter()
            .flat_map(|&m| std::iter::repeat_n(m, block))
            .collect();
        let (node, layer) = &mut editable.nodes[i];
        match (&node.op, layer) {
            (OpDef::Conv2d { groups: 1, .. }, Layer::Conv(conv)) => {
                let w = conv.weight.val();
                let n = mask.len();
                let m = Tensor::<1>::from_data(TensorData::new(mask, [n]), &w.device());
                conv.weight = Param::from_tensor((w * m.reshape([1, n, 1, 1])).detach());
            }
            (OpDef::Linear { .. }, Layer::Linear(linear)) => {
                let w = linear.weight.val();
                let n = mask.len();
                let m = Tensor::<1>::from_data(TensorData::new(mask, [n]), &w.device());
                linear.weight = Param::from_tensor((w * m.reshape([n, 1])).detach());
            }
            _ => {}
        }
    }
    editable.into_graph()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use keen_models::{build_model, trainable_params, ImageClassifier, ModelSpec};

    fn graph_of(name: &str) -> GraphNet {
        let device = Device::flex();
        device.seed(11);
        let model = build_model(&ModelSpec::new(name, [1, 28, 28], 10), &device).unwrap();
        let graph = model.to_graph([1, 28, 28]).unwrap();
        // Inference-mode graphs with folded batch norms: what structured pruning meets after
        // training, and BN folding keeps the comparison exact.
        crate::fold_batch_norms(graph).0
    }

    #[test]
    fn resnet_groups_follow_the_residual_stream() {
        let graph = graph_of("resnet20");
        let (groups, membership) = channel_groups(&graph);
        let def = graph.graph();
        // Each stage's residual stream is one group: stem + 3 blocks (16), 3 blocks (32), (64).
        let stream = |name: &str| {
            let node = def.nodes.iter().position(|n| n.name == name).unwrap();
            membership[node + 1].unwrap()
        };
        assert_eq!(stream("stem"), stream("blocks.2.relu2"));
        assert_eq!(stream("blocks.3.relu2"), stream("blocks.5.relu2"));
        assert_ne!(stream("blocks.2.relu2"), stream("blocks.3.relu2"));
        assert_ne!(
            stream("blocks.0.conv1"),
            stream("stem"),
            "inner widths are free"
        );
        assert!(!groups[membership[def.output].unwrap()].prunable);
        assert!(!groups[membership[0].unwrap()].prunable);
    }

    #[test]
    fn removing_channels_keeps_what_the_kept_channels_compute() {
        let device = Device::flex();
        for name in ["resnet8", "mobilenet-v2-tiny", "cnn-small"] {
            let graph = graph_of(name);
            let plan = plan_channels(&graph, 0.5, ChannelCriterion::L1);
            assert!(
                plan.iter().any(|p| p.is_some()),
                "{name}: something to prune"
            );
            let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
            let expected = silence_channels(graph.clone(), &plan)
                .forward(images.clone())
                .into_data();
            let pruned = remove_channels(graph.clone(), &plan);
            let actual = pruned.forward(images).into_data();
            actual.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-4));
            let (before, after) = (trainable_params(&graph), trainable_params(&pruned));
            assert!(after * 2 < before, "{name}: {before} -> {after} parameters");
            assert!(pruned.macs([1, 28, 28]) * 2 < graph.macs([1, 28, 28]));
        }
    }

    #[test]
    fn half_the_channels_of_resnet20_remove_most_parameters_and_flops() {
        let graph = graph_of("resnet20");
        let plan = plan_channels(&graph, 0.5, ChannelCriterion::BnScale);
        let pruned = remove_channels(graph.clone(), &plan);
        let params = trainable_params(&pruned) as f64 / trainable_params(&graph) as f64;
        let macs = pruned.macs([1, 28, 28]) as f64 / graph.macs([1, 28, 28]) as f64;
        assert!(
            params < 0.6 && macs < 0.6,
            "params {params:.2}, MACs {macs:.2}"
        );
    }
}
