//! [`GraphBuilder`]: how a model lowers itself to a [`GraphNet`], one layer at a time.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};

use super::quant::QuantState;
use super::{GraphDef, GraphNet, NodeDef, OpDef, ValueId};

/// Collects nodes and clones of the model's modules in order.
pub struct GraphBuilder {
    input: [usize; 3],
    nodes: Vec<NodeDef>,
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
    linears: Vec<Linear>,
}

impl GraphBuilder {
    /// A graph reading images of `[channels, height, width]`; the input is value 0.
    pub fn new(input: [usize; 3]) -> Self {
        Self {
            input,
            nodes: Vec::new(),
            convs: Vec::new(),
            norms: Vec::new(),
            linears: Vec::new(),
        }
    }

    /// The input image's value.
    pub fn input(&self) -> ValueId {
        0
    }

    fn push(&mut self, name: &str, op: OpDef, inputs: Vec<ValueId>) -> ValueId {
        self.nodes.push(NodeDef {
            name: name.to_string(),
            op,
            inputs,
        });
        self.nodes.len()
    }

    /// A convolution (symmetric explicit or no padding).
    pub fn conv(&mut self, name: &str, conv: &Conv2d, x: ValueId) -> ValueId {
        let [out_channels, in_per_group, kh, kw] = conv.weight.dims();
        let padding = match conv.padding {
            PaddingConfig2d::Explicit(top, left, _, _) => [top, left],
            PaddingConfig2d::Valid => [0, 0],
            // keen's models use explicit padding; `Same` with stride 1 and odd kernels is k / 2.
            PaddingConfig2d::Same => [kh / 2, kw / 2],
        };
        self.convs.push(conv.clone());
        self.push(
            name,
            OpDef::Conv2d {
                in_channels: in_per_group * conv.groups,
                out_channels,
                kernel: [kh, kw],
                stride: conv.stride,
                padding,
                groups: conv.groups,
                bias: conv.bias.is_some(),
            },
            vec![x],
        )
    }

    /// A batch norm.
    pub fn batch_norm(&mut self, name: &str, bn: &BatchNorm, x: ValueId) -> ValueId {
        let [channels] = bn.gamma.dims();
        self.norms.push(bn.clone());
        self.push(
            name,
            OpDef::BatchNorm {
                channels,
                epsilon: bn.epsilon,
            },
            vec![x],
        )
    }

    /// A linear layer.
    pub fn linear(&mut self, name: &str, linear: &Linear, x: ValueId) -> ValueId {
        let [in_features, out_features] = linear.weight.dims();
        self.linears.push(linear.clone());
        self.push(
            name,
            OpDef::Linear {
                in_features,
                out_features,
                bias: linear.bias.is_some(),
            },
            vec![x],
        )
    }

    /// An op without weights.
    pub fn op(&mut self, name: &str, op: OpDef, inputs: &[ValueId]) -> ValueId {
        self.push(name, op, inputs.to_vec())
    }

    /// Finishes the graph; `features` is the pooled feature vector, `output` the logits.
    pub fn finish(self, features: ValueId, output: ValueId) -> GraphNet {
        let values = self.nodes.len() + 1;
        GraphNet {
            convs: self.convs,
            norms: self.norms,
            linears: self.linears,
            def: GraphDef {
                input: self.input,
                nodes: self.nodes,
                features,
                output,
            },
            quant: QuantState::new(values),
        }
    }
}
