//! Evaluation of a model on a dataset: loss, accuracy, per-class accuracy, confusion matrix.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use keen_data::dataset::ImageDataset;
use keen_data::loader::{epoch_batches, IntoSharedDataset, LoaderConfig, Normalization};
use keen_models::{ImageClassifier, KeenModel};
use serde::{Deserialize, Serialize};

use crate::metrics::ConfusionMatrix;
use crate::tensors::{images_tensor, to_f32_vec};

/// What `keen eval` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Top-1 accuracy in [0, 1].
    pub accuracy: f64,
    /// Mean cross-entropy (no label smoothing).
    pub loss: f64,
    /// Accuracy of each class in [0, 1].
    pub per_class_accuracy: Vec<f64>,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Row = true class, column = predicted class.
    pub confusion: ConfusionMatrix,
    /// Wall-clock seconds of the evaluation.
    pub seconds: f64,
}

/// Evaluates `model` (in inference mode) on the images of `dataset` at `indices`.
///
/// Pass an `Arc<ImageDataset>` to share the images with the loader's threads; a plain reference
/// is copied once.
pub fn evaluate(
    model: &KeenModel,
    dataset: impl IntoSharedDataset,
    indices: &[usize],
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
) -> EvalReport {
    let start = Instant::now();
    let model = model.valid();
    let dataset = dataset.into_shared();
    let num_classes = dataset.num_classes();
    let cfg = LoaderConfig::eval(batch_size, normalization.clone());
    let mut confusion = ConfusionMatrix::new(num_classes);
    let mut loss_sum = 0.0f64;
    for batch in epoch_batches(&dataset, indices, &cfg, 0) {
        let images = images_tensor(batch.images, batch.shape, device);
        let truth = batch.labels;
        let log_probs = to_f32_vec(log_softmax(model.forward(images), 1));
        for (row, &label) in log_probs.chunks(num_classes).zip(&truth) {
            let predicted = argmax(row);
            confusion.add(label as usize, predicted);
            loss_sum -= row[label as usize] as f64;
        }
    }
    let images = confusion.total() as usize;
    EvalReport {
        images,
        accuracy: confusion.accuracy(),
        loss: if images == 0 {
            0.0
        } else {
            loss_sum / images as f64
        },
        per_class_accuracy: confusion.per_class_accuracy(),
        class_names: dataset.class_names.clone(),
        confusion,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The logits of `model` (in inference mode) for the images of `dataset` at `indices`, one row
/// of `num_classes` values per index, in the order of `indices`.
pub fn predict_logits(
    model: &KeenModel,
    dataset: impl IntoSharedDataset,
    indices: &[usize],
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
) -> Vec<f32> {
    let model = model.valid();
    let dataset = dataset.into_shared();
    let cfg = LoaderConfig::eval(batch_size, normalization.clone());
    let mut logits = Vec::with_capacity(indices.len() * dataset.num_classes());
    for batch in epoch_batches(&dataset, indices, &cfg, 0) {
        let images = images_tensor(batch.images, batch.shape, device);
        logits.extend(to_f32_vec(model.forward(images)));
    }
    logits
}

/// Evaluates `model` on every image of `dataset`.
pub fn evaluate_all(
    model: &KeenModel,
    dataset: &ImageDataset,
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
) -> EvalReport {
    let indices: Vec<usize> = (0..dataset.len()).collect();
    evaluate(model, dataset, &indices, normalization, batch_size, device)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}
