//! keen-runtime's model file format, version 1.
//!
//! ```text
//! offset 0   magic      8 bytes  b"KEENRT\0\0"
//! offset 8   version    u32 LE   FORMAT_VERSION
//! offset 12  header_len u64 LE   length of the JSON header in bytes
//! offset 20  header     JSON     a [`Header`]: inputs, nodes, outputs, tensors, metadata
//!            padding    zeros up to the next multiple of 64
//! data_start tensor data         each tensor at data_start + offset, offset a multiple of 64
//! ```
//!
//! Every number is little-endian. A tensor's `length` must equal `dtype size × product(shape)`
//! and its bytes must lie inside the file; the reader checks this before allocating anything, so
//! a header cannot make it allocate more than the file's own size.

mod read;
mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ops::Op;
use crate::tensor::DType;

pub(crate) use read::parse;
pub(crate) use write::{encode, write_atomic};

/// The 8 bytes every model file starts with.
pub const MAGIC: &[u8; 8] = b"KEENRT\0\0";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Alignment of the data section and of every tensor in it, in bytes (one cache line, and
/// enough for any SIMD load).
pub const ALIGNMENT: u64 = 64;
/// Largest JSON header accepted: far above any real graph, far below memory trouble.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Byte offset of the JSON header.
pub(crate) const HEADER_OFFSET: u64 = 20;

/// The JSON header: the whole graph except the tensor bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Graph inputs, in the order `run_many` takes them.
    pub inputs: Vec<InputDef>,
    /// Ops in topological order: every input of an op is a graph input, a tensor, or the output
    /// of an earlier op.
    pub nodes: Vec<NodeDef>,
    /// Names of the values the graph returns.
    pub outputs: Vec<String>,
    /// Stored tensors (weights, biases, quantization scales...).
    pub tensors: Vec<TensorDef>,
    /// Class names, normalisation and free-form properties.
    #[serde(default)]
    pub metadata: Metadata,
}

/// A graph input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    /// The value's name.
    pub name: String,
    /// Element type (only `f32` inputs are accepted today).
    pub dtype: DType,
    /// Shape, e.g. `[null, 1, 28, 28]`; only the first (batch) dimension may be `null`, meaning
    /// any batch size.
    pub shape: Vec<Option<usize>>,
}

/// One op of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDef {
    /// A name unique among the nodes, used in error messages.
    pub name: String,
    /// The op and its attributes: `"op": "Conv2d", "attrs": {...}` in JSON.
    #[serde(flatten)]
    pub op: Op,
    /// Names of the input values, in the op's order.
    pub inputs: Vec<String>,
    /// Names of the output values (every op has exactly one today).
    pub outputs: Vec<String>,
}

/// Where a stored tensor lives in the data section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorDef {
    /// The value's name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte offset from the start of the data section; a multiple of [`ALIGNMENT`].
    pub offset: u64,
    /// Length in bytes: `dtype.size_bytes() × product(shape)`.
    pub length: u64,
}

/// Per-channel input normalisation: `x' = (x - mean[c]) / std[c]`, applied by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Per-channel mean of the training images.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training images.
    pub std: Vec<f32>,
}

/// What a deployed classifier needs besides its graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Class names, index = output logit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// Normalisation the model was trained with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
    /// Free-form strings: architecture, training run, quantization recipe...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// Rounds `n` up to a multiple of [`ALIGNMENT`], or `None` on overflow.
pub(crate) fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGNMENT - 1)
        .map(|v| v / ALIGNMENT * ALIGNMENT)
}
