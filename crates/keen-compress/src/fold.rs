//! Batch-norm folding: a convolution followed by batch norm becomes one convolution with a bias.
//!
//! In inference, `bn(conv(x)) = γ·(W∗x + b − μ)/√(σ² + ε) + β`, which is a convolution with
//! weights `W·s` and bias `(b − μ)·s + β` where `s = γ/√(σ² + ε)` per output channel. Quantization
//! needs this first: the runtime has no batch norm, and the INT8 weight ranges must be those of the
//! folded weights.

use burn::module::Param;
use burn::prelude::*;
use keen_models::graph::{GraphNet, OpDef};

use crate::edit::{EditableGraph, Layer};

/// Folds every batch norm whose input is a convolution read by nothing else. Returns the graph
/// and how many batch norms were folded. Run it on an inference model (running statistics).
pub fn fold_batch_norms(graph: GraphNet) -> (GraphNet, usize) {
    let mut editable = EditableGraph::from_graph(graph);
    let mut folded = 0;
    let mut i = 0;
    while i < editable.nodes.len() {
        let input = editable.nodes[i].0.inputs[0];
        let foldable = matches!(editable.nodes[i].0.op, OpDef::BatchNorm { .. })
            && input > 0
            && matches!(editable.nodes[input - 1].0.op, OpDef::Conv2d { .. })
            && editable.consumers(input).len() == 1;
        if !foldable {
            i += 1;
            continue;
        }
        let Layer::Norm(bn) = editable.nodes[i].1.clone() else {
            i += 1;
            continue;
        };
        let conv_index = input - 1;
        if let (node, Layer::Conv(conv)) = &mut editable.nodes[conv_index] {
            let scale = bn
                .gamma
                .val()
                .div(bn.running_var.value().add_scalar(bn.epsilon).sqrt());
            let [out, _, _, _] = conv.weight.dims();
            let weight = conv.weight.val().mul(scale.clone().reshape([out, 1, 1, 1]));
            let bias = match &conv.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([out], &scale.device()),
            };
            let bias = (bias - bn.running_mean.value()) * scale + bn.beta.val();
            conv.weight = Param::from_tensor(weight.detach());
            conv.bias = Some(Param::from_tensor(bias.detach()));
            if let OpDef::Conv2d { bias, .. } = &mut node.op {
                *bias = true;
            }
        }
        editable.bypass(i);
        folded += 1;
    }
    (editable.into_graph(), folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use keen_models::{build_model, ImageClassifier, ModelSpec};

    /// Gives every batch norm non-trivial statistics and affine terms, so folding is tested on
    /// more than the identity.
    fn perturb_norms(mut graph: GraphNet, device: &Device) -> GraphNet {
        for bn in &mut graph.norms {
            let [c] = bn.gamma.dims();
            let r =
                |lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
            bn.gamma = Param::from_tensor(r(0.5, 1.5));
            bn.beta = Param::from_tensor(r(-0.5, 0.5));
            bn.running_mean = burn::module::RunningState::new(r(-0.3, 0.3));
            bn.running_var = burn::module::RunningState::new(r(0.5, 2.0));
        }
        graph
    }

    #[test]
    fn folding_keeps_the_outputs_of_every_cnn() {
        let device = Device::flex();
        for (name, norms) in [("resnet8", 9), ("mobilenet-v2-tiny", 22), ("cnn-small", 0)] {
            let spec = ModelSpec::new(name, [1, 28, 28], 10);
            device.seed(5);
            let model = build_model(&spec, &device).unwrap();
            let graph = perturb_norms(model.to_graph([1, 28, 28]).unwrap(), &device);
            let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
            let expected = graph.forward(images.clone()).into_data();
            let before = graph.norms.len();
            let (folded, count) = fold_batch_norms(graph);
            assert_eq!(count, before, "{name}: every batch norm follows a conv");
            assert_eq!(count, norms, "{name}");
            assert!(folded.norms.is_empty());
            assert!(folded
                .graph()
                .nodes
                .iter()
                .all(|n| !matches!(n.op, OpDef::BatchNorm { .. })));
            let actual = folded.forward(images).into_data();
            actual.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-4));
        }
    }
}
