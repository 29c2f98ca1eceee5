//! keen-models: the model registry and one file per architecture.
//!
//! Owns: every architecture keen can train (`cnn-small`, `resnet8`, `resnet20`,
//! `mobilenet-v2-tiny`, `vit-tiny` and its variants, `deit-tiny`, `resnet20-se`/`-gc`,
//! `resnet20-bot`), the one interface they all share ([`ImageClassifier`]),
//! the registry that builds them by name ([`registry`]), their multiply-accumulate counts,
//! self-describing weight files ([`weights`]), and the views inside a model that explaining and
//! pruning need (attention probabilities, per-head outputs, a class score's gradient at a
//! feature map) without changing what `forward` computes.
//!
//! Must not touch: datasets, training loops or the command line. A new model is one file here
//! plus one line in [`registry`]'s table and one variant of [`KeenModel`].

pub mod attention;
pub mod botnet;
pub mod channel_gate;
pub mod cnn_small;
pub mod cnn_wong;
pub mod deit;
pub mod drop_path;
pub mod error;
pub mod feature_map;
pub mod flops;
pub mod graph;
pub mod linear_quant;
pub mod mobilenet_v2;
mod params;
pub mod registry;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use error::ModelError;
pub use feature_map::SpatialFeatures;
pub use params::{nonzero_trainable_params, trainable_params};
pub use registry::{available_models, build_model, find_model, KeenModel, ModelEntry, ModelSpec};

use burn::prelude::*;

/// The interface every keen model offers, after timm's: features, head, classifier reset and
/// cost. `forward` is always `forward_head(forward_features(x))`.
pub trait ImageClassifier {
    /// Pooled features `[batch, num_features]` from images `[batch, channels, height, width]`.
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2>;
    /// Class logits `[batch, num_classes]` from pooled features.
    fn forward_head(&self, features: Tensor<2>) -> Tensor<2>;
    /// Class logits from images.
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(images))
    }
    /// Width of the pooled feature vector that the head consumes.
    fn num_features(&self) -> usize;
    /// Number of classes the head predicts.
    fn num_classes(&self) -> usize;
    /// Replaces the classifier with a freshly initialised one for `num_classes` classes.
    /// (`Self: Sized` keeps the trait usable as `dyn`, e.g. behind [`SpatialFeatures`].)
    fn reset_classifier(self, num_classes: usize, device: &Device) -> Self
    where
        Self: Sized;
    /// Multiply-accumulate operations for one image of shape `[channels, height, width]`.
    fn macs(&self, input: [usize; 3]) -> u64;
}
