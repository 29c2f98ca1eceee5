//! [`GraphNet`]: a burn module that runs a [`GraphDef`], optionally with fake quantization.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use keen_kernels::{conv2d, max_pool2d};

use super::quant::{
    fake_quant_activation, fake_quant_conv_weight, fake_quant_linear_weight, QuantRecord,
    QuantState,
};
use super::{GraphDef, NodeDef, OpDef, ValueId};
use crate::flops::{conv2d_macs, linear_macs};
use crate::{ImageClassifier, ModelError};

/// A model held as a graph of layers. Layer nodes use the modules in `convs`, `norms` and
/// `linears` in the order the nodes appear.
#[derive(Module, Debug)]
pub struct GraphNet {
    /// Convolutions, in node order.
    pub convs: Vec<Conv2d>,
    /// Batch norms, in node order.
    pub norms: Vec<BatchNorm>,
    /// Linear layers, in node order.
    pub linears: Vec<Linear>,
    /// The structure.
    #[module(skip)]
    pub def: GraphDef,
    /// Quantization settings and activation ranges.
    #[module(skip)]
    pub quant: QuantState,
}

/// A value flowing through the graph: a feature map or a vector per image.
#[derive(Clone, Debug)]
pub enum Value {
    /// `[n, c, h, w]`.
    Map(Tensor<4>),
    /// `[n, features]`.
    Vector(Tensor<2>),
}

impl Value {
    fn map(self, node: &NodeDef) -> Tensor<4> {
        match self {
            Value::Map(t) => t,
            Value::Vector(t) => {
                let [n, c] = t.dims();
                // A vector where a map is expected only arises from a malformed graph, which
                // `GraphDef::validate` and shape inference reject before running.
                debug_assert!(false, "node '{}' expected a feature map", node.name);
                t.reshape([n, c, 1, 1])
            }
        }
    }

    fn vector(self) -> Tensor<2> {
        match self {
            Value::Vector(t) => t,
            Value::Map(t) => t.flatten::<2>(1, 3),
        }
    }

    fn min_max(&self) -> [f32; 2] {
        let t = match self {
            Value::Map(t) => t.clone().inner().flatten::<1>(0, 3),
            Value::Vector(t) => t.clone().inner().flatten::<1>(0, 1),
        };
        [
            t.clone().min().into_scalar::<f32>(),
            t.max().into_scalar::<f32>(),
        ]
    }

    fn fake_quant(self, range: [f32; 2]) -> Self {
        match self {
            Value::Map(t) => Value::Map(fake_quant_activation(t, range)),
            Value::Vector(t) => Value::Vector(fake_quant_activation(t, range)),
        }
    }

    fn is_autodiff(&self) -> bool {
        match self {
            Value::Map(t) => t.is_autodiff(),
            Value::Vector(t) => t.is_autodiff(),
        }
    }
}

/// Which module each node uses: its index among nodes of the same layer kind.
pub fn layer_slots(def: &GraphDef) -> Vec<usize> {
    let (mut convs, mut norms, mut linears) = (0, 0, 0);
    def.nodes
        .iter()
        .map(|node| {
            let counter = match node.op {
                OpDef::Conv2d { .. } => &mut convs,
                OpDef::BatchNorm { .. } => &mut norms,
                OpDef::Linear { .. } => &mut linears,
                _ => return usize::MAX,
            };
            *counter += 1;
            *counter - 1
        })
        .collect()
}

/// Whether each value is a quantization point: where the INT8 runtime holds a requantized
/// tensor. The input is one; so is the output of each layer, add and pooling, unless an
/// activation (fused into it) or a batch norm follows it alone; the logits are not (the runtime
/// returns them in float).
pub fn quant_points(def: &GraphDef) -> Vec<bool> {
    let mut points = vec![false; def.nodes.len() + 1];
    points[0] = true;
    for (i, node) in def.nodes.iter().enumerate() {
        let value = i + 1;
        if value == def.output {
            continue;
        }
        let consumers = def.consumers(value);
        let fused_away = consumers.len() == 1
            && matches!(
                def.nodes[consumers[0]].op,
                OpDef::Relu | OpDef::Relu6 | OpDef::BatchNorm { .. }
            );
        points[value] = (node.op.produces_new_range() || node.op.is_activation()) && !fused_away;
    }
    points
}

