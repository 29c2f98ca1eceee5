//! The translation itself: one keen-runtime node at a time, in the file's (topological) order.
//! fp32 ops map to their ONNX ops (`float.rs`); quantized ops become QDQ groups
//! (`quant.rs`). Each keen value keeps its name; values the translation adds are named after
//! the node that needs them (`conv1/x_dq`, `conv1/conv`...).

mod float;
mod quant;

use std::collections::{HashMap, HashSet};

use keen_runtime::{Activation, DType, NodeDef, Op};

use crate::error::{OnnxError, Result};
use crate::graph::{Attr, OnnxGraph};
use crate::stored::Stored;

/// Quantization parameters of a u8/i8 value: `real = scale · (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QParams {
    pub scale: f32,
    pub zero_point: i32,
    pub dtype: DType,
}

/// What the translation tracks about each value: its rank, and its quantization if it holds
/// u8/i8 codes rather than f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ValueInfo {
    pub rank: usize,
    pub quant: Option<QParams>,
}

/// Translation state: the ONNX graph so far, keen's stored tensors and what is known of every
/// value defined so far.
pub(crate) struct Converter<'a> {
    pub g: OnnxGraph,
    stored: HashMap<&'a str, Stored<'a>>,
    values: HashMap<String, ValueInfo>,
    emitted: HashSet<String>,
}

impl<'a> Converter<'a> {
    /// A converter for a graph whose stored tensors are `stored` and inputs `inputs`
    /// (name, rank).
    pub fn new(stored: HashMap<&'a str, Stored<'a>>, inputs: &[(String, usize)]) -> Self {
        let mut g = OnnxGraph::default();
        let mut values = HashMap::new();
        for name in stored.keys() {
            g.reserve(name);
        }
        for (name, rank) in inputs {
            g.reserve(name);
            values.insert(
                name.clone(),
                ValueInfo {
                    rank: *rank,
                    quant: None,
                },
            );
        }
        Self {
            g,
            stored,
            values,
            emitted: HashSet::new(),
        }
    }

    /// What is known of value `name` (after the node defining it was translated).
    pub fn info(&self, name: &str) -> Option<ValueInfo> {
        self.values.get(name).copied()
    }

    /// Translates one node.
    pub fn node(&mut self, node: &NodeDef) -> Result<()> {
        for out in &node.outputs {
            self.g.reserve(out);
        }
        let out = node
            .outputs
            .first()
            .ok_or_else(|| graph_err(node, "has no output"))?;
        let info = match &node.op {
            Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
            | Op::QConv2d(_)
            | Op::QLinear(_)
            | Op::QAdd(_) => quant::translate(self, node, out)?,
            _ => float::translate(self, node, out)?,
        };
        self.values.insert(out.clone(), info);
        Ok(())
    }

    /// Input `i` of `node` as an ONNX value name, with its info: a computed value, or a stored
    /// tensor (emitted as an initializer on first use).
    pub fn input(&mut self, node: &NodeDef, i: usize) -> Result<(String, ValueInfo)> {
        let name = node
            .inputs
            .get(i)
            .ok_or_else(|| graph_err(node, &format!("has no input {i}")))?;
        if let Some(info) = self.values.get(name) {
            return Ok((name.clone(), *info));
        }
        let stored = self.stored_tensor(node, i)?;
        if stored.dtype != DType::F32 {
            return Err(graph_err(
                node,
                &format!("reads stored {} tensor '{name}' as a value", stored.dtype),
            ));
        }
        let rank = stored.shape.len();
        self.emit_stored(name, &stored);
        Ok((name.clone(), ValueInfo { rank, quant: None }))
    }

    /// Input `i` of `node`, which must be f32.
    pub fn float_input(&mut self, node: &NodeDef, i: usize) -> Result<(String, usize)> {
        let (name, info) = self.input(node, i)?;
        if info.quant.is_some() {
            return Err(graph_err(
                node,
                &format!("reads quantized value '{name}' where f32 is required"),
            ));
        }
        Ok((name, info.rank))
    }

