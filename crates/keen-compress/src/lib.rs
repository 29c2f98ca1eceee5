//! keen-compress: the action plan's compression steps.
//!
//! Owns: knowledge distillation losses, fake quantization and observers (QAT), post-training
//! quantization, magnitude and structured pruning, and the recipes that chain them.
//! Must not touch: dataset formats, the command line, the deploy runtime's kernels.
