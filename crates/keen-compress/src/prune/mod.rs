//! Pruning: removing weights (unstructured, by magnitude, while fine-tuning), whole channels
//! (structured, along their dependencies) and whole attention heads and MLP units of
//! transformers.

pub mod channels;
pub mod heads;
pub mod magnitude;

pub use channels::{plan_channels, remove_channels, ChannelCriterion};
pub use heads::{plan_transformer, prune_transformer, TransformerPrunePlan};
pub use magnitude::{
    cubic_sparsity, GradualMagnitudePruner, MagnitudePruneConfig, PruneScope, SparsityPattern,
};
