//! Pruning: removing weights (unstructured, by magnitude) while fine-tuning.

pub mod magnitude;

pub use magnitude::{cubic_sparsity, GradualMagnitudePruner, MagnitudePruneConfig, PruneScope};
