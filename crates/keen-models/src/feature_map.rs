//! A CNN split at its last spatial feature map, and a class score's gradient there: what
//! Grad-CAM reads, for every CNN of the registry whether or not it has a graph form.
//!
//! The graph form ([`crate::graph`]) can differentiate at any of its feature maps, but models
//! whose blocks are not graph ops (squeeze-and-excitation and global context gates, BoTNet's
//! attention) have none. Every CNN can instead say where its spatial part ends: each implements
//! [`SpatialFeatures`], and its `forward_features` is `features_of_map(forward_feature_map(x))`,
//! so the split computes exactly what `forward` does. That is the layer pytorch-grad-cam users
//! pick by default (`model.layer4[-1]`): the last convolutional stage's output.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{Int, TensorData};

use crate::graph::GraphNet;
use crate::{ImageClassifier, KeenModel, ModelError};

/// A classifier whose features are pooled from a spatial feature map.
pub trait SpatialFeatures: ImageClassifier {
    /// The last spatial feature map `[batch, channels, h, w]`, before pooling.
    fn forward_feature_map(&self, images: Tensor<4>) -> Tensor<4>;
    /// The pooled features `[batch, num_features]` of that map; with
    /// [`forward_feature_map`](Self::forward_feature_map) it makes `forward_features`.
    fn features_of_map(&self, map: Tensor<4>) -> Tensor<2>;
    /// The map's name: the node that writes it in the graph form, where there is one (so
    /// `keen explain --layer` and the default agree).
    fn feature_map_name(&self) -> String;
}

/// Global average pooling, `[batch, channels, h, w]` to `[batch, channels]`.
pub(crate) fn global_avg_pool(map: Tensor<4>) -> Tensor<2> {
    map.mean_dim(3).mean_dim(2).flatten::<2>(1, 3)
}

/// The logits, one feature map and the gradient of each image's chosen class score with
/// respect to it.
pub struct ClassGradient {
    /// Logits `[batch, classes]`.
    pub logits: Tensor<2>,
    /// The feature map `[batch, channels, h, w]`.
    pub activations: Tensor<4>,
    /// `∂ logit[i, class_i] / ∂ activations[i]`, same shape.
    pub gradients: Tensor<4>,
}

/// Checks that there is one class per image and that each is an output of the model.
pub(crate) fn check_classes(
    batch: usize,
    classes: &[usize],
    num_classes: usize,
) -> Result<(), ModelError> {
    let bad = |reason: String| Err(ModelError::BadConfig { reason });
    if classes.len() != batch {
        return bad(format!("{} classes for {batch} images", classes.len()));
    }
    if let Some(c) = classes.iter().find(|&&c| c >= num_classes) {
        return bad(format!("class {c} is not an output of the model"));
    }
    Ok(())
}

/// Makes `map` (computed without autodiff) a leaf that requires a gradient, runs `rest` from it
/// to the logits and differentiates each image's chosen class score. burn keeps gradients only
/// for leaves, hence the two parts.
pub(crate) fn differentiate_from(
    map: Tensor<4>,
    classes: &[usize],
    rest: impl FnOnce(Tensor<4>) -> Result<Tensor<2>, ModelError>,
) -> Result<ClassGradient, ModelError> {
    let activations = map.autodiff().require_grad();
    let logits = rest(activations.clone())?;
    let batch = classes.len();
    let index: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    let device = logits.device().inner();
    let index =
        Tensor::<1, Int>::from_data(TensorData::new(index, [batch]), &device).reshape([batch, 1]);
    // Images do not interact in inference mode, so the gradient of the sum of the chosen
    // scores is each image's own gradient.
    let grads = logits.clone().gather(1, index).sum().backward();
    let gradients = activations
        .grad(&grads)
        .unwrap_or_else(|| activations.clone().inner().zeros_like());
    Ok(ClassGradient {
        logits: logits.inner(),
        activations: activations.inner(),
        gradients,
    })
}

/// Differentiates `model`'s class scores at its last spatial feature map. `model` must be in
/// inference mode (`Module::valid`), so that batch norms use their running statistics.
pub fn class_gradient_at_last_map(
    model: &dyn SpatialFeatures,
    images: Tensor<4>,
    classes: &[usize],
) -> Result<ClassGradient, ModelError> {
    check_classes(images.dims()[0], classes, model.num_classes())?;
    let map = model.forward_feature_map(images.inner());
    differentiate_from(map, classes, |map| {
        Ok(model.forward_head(model.features_of_map(map)))
    })
}

/// A feature map Grad-CAM explained and the gradients there.
pub struct ExplainedMap {
    /// The layer's name.
    pub layer: String,
    /// Logits, activations and gradients.
    pub gradient: ClassGradient,
}

impl KeenModel {
    /// The model as a [`SpatialFeatures`]: every CNN of the registry; not ViTs and DeiTs (no
    /// spatial map: their explanation is attention rollout) nor graphs.
    pub fn spatial_features(&self) -> Option<&dyn SpatialFeatures> {
        match self {
            KeenModel::CnnSmall(m) => Some(m),
            KeenModel::ResNet(m) => Some(m),
            KeenModel::MobileNetV2(m) => Some(m),
            KeenModel::BotNet(m) => Some(m),
            KeenModel::Vit(_) | KeenModel::Deit(_) | KeenModel::Graph(_) => None,
        }
    }

    /// Differentiates image `i`'s score of `classes[i]` at feature map `layer`, by default the
    /// last spatial feature map. The default works for every CNN; a named layer needs the
    /// graph form (its node names), except the default layer's own name.
    pub fn class_gradient(
        &self,
        images: Tensor<4>,
        layer: Option<&str>,
        classes: &[usize],
    ) -> Result<ExplainedMap, ModelError> {
        let model = self.valid();
        if let Some(spatial) = model.spatial_features() {
            let name = spatial.feature_map_name();
            if layer.is_none_or(|l| l == name) {
                return Ok(ExplainedMap {
                    gradient: class_gradient_at_last_map(spatial, images, classes)?,
                    layer: name,
                });
            }
        }
        if matches!(self, KeenModel::Vit(_) | KeenModel::Deit(_)) {
            return Err(ModelError::BadConfig {
                reason: "vit and deit models have no convolutional feature map to explain with \
                         Grad-CAM (attention rollout explains them)"
                    .into(),
            });
        }
        let [_, channels, height, width] = images.dims();
        let graph =
            match self {
                KeenModel::Graph(g) => g.clone(),
                other => other.to_graph([channels, height, width]).map_err(|e| {
                    ModelError::BadConfig {
                        reason: format!(
                            "layer '{}' needs the model's graph form, which it lacks ({e}); its \
                         default layer is '{}'",
                            layer.unwrap_or_default(),
                            self.spatial_features()
                                .map(|m| m.feature_map_name())
                                .unwrap_or_default()
                        ),
                    }
                })?,
            };
        graph_class_gradient(&graph, images, layer, classes)
    }
}

fn graph_class_gradient(
    graph: &GraphNet,
    images: Tensor<4>,
    layer: Option<&str>,
    classes: &[usize],
) -> Result<ExplainedMap, ModelError> {
    let value = match layer {
        Some(name) => graph.feature_map_named(name)?,
        None => graph
            .last_feature_map()
            .ok_or_else(|| ModelError::BadConfig {
                reason: "the model has no feature map to explain".into(),
            })?,
    };
    Ok(ExplainedMap {
        layer: graph.graph().nodes[value - 1].name.clone(),
        gradient: graph.class_gradient(images, value, classes)?,
    })
}
