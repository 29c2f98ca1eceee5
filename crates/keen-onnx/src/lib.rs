//! keen-onnx: ONNX export of keen-runtime models.
//!
//! Owns: the translation of a validated keen-runtime graph into an ONNX model (opset
//! [`OPSET`], IR version [`IR_VERSION`]) and writing it. Must not touch: burn, training, or
//! keen-runtime's internals — it reads keen-runtime's public API and documented file format only,
//! so `keen export --format onnx` is "export to keen-runtime, then translate".
//!
//! - fp32 graphs become plain ONNX ops: `Conv` (grouped and depthwise too), `Gemm`/`MatMul`,
//!   `Relu`/`Clip`, `MaxPool`, `AveragePool`, `GlobalAveragePool`, `Add`, `Flatten`/`Reshape`,
//!   `Softmax`, `LayerNormalization`, `BatchNormalization`, GELU as `Erf` arithmetic...
//! - INT8 graphs become **QDQ** graphs: `DequantizeLinear` → float op → `QuantizeLinear`, int8
//!   weights per output channel (`axis`), int32 biases, uint8 activations — the form ONNX
//!   Runtime fuses into `QLinearConv`/`QGemm`/`QLinearAdd` (see `convert/quant.rs`).
//! - Multi-head attention and a stored tensor concatenated along the batch (ViT's class
//!   token) have no translation yet: [`OnnxError::Unsupported`] names the node.
//!
//! ```no_run
//! let model = keen_onnx::OnnxModel::from_keenrt_file("student.keenrt")?;
//! model.save("student.onnx")?;
//! # Ok::<(), keen_onnx::OnnxError>(())
//! ```
//!
//! The ONNX protobuf messages are hand-written prost structs ([`proto`]); there is no build
//! script and no protoc.

#![warn(missing_docs)]

mod convert;
mod error;
mod graph;
pub mod proto;
mod stored;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use keen_runtime::{DType, Model, Op, Tensor};
use prost::Message;

pub use error::{OnnxError, Result};

use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX opset written: 17 has `LayerNormalization` and per-axis `QuantizeLinear`/
/// `DequantizeLinear` (13+), and every current ONNX Runtime and tract reads it.
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// Name of the free batch dimension in the written input and output shapes.
pub const BATCH_DIM: &str = "N";

/// Numeric form of an exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Plain float ops.
    Fp32,
    /// QDQ: quantize/dequantize pairs around float ops, int8 weights, uint8 activations.
    Int8Qdq,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Int8Qdq => "INT8 (QDQ)",
        })
    }
}

/// An ONNX model translated from a keen-runtime model.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    proto: ModelProto,
    precision: Precision,
}

impl OnnxModel {
    /// Loads a keen-runtime file and translates it.
    pub fn from_keenrt_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_keenrt_bytes(&bytes)
    }

    /// Translates a keen-runtime model file held in memory (what `GraphBuilder::to_bytes`
    /// gives). The file is fully validated by keen-runtime first.
    pub fn from_keenrt_bytes(bytes: &[u8]) -> Result<Self> {
        let model = Model::from_bytes(bytes)?;
        let header = model.header();
        let stored = stored::stored_tensors(bytes, header)?;
        let inputs: Vec<(String, usize)> = header
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.shape.len()))
            .collect();
        let mut converter = convert::Converter::new(stored, &inputs);
        for node in &header.nodes {
            converter.node(node)?;
        }
        let output_shapes = output_shapes(&model)?;
        let mut outputs = Vec::new();
        for (name, shape) in header.outputs.iter().zip(output_shapes) {
            match converter.info(name) {
                Some(info) if info.quant.is_none() => {}
                _ => {
                    return Err(OnnxError::Graph {
                        node: name.clone(),
                        reason: "a graph output must be f32".into(),
                    })
                }
            }
            outputs.push(value_info(name, DType::F32, &shape));
        }
        let precision = match header.nodes.iter().any(|n| is_quantized(&n.op)) {
            true => Precision::Int8Qdq,
            false => Precision::Fp32,
        };
        let graph = GraphProto {
            node: std::mem::take(&mut converter.g.nodes),
            name: "keen".into(),
            initializer: std::mem::take(&mut converter.g.initializers),
            doc_string: graph_doc(&model),
            input: header
                .inputs
                .iter()
                .map(|i| value_info(&i.name, i.dtype, &i.shape))
                .collect(),
            output: outputs,
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "keen".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 1,
            doc_string: format!("Exported by keen-onnx from a keen-runtime model ({precision})."),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata_props(&model),
        };
        Ok(Self { proto, precision })
    }

    /// fp32 or QDQ INT8 (INT8 when the keen-runtime graph had quantized ops).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The protobuf message.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// How many nodes of each ONNX op type the graph has.
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for node in self.proto.graph.iter().flat_map(|g| &g.node) {
            *counts.entry(node.op_type.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The serialized model (an `.onnx` file's bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the model to `path` atomically (temporary file beside it, fsync, rename);
    /// returns the bytes written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<u64> {
        let bytes = self.to_bytes();
        write_atomic(path.as_ref(), &bytes)?;
        Ok(bytes.len() as u64)
    }
}

fn is_quantized(op: &Op) -> bool {
    matches!(
        op,
        Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
            | Op::QConv2d(_)
            | Op::QLinear(_)
            | Op::QAdd(_)
    )
}

/// Output shapes, from running the model on batch 1 and batch 2 of zeros: an axis that changes
/// with the batch is written as [`BATCH_DIM`].
fn output_shapes(model: &Model) -> Result<Vec<Vec<Option<usize>>>> {
    let run = |batch: usize| -> Result<Vec<Vec<usize>>> {
        let inputs: Vec<Tensor> = model
            .inputs()
            .iter()
            .map(|i| Tensor::zeros(i.shape.iter().map(|d| d.unwrap_or(batch)).collect()))
            .collect();
        Ok(model
            .run_many(&inputs)?
            .iter()
            .map(|t| t.shape().to_vec())
            .collect())
    };
    let (one, two) = (run(1)?, run(2)?);
    Ok(one
        .iter()
        .zip(&two)
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x == y).then_some(*x))
                .collect()
        })
        .collect())
}

fn value_info(name: &str, dtype: DType, shape: &[Option<usize>]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam(BATCH_DIM.into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: graph::onnx_type(dtype),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// What a user of the `.onnx` file needs to know about its input.
fn graph_doc(model: &Model) -> String {
    match model.normalization() {
        Some(n) => format!(
            "Input: NCHW float images in [0, 1], then per channel (x - mean) / std with mean {:?} \
             and std {:?} (also in the metadata as 'normalization'). Output: logits.",
            n.mean, n.std
        ),
        None => "Output: logits.".into(),
    }
}

/// keen's metadata as ONNX metadata properties: `class_names` and `normalization` as JSON, the
/// free-form properties as they are.
fn metadata_props(model: &Model) -> Vec<StringStringEntryProto> {
    let mut props = Vec::new();
    if !model.class_names().is_empty() {
        let names = serde_json::to_string(model.class_names()).unwrap_or_default();
        props.push(("class_names".to_string(), names));
    }
    if let Some(n) = model.normalization() {
        let json = serde_json::json!({ "mean": n.mean, "std": n.std });
        props.push(("normalization".to_string(), json.to_string()));
    }
    for (k, v) in &model.metadata().properties {
        props.push((k.clone(), v.clone()));
    }
    props
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect()
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`, so a
/// reader never sees a partial model.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.onnx".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
