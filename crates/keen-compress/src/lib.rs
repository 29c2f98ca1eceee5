//! keen-compress: the action plan's compression steps.
//!
//! Owns: knowledge distillation losses, fake quantization and observers (QAT), post-training
//! quantization, magnitude and structured pruning, and the recipes that chain them. Everything
//! here works on models lowered to a [`keen_models::graph::GraphNet`].
//! Must not touch: dataset formats, the command line, the deploy runtime's kernels.

pub mod edit;
pub mod fold;

pub use fold::fold_batch_norms;
