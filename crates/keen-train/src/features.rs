//! Logits and feature vectors from inside a model in one pass, for detectors fitted on
//! features (the Mahalanobis OOD score of keen-robust).
//!
//! By default the features are what the classifier head reads (`forward_features`: the input of
//! the final linear layer of every registry model), which needs no graph form and so works for
//! ViTs too. A named layer needs the model's graph form (`keen info MODEL --layers` lists the
//! names); a feature map `[c, h, w]` is averaged over its positions into `c` values, as Lee et
//! al. (2018) do for intermediate layers.

use burn::module::Module;
use burn::prelude::*;
use keen_data::loader::{epoch_batches, IntoSharedDataset, LoaderConfig, Normalization};
use keen_models::graph::{infer_shapes, GraphNet, Value, ValueId};
use keen_models::{ImageClassifier, KeenModel};

use crate::error::TrainError;
use crate::tensors::{images_tensor, to_f32_vec};

/// Where the features come from.
enum Source {
    /// `forward_features`, then `forward_head` for the logits.
    Pooled,
    /// One value of the model's graph form.
    Graph { net: GraphNet, value: ValueId },
}

/// A model in inference mode that returns logits and one layer's features per image.
pub struct FeatureExtractor {
    model: KeenModel,
    source: Source,
    layer: String,
    dims: usize,
}

/// Logits `[n, classes]` and features `[n, dims]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitsAndFeatures {
    /// Row-major logits.
    pub logits: Vec<f32>,
    /// Row-major features.
    pub features: Vec<f32>,
}

impl FeatureExtractor {
    /// Features of `layer` (a graph node name) or, when `None`, of the head's input, for images
    /// of shape `input`, with `model` on `device`. A named layer of a model without a graph form
    /// (attention models) is an error saying so.
    pub fn new(
        model: &KeenModel,
        input: [usize; 3],
        layer: Option<&str>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let model = model.valid();
        let Some(name) = layer else {
            let [c, h, w] = input;
            // The head's width is not part of the model's spec; one blank image measures it.
            let probe = Tensor::<4>::zeros([1, c, h, w], device);
            let dims = model.forward_features(probe).dims()[1];
            return Ok(Self {
                model,
                source: Source::Pooled,
                layer: "head input (forward_features)".into(),
                dims,
            });
        };
        let net = model.to_graph(input).map_err(|e| {
            TrainError::BadConfig(format!(
                "--feature-layer needs the model's graph form: {e}; leave it out to use the \
                 classifier head's input"
            ))
        })?;
        let def = net.graph();
        let node = def
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = def.nodes.iter().map(|n| n.name.as_str()).collect();
                TrainError::BadConfig(format!(
                    "no layer named '{name}'; the layers are: {}",
                    names.join(", ")
                ))
            })?;
        let value = node + 1;
        if value > def.output {
            return Err(TrainError::BadConfig(format!(
                "layer '{name}' comes after the logits; choose a layer before them"
            )));
        }
        let shapes = infer_shapes(def).map_err(TrainError::BadConfig)?;
        let dims = shapes[value][0];
        Ok(Self {
            model,
            source: Source::Graph { net, value },
            layer: name.to_string(),
            dims,
        })
    }

    /// The layer the features come from, for reports.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// Values per feature vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Logits and features of one normalised batch `[n, c, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        match &self.source {
            Source::Pooled => {
                let features = self.model.forward_features(images);
                (self.model.forward_head(features.clone()), features)
            }
            Source::Graph { net, value } => {
                let output = net.graph().output;
                let mut values = net.forward_values(images, output, &[*value, output]);
                let logits = match values.pop() {
                    Some(Value::Vector(t)) => t,
                    Some(Value::Map(t)) => t.flatten::<2>(1, 3),
                    None => unreachable!("forward_values returns one value per id"),
                };
                let features = match values.pop() {
                    Some(Value::Vector(t)) => t,
                    // Lee et al. average a feature map over its positions.
                    Some(Value::Map(t)) => t.mean_dim(3).mean_dim(2).flatten::<2>(1, 3),
                    None => unreachable!("forward_values returns one value per id"),
                };
                (logits, features)
            }
        }
    }

    /// Logits and features of the images of `dataset` at `indices`, normalised by
    /// `normalization`, in batches of `batch_size`.
    pub fn predict(
        &self,
        dataset: impl IntoSharedDataset,
        indices: &[usize],
        normalization: &Normalization,
        batch_size: usize,
        device: &Device,
    ) -> LogitsAndFeatures {
        let dataset = dataset.into_shared();
        let cfg = LoaderConfig::eval(batch_size, normalization.clone());
        let mut out = LogitsAndFeatures {
            logits: Vec::with_capacity(indices.len() * dataset.num_classes()),
            features: Vec::with_capacity(indices.len() * self.dims),
        };
        for batch in epoch_batches(&dataset, indices, &cfg, 0) {
            let images = images_tensor(batch.images, batch.shape, device);
            let (logits, features) = self.forward(images);
            out.logits.extend(to_f32_vec(logits));
            out.features.extend(to_f32_vec(features));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::seeded_model;
    use keen_data::toy::{halves_dataset, Halves};
    use keen_models::ModelSpec;

    #[test]
    fn named_layer_and_head_input_agree_with_the_plain_forward_pass() {
        let device = Device::flex();
        let spec = ModelSpec::new("cnn-small", [1, 12, 12], 2);
        let model = seeded_model(&spec, 7, &device).unwrap();
        let data = halves_dataset(6, 1, Halves::LeftRight);
        let indices: Vec<usize> = (0..6).collect();
        let norm = Normalization {
            mean: vec![0.2],
            std: vec![0.3],
        };
        let plain = crate::predict_logits(&model, &data, &indices, &norm, 4, &device);
        let pooled = FeatureExtractor::new(&model, [1, 12, 12], None, &device).unwrap();
        let out = pooled.predict(&data, &indices, &norm, 4, &device);
        assert_eq!(out.features.len(), 6 * pooled.dims());
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        assert!(close(&out.logits, &plain));
        // The input of the last linear layer is the head's input.
        let graph = model.to_graph([1, 12, 12]).unwrap();
        let def = graph.graph();
        let last_linear = &def.nodes[def.output - 1];
        let feeder = &def.nodes[last_linear.inputs[0] - 1].name;
        let named = FeatureExtractor::new(&model, [1, 12, 12], Some(feeder), &device).unwrap();
        let by_name = named.predict(&data, &indices, &norm, 4, &device);
        assert_eq!(named.dims(), pooled.dims());
        assert!(close(&by_name.features, &out.features));
        assert!(close(&by_name.logits, &plain));
        assert!(
            FeatureExtractor::new(&model, [1, 12, 12], Some("no-such-layer"), &device).is_err()
        );
    }
}
