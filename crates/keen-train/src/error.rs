//! Errors of training and evaluation.

use std::path::PathBuf;

/// What can go wrong in a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] keen_data::error::DataError),
    /// Building or loading a model failed.
    #[error(transparent)]
    Model(#[from] keen_models::ModelError),
    /// Reading or writing a run file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run file exists but is not what keen wrote.
    #[error("{path}: {reason}")]
    BadRunFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration cannot be run.
    #[error("invalid training configuration: {0}")]
    BadConfig(String),
}

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
