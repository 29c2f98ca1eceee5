//! A model as a graph of layers: the form keen compresses, quantizes and exports.
//!
//! Every registry CNN lowers itself to a [`GraphNet`] (`KeenModel::to_graph`), which computes
//! exactly what the original model computes. A graph can then be changed in ways a hand-written
//! burn module cannot: batch norm folded into convolutions, channels removed along their
//! dependencies, fake quantization inserted after each layer. The graph is also what the
//! exporter walks to write a model for keen-runtime or ONNX.
//!
//! A graph is a list of nodes in topological order. Value 0 is the input image; node `i` writes
//! value `i + 1`. Layers with weights (convolution, batch norm, linear) refer to burn modules
//! held by the [`GraphNet`], in the order their nodes appear.

mod builder;
mod gradient;
mod net;
pub mod quant;

pub use builder::GraphBuilder;
pub use gradient::ClassGradient;
pub use net::{infer_shapes, layer_slots, quant_points, GraphNet, Value};

use serde::{Deserialize, Serialize};

/// Index of a value: 0 is the input, `i + 1` the output of node `i`.
pub type ValueId = usize;

/// What a node computes. Layer variants carry their shapes so a saved graph can be rebuilt before
/// its weights are loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpDef {
    /// 2-D convolution (weights `[out, in / groups, kh, kw]`), symmetric padding.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Zero padding on each side (height, width).
        padding: [usize; 2],
        /// Channel groups (equal to the channel count for a depthwise convolution).
        groups: usize,
        /// Whether the convolution adds a bias.
        bias: bool,
    },
    /// Batch normalisation over channels.
    BatchNorm {
        /// Channels.
        channels: usize,
        /// Numerical-stability constant.
        epsilon: f64,
    },
    /// Fully-connected layer.
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Whether the layer adds a bias.
        bias: bool,
    },
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// Max pooling with a square window.
    MaxPool2d {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Mean over height and width: `[n, c, h, w]` → `[n, c]`.
    GlobalAvgPool,
    /// `[n, c, h, w]` → `[n, c·h·w]`, channel-major.
    Flatten,
    /// Element-wise sum of two values of the same shape.
    Add,
}

impl OpDef {
    /// Whether the node holds weights.
    pub fn is_layer(&self) -> bool {
        matches!(
            self,
            OpDef::Conv2d { .. } | OpDef::BatchNorm { .. } | OpDef::Linear { .. }
        )
    }

    /// Whether the node's output is a quantization point when it stands alone: layers whose
    /// results the INT8 runtime requantizes. Activations after them are fused into them.
    pub fn produces_new_range(&self) -> bool {
        matches!(
            self,
            OpDef::Conv2d { .. }
                | OpDef::Linear { .. }
                | OpDef::BatchNorm { .. }
                | OpDef::Add
                | OpDef::GlobalAvgPool
        )
    }

    /// Whether the op is an activation that the runtime fuses into the layer before it.
    pub fn is_activation(&self) -> bool {
        matches!(self, OpDef::Relu | OpDef::Relu6)
    }
}

/// One node: a name (for reports), its op and the values it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDef {
    /// A readable path such as `blocks.3.conv1`.
    pub name: String,
    /// What it computes.
    #[serde(flatten)]
    pub op: OpDef,
    /// The values it reads, in order.
    pub inputs: Vec<ValueId>,
}

/// A whole graph: its input shape, nodes, and which values are the features and the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphDef {
    /// `[channels, height, width]` of one image.
    pub input: [usize; 3],
    /// Nodes in topological order.
    pub nodes: Vec<NodeDef>,
    /// The pooled feature vector (what `forward_features` returns).
    pub features: ValueId,
    /// The logits.
    pub output: ValueId,
}

impl GraphDef {
    /// The nodes that read `value`.
    pub fn consumers(&self, value: ValueId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].inputs.contains(&value))
            .collect()
    }

    /// Checks that every node reads only earlier values, with the right number of inputs, and
    /// that the features and output exist.
    pub fn validate(&self) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            let arity = if node.op == OpDef::Add { 2 } else { 1 };
            if node.inputs.len() != arity {
                return Err(format!(
                    "node {i} '{}' reads {} values, expected {arity}",
                    node.name,
                    node.inputs.len()
                ));
            }
            if let Some(&bad) = node.inputs.iter().find(|&&v| v > i) {
                return Err(format!(
                    "node {i} '{}' reads value {bad}, which is not computed before it",
                    node.name
                ));
            }
        }
        let values = self.nodes.len();
        if self.output == 0 || self.output > values || self.features > self.output {
            return Err(format!(
                "features {} and output {} must be values of the graph (1..={values}), features first",
                self.features, self.output
            ));
        }
        Ok(())
    }
}
