//! Taking a [`GraphNet`] apart into nodes with their layers, and putting it back together:
//! what folding and channel pruning edit.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use keen_models::graph::quant::QuantState;
use keen_models::graph::{GraphDef, GraphNet, NodeDef, OpDef, ValueId};

/// The weights a node owns.
#[derive(Debug, Clone)]
pub enum Layer {
    /// No weights.
    None,
    /// A convolution.
    Conv(Conv2d),
    /// A batch norm.
    Norm(BatchNorm),
    /// A linear layer.
    Linear(Linear),
}

/// A graph as an editable list of nodes with their layers.
#[derive(Debug, Clone)]
pub struct EditableGraph {
    /// `[channels, height, width]` of the input.
    pub input: [usize; 3],
    /// Nodes with their layers, in topological order (node `i` writes value `i + 1`).
    pub nodes: Vec<(NodeDef, Layer)>,
    /// The features value.
    pub features: ValueId,
    /// The logits value.
    pub output: ValueId,
    /// Quantization settings and ranges (indexed by value).
    pub quant: QuantState,
}

impl EditableGraph {
    /// Takes `graph` apart.
    pub fn from_graph(graph: GraphNet) -> Self {
        let GraphNet {
            convs,
            norms,
            linears,
            def,
            quant,
        } = graph;
        let (mut convs, mut norms, mut linears) =
            (convs.into_iter(), norms.into_iter(), linears.into_iter());
        let nodes = def
            .nodes
            .into_iter()
            .map(|node| {
                let layer = match node.op {
                    OpDef::Conv2d { .. } => convs.next().map(Layer::Conv),
                    OpDef::BatchNorm { .. } => norms.next().map(Layer::Norm),
                    OpDef::Linear { .. } => linears.next().map(Layer::Linear),
                    _ => Some(Layer::None),
                };
                (node, layer.unwrap_or(Layer::None))
            })
            .collect();
        Self {
            input: def.input,
            nodes,
            features: def.features,
            output: def.output,
            quant: quant.detached(),
        }
    }

    /// Puts the graph back together.
    pub fn into_graph(self) -> GraphNet {
        let (mut convs, mut norms, mut linears) = (Vec::new(), Vec::new(), Vec::new());
        let mut defs = Vec::with_capacity(self.nodes.len());
        for (node, layer) in self.nodes {
            match layer {
                Layer::Conv(c) => convs.push(c),
                Layer::Norm(n) => norms.push(n),
                Layer::Linear(l) => linears.push(l),
                Layer::None => {}
            }
            defs.push(node);
        }
        GraphNet {
            convs,
            norms,
            linears,
            def: GraphDef {
                input: self.input,
                nodes: defs,
                features: self.features,
                output: self.output,
            },
            quant: self.quant,
        }
    }

    /// The nodes reading `value`.
    pub fn consumers(&self, value: ValueId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].0.inputs.contains(&value))
            .collect()
    }

    /// Removes node `index` (one input), letting its readers read its input instead.
    pub fn bypass(&mut self, index: usize) {
        let removed = index + 1;
        let replacement = self.nodes[index].0.inputs[0];
        let remap = |v: ValueId| -> ValueId {
            if v == removed {
                replacement
            } else if v > removed {
                v - 1
            } else {
                v
            }
        };
        self.nodes.remove(index);
        for (node, _) in &mut self.nodes {
            for input in &mut node.inputs {
                *input = remap(*input);
            }
        }
        self.features = remap(self.features);
        self.output = remap(self.output);
        let mut ranges = self.quant.ranges();
        if removed < ranges.len() {
            ranges.remove(removed);
        }
        self.quant.set_ranges(ranges);
        let floats = &mut self.quant.config.float_nodes;
        floats.retain(|&n| n != index);
        for n in floats.iter_mut() {
            if *n > index {
                *n -= 1;
            }
        }
    }
}