/// `[channels, height, width]` (or `[features]`) of every value, checking each node's input.
pub fn infer_shapes(def: &GraphDef) -> Result<Vec<Vec<usize>>, String> {
    let mut shapes: Vec<Vec<usize>> = vec![def.input.to_vec()];
    for (i, node) in def.nodes.iter().enumerate() {
        let input = &shapes[node.inputs[0]];
        let bad = |what: String| format!("node {i} '{}': {what}", node.name);
        let shape = match &node.op {
            OpDef::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                if input.len() != 3 || input[0] != *in_channels {
                    return Err(bad(format!(
                        "expects {in_channels} input channels, gets shape {input:?}"
                    )));
                }
                if *groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(bad(format!("groups {groups} do not divide the channels")));
                }
                let out = |size: usize, axis: usize| {
                    (size + 2 * padding[axis])
                        .checked_sub(kernel[axis])
                        .map(|s| s / stride[axis].max(1) + 1)
                };
                match (out(input[1], 0), out(input[2], 1)) {
                    (Some(h), Some(w)) => vec![*out_channels, h, w],
                    _ => return Err(bad(format!("kernel {kernel:?} larger than {input:?}"))),
                }
            }
            OpDef::BatchNorm { channels, .. } => {
                if input.first() != Some(channels) {
                    return Err(bad(format!("expects {channels} channels, gets {input:?}")));
                }
                input.clone()
            }
            OpDef::Linear {
                in_features,
                out_features,
                ..
            } => {
                let features: usize = input.iter().product();
                if features != *in_features {
                    return Err(bad(format!(
                        "expects {in_features} features, gets {features} ({input:?})"
                    )));
                }
                vec![*out_features]
            }
            OpDef::Relu | OpDef::Relu6 => input.clone(),
            OpDef::MaxPool2d { kernel, stride } => {
                if input.len() != 3 || input[1] < *kernel || input[2] < *kernel {
                    return Err(bad(format!("cannot pool {input:?} with window {kernel}")));
                }
                let s = (*stride).max(1);
                vec![
                    input[0],
                    (input[1] - kernel) / s + 1,
                    (input[2] - kernel) / s + 1,
                ]
            }
            OpDef::GlobalAvgPool => {
                if input.len() != 3 {
                    return Err(bad(format!("expects a feature map, gets {input:?}")));
                }
                vec![input[0]]
            }
            OpDef::Flatten => vec![input.iter().product()],
            OpDef::Add => {
                let other = &shapes[node.inputs[1]];
                if other != input {
                    return Err(bad(format!("adds {input:?} to {other:?}")));
                }
                input.clone()
            }
        };
        shapes.push(shape);
    }
    Ok(shapes)
}

fn conv_options(op: &OpDef) -> ConvOptions<2> {
    match op {
        OpDef::Conv2d {
            stride,
            padding,
            groups,
            ..
        } => ConvOptions::new(*stride, *padding, [1, 1], *groups),
        _ => ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    }
}

