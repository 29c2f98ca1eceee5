//! The one error type of keen-runtime: every failure names the file, op or tensor at fault and
//! what was expected, so a bad model file is diagnosed from the message alone.

use std::path::PathBuf;

/// Everything that can go wrong while loading, validating, building, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A failure while loading a particular file; `source` says what was wrong in it.
    #[error("{path}: {source}")]
    InFile {
        /// The file being loaded.
        path: PathBuf,
        /// What was wrong.
        source: Box<RuntimeError>,
    },
    /// The file does not start with `KEENRT\0\0`.
    #[error("not a keen-runtime model: expected magic bytes {expected:?}, found {found:?}")]
    BadMagic {
        /// The magic bytes a model starts with.
        expected: Vec<u8>,
        /// The first bytes of the file.
        found: Vec<u8>,
    },
    /// The format version is not one this build reads.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The file ends before a part it declares.
    #[error("file truncated: {what} needs {needed} bytes but only {available} are present")]
    Truncated {
        /// The part that is cut off.
        what: String,
        /// Bytes the part needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The JSON header does not parse or does not describe a graph.
    #[error("invalid JSON header: {0}")]
    HeaderJson(#[from] serde_json::Error),
    /// A tensor's declaration or data is inconsistent.
    #[error("tensor '{name}': {reason}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A graph input, output or value is declared wrongly (duplicated, undefined, unused...).
    #[error("graph: {0}")]
    Graph(String),
    /// An op's attributes, inputs or shapes are invalid.
    #[error("op '{node}' ({op}): {reason}")]
    Op {
        /// The node's name.
        node: String,
        /// The op type.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// The tensor given to `run` does not match the graph's input.
    #[error("input '{input}': expected {expected}, got {found}")]
    InputMismatch {
        /// The graph input.
        input: String,
        /// The declared shape/dtype, e.g. `f32 [N, 1, 28, 28]`.
        expected: String,
        /// What was passed.
        found: String,
    },
    /// A tensor's shape and its data length disagree.
    #[error("tensor of shape {shape:?} needs {expected} values but holds {found}")]
    ShapeData {
        /// The shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the data.
        found: usize,
    },
}

/// keen-runtime's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// An op-local error message; the graph wraps it into [`RuntimeError::Op`] with the node's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpError(pub String);

impl OpError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Builds an `Err(OpError)` from a format string.
macro_rules! op_bail {
    ($($arg:tt)*) => {
        return Err($crate::error::OpError::new(format!($($arg)*)))
    };
}
pub(crate) use op_bail;

/// Op-level result.
pub(crate) type OpResult<T> = std::result::Result<T, OpError>;