    /// Input `i` of `node`, which must be a stored tensor.
    pub fn stored_tensor(&self, node: &NodeDef, i: usize) -> Result<Stored<'a>> {
        let name = node
            .inputs
            .get(i)
            .ok_or_else(|| graph_err(node, &format!("has no input {i}")))?;
        self.stored
            .get(name.as_str())
            .copied()
            .ok_or_else(|| graph_err(node, &format!("input '{name}' must be a stored tensor")))
    }

    /// Emits stored input `i` of `node` as an initializer under its own name.
    pub fn stored_init(&mut self, node: &NodeDef, i: usize) -> Result<(String, Stored<'a>)> {
        let stored = self.stored_tensor(node, i)?;
        let name = node.inputs[i].clone();
        self.emit_stored(&name, &stored);
        Ok((name, stored))
    }

    fn emit_stored(&mut self, name: &str, stored: &Stored) {
        if self.emitted.insert(name.to_string()) {
            self.g.initializers.push(crate::proto::TensorProto {
                dims: stored.shape.iter().map(|&d| d as i64).collect(),
                data_type: crate::graph::onnx_type(stored.dtype),
                name: name.to_string(),
                raw_data: stored.raw.to_vec(),
                ..Default::default()
            });
        }
    }

    /// Applies `act` to `x`, writing `out`; with no activation, `x` must already be `out`.
    pub fn activation(&mut self, act: Activation, x: &str, out: &str, node: &str) -> String {
        match act {
            Activation::None => x.to_string(),
            Activation::Relu => self
                .g
                .node("Relu", &format!("{node}/relu"), &[x], out, vec![]),
            Activation::Relu6 => self.relu6(x, out, node),
        }
    }

    /// `Clip(x, 0, 6)` writing `out`.
    pub fn relu6(&mut self, x: &str, out: &str, node: &str) -> String {
        let lo = self.g.init_f32(&format!("{node}/clip_min"), &[], &[0.0]);
        let hi = self.g.init_f32(&format!("{node}/clip_max"), &[], &[6.0]);
        self.g.node(
            "Clip",
            &format!("{node}/relu6"),
            &[x, &lo, &hi],
            out,
            vec![],
        )
    }

    /// Emits `op_type` then `act`, the last writing `out`.
    pub fn op_then_activation(
        &mut self,
        op_type: &str,
        node: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        act: Activation,
        out: &str,
    ) -> String {
        if act == Activation::None {
            return self.g.node(op_type, node, inputs, out, attrs);
        }
        let pre = self.g.fresh(&format!("{node}/{}", op_type.to_lowercase()));
        self.g.node(op_type, node, inputs, &pre, attrs);
        self.activation(act, &pre, out, node)
    }
}

/// A graph error naming `node`.
pub(crate) fn graph_err(node: &NodeDef, reason: &str) -> OnnxError {
    OnnxError::Graph {
        node: node.name.clone(),
        reason: reason.to_string(),
    }
}

/// An "unsupported" error naming `node` and its op.
pub(crate) fn unsupported(node: &NodeDef, reason: &str) -> OnnxError {
    OnnxError::Unsupported {
        node: node.name.clone(),
        op: node.op.type_name().to_string(),
        reason: reason.to_string(),
    }
}

/// ONNX convolution/pooling attributes from keen's: `kernel_shape`, `strides`, `pads`.
/// keen's padding is (top, left, bottom, right), which is ONNX's (x1_begin, x2_begin, x1_end,
/// x2_end) order already.
pub(crate) fn window_attrs(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> Vec<(&'static str, Attr)> {
    vec![
        (
            "kernel_shape",
            Attr::Ints(kernel.iter().map(|&k| k as i64).collect()),
        ),
        (
            "strides",
            Attr::Ints(stride.iter().map(|&s| s as i64).collect()),
        ),
        (
            "pads",
            Attr::Ints(padding.iter().map(|&p| p as i64).collect()),
        ),
    ]
}
