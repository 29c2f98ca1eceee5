//! [`OnnxGraph`]: nodes and initializers being assembled, with unique names for the values the
//! translation adds between keen's own.

use std::collections::HashSet;

use keen_runtime::DType;

use crate::proto::{attribute_type, data_type, AttributeProto, NodeProto, TensorProto};

/// An ONNX attribute value.
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// The ONNX element type of a keen dtype.
pub(crate) fn onnx_type(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => data_type::FLOAT,
        DType::I8 => data_type::INT8,
        DType::U8 => data_type::UINT8,
        DType::I32 => data_type::INT32,
    }
}

/// Nodes and initializers in topological order.
#[derive(Default)]
pub(crate) struct OnnxGraph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    used: HashSet<String>,
    node_names: HashSet<String>,
}

impl OnnxGraph {
    /// Reserves `name` (a keen value or tensor name, which keen keeps unique).
    pub fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// A name not used yet, `base` itself when free.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Appends a node writing `output`; returns `output`.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let mut node_name = name.to_string();
        let mut i = 1;
        while self.node_names.contains(&node_name) {
            i += 1;
            node_name = format!("{name}_{i}");
        }
        self.node_names.insert(node_name.clone());
        let name = node_name;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name,
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        output.to_string()
    }

    /// Appends a node writing a fresh value named after `base`; returns that value's name.
    pub fn node_fresh(
        &mut self,
        op_type: &str,
        base: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op_type, base, inputs, &out, attrs)
    }

    /// Adds an initializer from raw little-endian bytes; returns its (fresh) name.
    pub fn init_raw(&mut self, base: &str, dtype: DType, dims: &[usize], raw: Vec<u8>) -> String {
        let name = self.fresh(base);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: onnx_type(dtype),
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// An f32 initializer (`dims` empty for a scalar).
    pub fn init_f32(&mut self, base: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init_raw(base, DType::F32, dims, raw)
    }

    /// An i64 initializer (shapes, axes, slice bounds).
    pub fn init_i64(&mut self, base: &str, values: &[i64]) -> String {
        let name = self.fresh(base);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A zero-point initializer of `dtype` (u8, i8 or i32) holding `values` (`dims` empty for a
    /// scalar).
    pub fn init_zero_points(
        &mut self,
        base: &str,
        dtype: DType,
        dims: &[usize],
        values: &[i32],
    ) -> String {
        let raw = match dtype {
            DType::U8 | DType::I8 => values.iter().map(|&v| v as u8).collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        self.init_raw(base, dtype, dims, raw)
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = attribute_type::INT;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = attribute_type::INTS;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = attribute_type::FLOAT;
            a.f = f;
        }
    }
    a
}
