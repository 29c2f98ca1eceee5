//! [`OnnxError`]: everything that can go wrong while converting or writing.

use std::path::PathBuf;

/// Errors of keen-onnx: each names the file, node, op or value that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The keen-runtime model did not load (bad file, invalid graph).
    #[error("the keen-runtime model is invalid: {0}")]
    Runtime(#[from] keen_runtime::RuntimeError),
    /// A stored tensor's bytes could not be located in the model file.
    #[error("stored tensor '{name}': {reason}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// An op, or an op in this configuration, has no ONNX translation yet.
    #[error("node '{node}' ({op}) cannot be exported to ONNX: {reason}")]
    Unsupported {
        /// The node's name.
        node: String,
        /// The op's type name.
        op: String,
        /// Why, and what would work instead.
        reason: String,
    },
    /// The graph mixes things the exporter cannot express (a value of an unexpected type...).
    #[error("node '{node}': {reason}")]
    Graph {
        /// The node's name.
        node: String,
        /// What was wrong.
        reason: String,
    },
    /// The caller asked for a precision the model does not have.
    #[error("{0}")]
    Precision(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// keen-onnx's result type.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
