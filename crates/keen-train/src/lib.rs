//! keen-train: the training loop and everything a run leaves behind.
//!
//! Owns: optimizers (SGD with momentum, AdamW) and learning-rate schedules, losses, metrics,
//! mixup/CutMix, an average of the weights ([`ema`]), FixMatch semi-supervised training ([`fixmatch`]), evaluation, the JSON-lines
//! log and learning curves, atomic checkpoints and exact `--resume`, the training-throughput
//! benchmark, adversarial training ([`adversarial`]), the bridge that lets keen-robust's attacks
//! and ODIN query a model's input gradient ([`input_gradient`]) and the logits-plus-features pass
//! the Mahalanobis OOD score is fitted on ([`features`]).
//!
//! Must not touch: where datasets live or how files are parsed (keen-data), architectures
//! (keen-models), or argument parsing (keen-cli). Every function here takes datasets and models
//! already built.

pub mod adversarial;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod consistency;
pub mod curves;
pub mod ema;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod fixmatch;
pub mod hooks;
pub mod input_gradient;
pub mod metrics;
pub mod mixup;
pub mod schedule;
pub mod step;
pub mod tensors;
pub mod trainer;

pub use config::{OptimizerKind, TrainConfig};
pub use error::TrainError;
pub use evaluate::{evaluate, evaluate_all, predict_logits, EvalReport};
pub use hooks::{LossInputs, PlainTraining, ShardInputs, TrainHooks};
pub use trainer::{train, train_with, EpochRecord, TrainOptions, TrainSummary};