impl GraphNet {
    /// Builds a graph with freshly initialised layers shaped as `def` says (weights are then
    /// usually loaded from a file), checking the structure first.
    pub fn from_def(
        def: GraphDef,
        quant: Option<QuantRecord>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::BadGraph { reason };
        def.validate().map_err(invalid)?;
        infer_shapes(&def).map_err(invalid)?;
        let (mut convs, mut norms, mut linears) = (Vec::new(), Vec::new(), Vec::new());
        for node in &def.nodes {
            match &node.op {
                OpDef::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    groups,
                    bias,
                } => convs.push(
                    Conv2dConfig::new([*in_channels, *out_channels], *kernel)
                        .with_stride(*stride)
                        .with_padding(PaddingConfig2d::Explicit(
                            padding[0], padding[1], padding[0], padding[1],
                        ))
                        .with_groups(*groups)
                        .with_bias(*bias)
                        .init(device),
                ),
                OpDef::BatchNorm { channels, epsilon } => norms.push(
                    BatchNormConfig::new(*channels)
                        .with_epsilon(*epsilon)
                        .init(device),
                ),
                OpDef::Linear {
                    in_features,
                    out_features,
                    bias,
                } => linears.push(
                    LinearConfig::new(*in_features, *out_features)
                        .with_bias(*bias)
                        .init(device),
                ),
                _ => {}
            }
        }
        let values = def.nodes.len() + 1;
        let quant = match quant {
            Some(record) => QuantState::from_record(record),
            None => QuantState::new(values),
        };
        Ok(Self {
            convs,
            norms,
            linears,
            def,
            quant,
        })
    }

    /// The structure.
    pub fn graph(&self) -> &GraphDef {
        &self.def
    }

    /// Quantization settings and ranges.
    pub fn quant_state(&self) -> &QuantState {
        &self.quant
    }

    /// Replaces the quantization settings and ranges; clones made before no longer share them.
    pub fn with_quant(mut self, quant: QuantState) -> Self {
        self.quant = quant;
        self
    }

    /// Runs nodes `nodes` on `values`, calling `visit` with each value as soon as it exists
    /// (before fake quantization). Values are dropped after their last use unless `keep_all`.
    pub(super) fn run(
        &self,
        values: &mut [Option<Value>],
        nodes: std::ops::Range<usize>,
        keep_all: bool,
        visit: &mut dyn FnMut(ValueId, &Value),
    ) {
        let def = self.graph();
        let slots = layer_slots(def);
        let quant = self.quant_state();
        let config = &quant.config;
        let points = if config.enabled {
            quant_points(def)
        } else {
            Vec::new()
        };
        let mut last_use = vec![0usize; values.len()];
        for (i, node) in def.nodes.iter().enumerate() {
            for &input in &node.inputs {
                last_use[input] = i;
            }
        }
        let is_float = |node: usize| config.float_nodes.contains(&node);
        let quantize_value = |value: ValueId, v: Value| -> Value {
            if !config.enabled || !points[value] {
                return v;
            }
            // A point after a fused activation belongs to the layer before the activation.
            let owner = value.checked_sub(1);
            let float = owner.is_some_and(|n| {
                is_float(n)
                    || (def.nodes[n].op.is_activation()
                        && def.nodes[n].inputs[0] > 0
                        && is_float(def.nodes[n].inputs[0] - 1))
            });
            if float {
                return v;
            }
            if config.observe && v.is_autodiff() {
                quant.observe(value, v.min_max());
            }
            match quant.range(value) {
                Some(range) => v.fake_quant(range),
                None => v,
            }
        };
        if nodes.start == 0 {
            if let Some(input) = values[0].take() {
                visit(0, &input);
                values[0] = Some(quantize_value(0, input));
            }
        }
        for i in nodes {
            let node = &def.nodes[i];
            let take = |values: &mut [Option<Value>], id: ValueId| -> Value {
                let v = if keep_all || last_use[id] > i || id == def.features {
                    values[id].clone()
                } else {
                    values[id].take()
                };
                v.unwrap_or_else(|| {
                    // Unreachable for a validated graph run from its start.
                    panic!("graph value {id} read by '{}' before it exists", node.name)
                })
            };
            let x = take(values, node.inputs[0]);
            let quantize_weights = config.enabled && !is_float(i);
            let out = match &node.op {
                OpDef::Conv2d { .. } => {
                    let conv = &self.convs[slots[i]];
                    let mut weight = conv.weight.val();
                    if quantize_weights {
                        weight = fake_quant_conv_weight(weight);
                    }
                    let bias = conv.bias.as_ref().map(|b| b.val());
                    Value::Map(conv2d(x.map(node), weight, bias, conv_options(&node.op)))
                }
                OpDef::BatchNorm { .. } => {
                    Value::Map(keen_kernels::batch_norm(&self.norms[slots[i]], x.map(node)))
                }
                OpDef::Linear { .. } => {
                    let linear = &self.linears[slots[i]];
                    let mut weight = linear.weight.val();
                    if quantize_weights {
                        weight = fake_quant_linear_weight(weight);
                    }
                    let mut out = x.vector().matmul(weight);
                    if let Some(bias) = &linear.bias {
                        out = out + bias.val().unsqueeze::<2>();
                    }
                    Value::Vector(out)
                }
                OpDef::Relu => match x {
                    Value::Map(t) => Value::Map(relu(t)),
                    Value::Vector(t) => Value::Vector(relu(t)),
                },
                OpDef::Relu6 => match x {
                    Value::Map(t) => Value::Map(t.clamp(0.0, 6.0)),
                    Value::Vector(t) => Value::Vector(t.clamp(0.0, 6.0)),
                },
                OpDef::MaxPool2d { kernel, stride } => Value::Map(max_pool2d(
                    x.map(node),
                    [*kernel, *kernel],
                    [*stride, *stride],
                )),
                OpDef::GlobalAvgPool => {
                    Value::Vector(x.map(node).mean_dim(3).mean_dim(2).flatten::<2>(1, 3))
                }
                OpDef::Flatten => Value::Vector(x.vector()),
                OpDef::Add => {
                    let y = take(values, node.inputs[1]);
                    match (x, y) {
                        (Value::Map(a), Value::Map(b)) => Value::Map(a + b),
                        (a, b) => Value::Vector(a.vector() + b.vector()),
                    }
                }
            };
            visit(i + 1, &out);
            values[i + 1] = Some(quantize_value(i + 1, out));
        }
    }

    /// Runs nodes `0..end` (which may go past the logits, to auxiliary nodes such as a
    /// distillation projection) and returns the values `wanted`, as later nodes see them (after
    /// fake quantization). Every wanted value must be produced by a node before `end`.
    pub fn forward_values(&self, images: Tensor<4>, end: usize, wanted: &[ValueId]) -> Vec<Value> {
        let def = self.graph();
        let end = end.min(def.nodes.len());
        let mut values = vec![None; def.nodes.len() + 1];
        values[0] = Some(Value::Map(images));
        self.run(&mut values, 0..end, true, &mut |_, _| {});
        wanted
            .iter()
            .map(|&id| {
                values
                    .get(id)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| panic!("graph value {id} is not computed by nodes 0..{end}"))
            })
            .collect()
    }

    /// Runs the whole graph and calls `visit` with every value (before fake quantization);
    /// used by calibration and pruning to see inside the model.
    pub fn forward_visit(&self, images: Tensor<4>, visit: &mut dyn FnMut(ValueId, &Value)) {
        let def = self.graph();
        let mut values = vec![None; def.nodes.len() + 1];
        values[0] = Some(Value::Map(images));
        self.run(&mut values, 0..def.output, false, visit);
    }
}

