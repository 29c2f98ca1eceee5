//! Errors of compression.

use std::path::PathBuf;

/// What can go wrong while compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] keen_train::TrainError),
    /// Building or loading a model failed.
    #[error(transparent)]
    Model(#[from] keen_models::ModelError),
    /// A model file lacks what compression needs, or does not fit the task.
    #[error("{path}: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The settings cannot be run.
    #[error("invalid compression settings: {0}")]
    BadConfig(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
