//! Run folders and their checkpoints.
//!
//! ```text
//! RUN/config.json            the TrainConfig
//! RUN/state.json             the commit point: last finished epoch, step, history
//! RUN/ckpt/epoch-NNNN.*      model and optimizer state of that epoch (burnpack, which keeps
//!                            the parameter ids the optimizer state is keyed by)
//! RUN/log.jsonl              one JSON line per finished epoch
//! RUN/model.safetensors      the final model, self-describing
//! RUN/curves.svg             learning curves
//! ```
//! Every file is written atomically, and `state.json` is written only after the epoch's
//! checkpoint files are whole, so a `kill -9` at any instant leaves a run that resumes from the
//! last finished epoch.

use std::fs;
use std::path::{Path, PathBuf};

use keen_models::weights::write_atomic;
use serde::{Deserialize, Serialize};

use crate::trainer::EpochRecord;
use crate::TrainError;

/// How many epoch checkpoints to keep on disk.
const KEEP_CHECKPOINTS: usize = 2;

/// The resumable state of a run, as of its last finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Epochs finished.
    pub completed_epochs: usize,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Stem of the checkpoint files of the last finished epoch, relative to the run folder.
    pub checkpoint: String,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
}

/// The files of one run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// `log.jsonl`.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }

    /// `model.safetensors`, the final model.
    pub fn model_path(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }

    /// `curves.svg`.
    pub fn curves_path(&self) -> PathBuf {
        self.root.join("curves.svg")
    }

    /// Stem (relative) of the checkpoint of `epoch`.
    pub fn checkpoint_stem(epoch: usize) -> String {
        format!("ckpt/epoch-{epoch:04}")
    }

    /// Model file (burnpack) of a checkpoint stem.
    pub fn checkpoint_model(&self, stem: &str) -> PathBuf {
        self.root.join(format!("{stem}.bpk"))
    }

    /// Optimizer file of a checkpoint stem.
    pub fn checkpoint_optimizer(&self, stem: &str) -> PathBuf {
        self.root.join(format!("{stem}.optim.bpk"))
    }

    /// Averaged-weights file of a checkpoint stem (runs with `ema_decay`).
    pub fn checkpoint_average(&self, stem: &str) -> PathBuf {
        self.root.join(format!("{stem}.ema.bpk"))
    }

    /// Writes `value` as pretty JSON to `path`, atomically.
    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::BadRunFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(path, text.as_bytes()).map_err(TrainError::io(path))
    }

    /// Reads JSON from `path`, naming the file in any error.
    pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
        let text = fs::read_to_string(path).map_err(TrainError::io(path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::BadRunFile {
            path: path.to_path_buf(),
            reason: format!("not valid JSON for this file: {e}"),
        })
    }

    /// Reads `state.json`, or `None` when the run has not finished an epoch yet.
    pub fn read_state(&self) -> Result<Option<RunState>, TrainError> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(None);
        }
        let state: RunState = Self::read_json(&path)?;
        for file in [
            self.checkpoint_model(&state.checkpoint),
            self.checkpoint_optimizer(&state.checkpoint),
        ] {
            if !file.exists() {
                return Err(TrainError::BadRunFile {
                    path: path.clone(),
                    reason: format!("names checkpoint {} which is missing", file.display()),
                });
            }
        }
        Ok(Some(state))
    }

    /// Commits `state` and rewrites the log from its history, then prunes old checkpoints.
    pub fn commit(&self, state: &RunState) -> Result<(), TrainError> {
        self.write_json(&self.state_path(), state)?;
        let mut log = String::new();
        for record in &state.history {
            let line = serde_json::to_string(record).map_err(|e| TrainError::BadRunFile {
                path: self.log_path(),
                reason: e.to_string(),
            })?;
            log.push_str(&line);
            log.push('\n');
        }
        write_atomic(&self.log_path(), log.as_bytes()).map_err(TrainError::io(self.log_path()))?;
        self.prune_checkpoints(state.completed_epochs);
        Ok(())
    }

    /// Removes checkpoints older than the last [`KEEP_CHECKPOINTS`]; failures are harmless.
    fn prune_checkpoints(&self, completed_epochs: usize) {
        for epoch in 1..=completed_epochs.saturating_sub(KEEP_CHECKPOINTS) {
            let stem = Self::checkpoint_stem(epoch);
            let _ = fs::remove_file(self.checkpoint_model(&stem));
            let _ = fs::remove_file(self.checkpoint_optimizer(&stem));
            let _ = fs::remove_file(self.checkpoint_average(&stem));
        }
    }
}