impl ImageClassifier for GraphNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let def = self.graph();
        let mut values = vec![None; def.nodes.len() + 1];
        values[0] = Some(Value::Map(images));
        self.run(&mut values, 0..def.features, false, &mut |_, _| {});
        values[def.features]
            .take()
            .map(Value::vector)
            .unwrap_or_else(|| panic!("graph features value {} not computed", def.features))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        let def = self.graph();
        let mut values = vec![None; def.nodes.len() + 1];
        values[def.features] = Some(Value::Vector(features));
        self.run(&mut values, def.features..def.output, false, &mut |_, _| {});
        values[def.output]
            .take()
            .map(Value::vector)
            .unwrap_or_else(|| panic!("graph output value {} not computed", def.output))
    }

    fn num_features(&self) -> usize {
        let def = self.graph();
        infer_shapes(def)
            .ok()
            .and_then(|shapes| shapes.get(def.features).map(|s| s.iter().product()))
            .unwrap_or(0)
    }

    fn num_classes(&self) -> usize {
        self.linears.last().map(|l| l.weight.dims()[1]).unwrap_or(0)
    }

    fn reset_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        let features = self.num_features();
        if let Some(last) = self.linears.last_mut() {
            *last = LinearConfig::new(features, num_classes).init(device);
        }
        if let Some(node) = self.def.nodes.iter_mut().rev().find(|n| n.op.is_layer()) {
            if let OpDef::Linear { out_features, .. } = &mut node.op {
                *out_features = num_classes;
            }
        }
        self
    }

    fn macs(&self, _input: [usize; 3]) -> u64 {
        let def = self.graph();
        let Ok(shapes) = infer_shapes(def) else {
            return 0;
        };
        def.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| match &node.op {
                OpDef::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    groups,
                    ..
                } => conv2d_macs(
                    *in_channels,
                    *out_channels,
                    *kernel,
                    *groups,
                    [shapes[i + 1][1], shapes[i + 1][2]],
                ),
                OpDef::Linear {
                    in_features,
                    out_features,
                    ..
                } => linear_macs(*in_features, *out_features, 1),
                _ => 0,
            })
            .sum()
    }
}
