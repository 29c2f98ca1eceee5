//! [`Model`]: a loaded, validated, ready-to-run graph and its metadata.

use std::path::Path;

use crate::error::{Result, RuntimeError};
use crate::format::{parse, Header, InputDef, Metadata, NodeDef, Normalization};
use crate::graph::Plan;
use crate::tensor::{Tensor, Value};

/// A deployable model: load it once, run it many times (from several threads if you like:
/// `run` takes `&self`).
#[derive(Debug)]
pub struct Model {
    header: Header,
    plan: Plan,
}

impl Model {
    /// Loads and validates a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|e| RuntimeError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and validates a model held in memory: framing, header, every tensor's bounds,
    /// every op's inputs, attributes and shapes. Never panics on malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let parsed = parse(bytes)?;
        let plan = Plan::compile(&parsed.header, parsed.tensors)?;
        Ok(Model {
            header: parsed.header,
            plan,
        })
    }

    /// Runs a single-input, single-output model.
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        if self.header.inputs.len() != 1 || self.header.outputs.len() != 1 {
            return Err(RuntimeError::Graph(format!(
                "run needs one input and one output; this model has {} and {} (use run_many)",
                self.header.inputs.len(),
                self.header.outputs.len()
            )));
        }
        let mut outputs = self.run_many(std::slice::from_ref(input))?;
        outputs
            .pop()
            .ok_or_else(|| RuntimeError::Graph("the model produced no output".into()))
    }

    /// Runs the model on one tensor per declared input (in order); returns one tensor per
    /// declared output.
    pub fn run_many(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.header.inputs.len() {
            return Err(RuntimeError::Graph(format!(
                "the model takes {} inputs, got {}",
                self.header.inputs.len(),
                inputs.len()
            )));
        }
        let mut values = Vec::with_capacity(inputs.len());
        for (tensor, def) in inputs.iter().zip(&self.header.inputs) {
            check_input(tensor, def)?;
            values.push(Value::f32(tensor.shape().to_vec(), tensor.data().to_vec()));
        }
        let outputs = self.plan.run(values)?;
        outputs
            .into_iter()
            .map(|v| {
                let data = v.as_f32().map_err(|e| RuntimeError::Graph(e.0))?.to_vec();
                Tensor::new(v.shape, data)
            })
            .collect()
    }

    /// The declared inputs (name, dtype, shape with `None` for any batch).
    pub fn inputs(&self) -> &[InputDef] {
        &self.header.inputs
    }

    /// Names of the outputs.
    pub fn outputs(&self) -> &[String] {
        &self.header.outputs
    }

    /// The ops, in execution order.
    pub fn nodes(&self) -> &[NodeDef] {
        &self.header.nodes
    }

    /// Everything stored besides the graph.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Class names, index = output logit (empty if the exporter stored none).
    pub fn class_names(&self) -> &[String] {
        &self.header.metadata.class_names
    }

    /// The input normalisation the model expects the caller to apply, if stored.
    pub fn normalization(&self) -> Option<&Normalization> {
        self.header.metadata.normalization.as_ref()
    }

    /// The full header, as stored.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Shapes of the declared inputs, `None` for the free batch axis.
    pub fn input_shapes(&self) -> &[Vec<Option<usize>>] {
        self.plan.input_shapes()
    }
}

fn describe(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("N".to_string(), |v| v.to_string()))
        .collect();
    format!("f32 [{}]", parts.join(", "))
}

fn check_input(tensor: &Tensor, def: &InputDef) -> Result<()> {
    let shape = tensor.shape();
    let fits = shape.len() == def.shape.len()
        && shape
            .iter()
            .zip(&def.shape)
            .all(|(&got, want)| want.map_or(got >= 1, |w| w == got));
    if fits {
        Ok(())
    } else {
        Err(RuntimeError::InputMismatch {
            input: def.name.clone(),
            expected: describe(&def.shape),
            found: format!("f32 {shape:?}"),
        })
    }
}
