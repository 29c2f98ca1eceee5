//! Errors of model construction and weight files.

use std::path::PathBuf;

/// What can go wrong when building a model or reading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The registry has no model of that name.
    #[error("unknown model '{name}'; registered models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },
    /// The model cannot take inputs of this shape.
    #[error("model '{model}' cannot take input {input:?}: {reason}")]
    BadInput {
        /// The model's registry name.
        model: String,
        /// The `[channels, height, width]` asked for.
        input: [usize; 3],
        /// Why not.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A weight file is not what keen wrote.
    #[error("{path}: not a valid keen weight file: {reason}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A model setting is out of range or not supported by this model.
    #[error("{reason}")]
    BadConfig {
        /// What was wrong.
        reason: String,
    },
    /// A graph description is inconsistent.
    #[error("invalid model graph: {reason}")]
    BadGraph {
        /// What was wrong.
        reason: String,
    },
}
