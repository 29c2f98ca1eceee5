//! Pruning: removing weights (unstructured, by magnitude, while fine-tuning) and whole channels
//! (structured, along their dependencies).

pub mod channels;
pub mod magnitude;

pub use channels::{plan_channels, remove_channels, ChannelCriterion};
pub use magnitude::{
    cubic_sparsity, GradualMagnitudePruner, MagnitudePruneConfig, PruneScope, SparsityPattern,
};
