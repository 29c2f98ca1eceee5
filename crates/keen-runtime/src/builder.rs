//! [`GraphBuilder`]: how exporters (keen-compress) write model files.
//!
//! ```
//! use keen_runtime::{GraphBuilder, Op, LinearAttrs, Tensor};
//!
//! let mut g = GraphBuilder::new();
//! let x = g.input_batched("input", &[4]); // shape [N, 4]
//! let w = g.tensor_f32("fc.weight", vec![2, 4], vec![1.0; 8]).unwrap();
//! let b = g.tensor_f32("fc.bias", vec![2], vec![0.5, -0.5]).unwrap();
//! let y = g.op("fc", Op::Linear(LinearAttrs::default()), &[&x, &w, &b]);
//! g.output(&y);
//! g.class_names(vec!["no".into(), "yes".into()]);
//! let model = g.build().unwrap(); // or g.save("model.keenrt")
//! let out = model.run(&Tensor::new(vec![1, 4], vec![1.0; 4]).unwrap()).unwrap();
//! assert_eq!(out.data(), &[4.5, 3.5]);
//! ```

use std::path::Path;

use crate::error::{Result, RuntimeError};
use crate::format::{
    encode, write_atomic, Header, InputDef, Metadata, NodeDef, Normalization, TensorDef,
};
use crate::model::Model;
use crate::ops::Op;
use crate::tensor::{checked_numel, DType, Data, Value};

/// Assembles a graph (inputs, stored tensors, ops in topological order, outputs, metadata) and
/// writes it as a model file. Nothing is validated until [`GraphBuilder::build`],
/// [`GraphBuilder::to_bytes`] or [`GraphBuilder::save`], which check everything the loader
/// checks, so an invalid model is never written.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    inputs: Vec<InputDef>,
    nodes: Vec<NodeDef>,
    outputs: Vec<String>,
    tensors: Vec<(String, Value)>,
    metadata: Metadata,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an f32 input, e.g. `&[None, 1, 28, 28]` (`None` = any batch); returns its name.
    pub fn input(&mut self, name: &str, shape: &[Option<usize>]) -> String {
        self.inputs.push(InputDef {
            name: name.to_string(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        });
        name.to_string()
    }

    /// Declares an f32 input with a free batch axis in front of `dims`: `&[1, 28, 28]` gives
    /// `[N, 1, 28, 28]`.
    pub fn input_batched(&mut self, name: &str, dims: &[usize]) -> String {
        let mut shape = vec![None];
        shape.extend(dims.iter().map(|&d| Some(d)));
        self.input(name, &shape)
    }

    fn tensor(&mut self, name: &str, shape: Vec<usize>, data: Data, len: usize) -> Result<String> {
        if checked_numel(&shape) != Some(len) {
            return Err(RuntimeError::Tensor {
                name: name.to_string(),
                reason: format!("shape {shape:?} does not hold {len} values"),
            });
        }
        self.tensors.push((name.to_string(), Value { shape, data }));
        Ok(name.to_string())
    }

    /// Stores an f32 tensor (weights, biases, norm parameters, weight scales).
    pub fn tensor_f32(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<String> {
        let len = data.len();
        self.tensor(name, shape, Data::F32(data), len)
    }

    /// Stores an i8 tensor (quantized weights).
    pub fn tensor_i8(&mut self, name: &str, shape: Vec<usize>, data: Vec<i8>) -> Result<String> {
        let len = data.len();
        self.tensor(name, shape, Data::I8(data), len)
    }

    /// Stores a u8 tensor.
    pub fn tensor_u8(&mut self, name: &str, shape: Vec<usize>, data: Vec<u8>) -> Result<String> {
        let len = data.len();
        self.tensor(name, shape, Data::U8(data), len)
    }

    /// Stores an i32 tensor (quantized biases).
    pub fn tensor_i32(&mut self, name: &str, shape: Vec<usize>, data: Vec<i32>) -> Result<String> {
        let len = data.len();
        self.tensor(name, shape, Data::I32(data), len)
    }

    /// Appends an op reading `inputs` (names of inputs, tensors or earlier ops' outputs); its
    /// output value is named like the node, and that name is returned.
    pub fn op(&mut self, name: &str, op: Op, inputs: &[&str]) -> String {
        self.nodes.push(NodeDef {
            name: name.to_string(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.to_string()],
        });
        name.to_string()
    }

    /// Marks a value as a graph output (it must be f32).
    pub fn output(&mut self, name: &str) {
        self.outputs.push(name.to_string());
    }

    /// Stores the class names (index = logit).
    pub fn class_names(&mut self, names: Vec<String>) {
        self.metadata.class_names = names;
    }

    /// Stores the per-channel normalisation the caller must apply to inputs.
    pub fn normalization(&mut self, mean: Vec<f32>, std: Vec<f32>) {
        self.metadata.normalization = Some(Normalization { mean, std });
    }

    /// Stores a free-form property (architecture, recipe, accuracy...).
    pub fn property(&mut self, key: &str, value: &str) {
        self.metadata
            .properties
            .insert(key.to_string(), value.to_string());
    }

    /// Encodes the model file and validates it by loading it back.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut header = Header {
            inputs: self.inputs.clone(),
            nodes: self.nodes.clone(),
            outputs: self.outputs.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|(name, v)| TensorDef {
                    name: name.clone(),
                    dtype: v.dtype(),
                    shape: v.shape.clone(),
                    offset: 0,
                    length: 0,
                })
                .collect(),
            metadata: self.metadata.clone(),
        };
        let values: Vec<Value> = self.tensors.iter().map(|(_, v)| v.clone()).collect();
        let bytes = encode(&mut header, &values)?;
        Model::from_bytes(&bytes)?;
        Ok(bytes)
    }

    /// Validates the graph and returns the loaded model (what a later `Model::load` of the
    /// saved file would give).
    pub fn build(&self) -> Result<Model> {
        Model::from_bytes(&self.to_bytes()?)
    }

    /// Validates the graph and writes it to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }
}
