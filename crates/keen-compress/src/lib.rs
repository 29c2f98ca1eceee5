//! keen-compress: the action plan's compression steps.
//!
//! Owns: knowledge distillation losses, fake quantization and observers (QAT), post-training
//! quantization, magnitude and structured pruning, and the recipes that chain them. Everything
//! that edits a CNN's structure works on models lowered to a [`keen_models::graph::GraphNet`];
//! transformer heads and MLP units are removed through the blocks' own `retain`
//! ([`prune::heads`]), and their linear layers quantized in place ([`quantize_linear`]), as
//! attention is not a graph op.
//! Must not touch: dataset formats, the command line, the deploy runtime's kernels.

pub mod deit;
pub mod distill;
pub mod edit;
pub mod error;
pub mod export;
pub mod export_runtime;
pub mod fold;
pub mod hint;
pub mod prune;
pub mod quantize;
pub mod quantize_linear;
pub mod recipe;
pub mod stages;
pub mod teacher;

pub use error::CompressError;
pub use fold::fold_batch_norms;
