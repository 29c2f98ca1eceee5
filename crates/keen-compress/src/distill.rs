//! Knowledge distillation (Hinton et al. 2015): the student learns from the teacher's softened
//! outputs as well as from the labels.
//!
//! `loss = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, y)`, where `t` and `s` are the
//! teacher's and the student's logits. The `T²` keeps the soft term's gradients on the scale of
//! the hard term's as `T` changes. The teacher's logits are computed once per training image
//! (without augmentation) and cached, so an epoch of distillation costs one student epoch, not a
//! student epoch plus a teacher forward pass.

use std::sync::Arc;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::TensorData;
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_models::KeenModel;
use keen_train::{predict_logits, LossInputs, TrainHooks};
use serde::{Deserialize, Serialize};

/// How the student learns from the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Softening temperature `T` (Hinton et al. use 2–20; 4 is common for CIFAR-scale data).
    pub temperature: f32,
    /// Weight `α` of the soft (teacher) term; `1 − α` weighs the labels.
    pub alpha: f32,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            temperature: 4.0,
            alpha: 0.9,
        }
    }
}

impl DistillConfig {
    /// Checks `T > 0` and `α ∈ [0, 1]`.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        Ok(())
    }
}

/// The teacher's logits for every image of a dataset, by dataset index.
#[derive(Debug, Clone)]
pub struct TeacherLogits {
    logits: Arc<Vec<f32>>,
    num_classes: usize,
}

impl TeacherLogits {
    /// Runs `teacher` (in inference mode) over the images of `dataset` at `indices`; the other
    /// rows stay zero and must not be asked for.
    pub fn compute(
        teacher: &KeenModel,
        dataset: &Arc<ImageDataset>,
        indices: &[usize],
        normalization: &Normalization,
        device: &Device,
    ) -> Self {
        let num_classes = dataset.num_classes();
        let rows = predict_logits(teacher, dataset, indices, normalization, 256, device);
        let mut logits = vec![0.0f32; dataset.len() * num_classes];
        for (row, &index) in rows.chunks(num_classes).zip(indices) {
            logits[index * num_classes..(index + 1) * num_classes].copy_from_slice(row);
        }
        Self {
            logits: Arc::new(logits),
            num_classes,
        }
    }

    /// Writes the logits to `path` (atomically) as little-endian f32 after a one-line JSON
    /// header holding `key`, which [`TeacherLogits::read`] must find again.
    pub fn write(&self, path: &std::path::Path, key: &str) -> std::io::Result<()> {
        let header = serde_json::json!({ "key": key, "classes": self.num_classes }).to_string();
        let mut bytes = Vec::with_capacity(header.len() + 1 + self.logits.len() * 4);
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        for v in self.logits.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        keen_models::weights::write_atomic(path, &bytes)
    }

    /// Reads logits written by [`TeacherLogits::write`] with the same `key` for `rows` images;
    /// `None` if the file is absent, for another key, or damaged (they are then recomputed).
    pub fn read(path: &std::path::Path, key: &str, rows: usize) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let header: serde_json::Value = serde_json::from_slice(&bytes[..newline]).ok()?;
        if header["key"].as_str()? != key {
            return None;
        }
        let num_classes = header["classes"].as_u64()? as usize;
        let body = &bytes[newline + 1..];
        if num_classes == 0 || body.len() != rows * num_classes * 4 {
            return None;
        }
        let logits = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some(Self {
            logits: Arc::new(logits),
            num_classes,
        })
    }

    /// Logits computed elsewhere: row `i` (of `num_classes` values) belongs to dataset image `i`.
    pub fn from_rows(logits: Vec<f32>, num_classes: usize) -> Self {
        Self {
            logits: Arc::new(logits),
            num_classes,
        }
    }

    /// The cached logits of the images at `indices`, as a `[n, classes]` tensor.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let mut values = Vec::with_capacity(indices.len() * self.num_classes);
        for &index in indices {
            values.extend_from_slice(
                &self.logits[index * self.num_classes..(index + 1) * self.num_classes],
            );
        }
        Tensor::from_data(
            TensorData::new(values, [indices.len(), self.num_classes]),
            device,
        )
    }
}

/// The distillation loss of a batch.
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &DistillConfig,
    cross_entropy: &CrossEntropyLoss,
) -> Tensor<1> {
    let t = config.temperature as f64;
    let [batch, _] = student.dims();
    let hard = cross_entropy.forward(student.clone(), labels);
    let teacher_probs = softmax(teacher.clone().div_scalar(t), 1);
    let teacher_log_probs = log_softmax(teacher.div_scalar(t), 1);
    let student_log_probs = log_softmax(student.div_scalar(t), 1);
    let kl = (teacher_probs * (teacher_log_probs - student_log_probs))
        .sum()
        .div_scalar(batch as f64);
    kl.mul_scalar(config.alpha as f64 * t * t) + hard.mul_scalar(1.0 - config.alpha as f64)
}

/// Where the teacher's logits come from.
pub enum TeacherSource {
    /// Computed once on un-augmented images (training without augmentation).
    Cached(TeacherLogits),
    /// The teacher runs on every batch, seeing the same augmented images as the student.
    Live(Box<KeenModel>),
}

/// Training hooks that distil from a teacher.
pub struct Distiller {
    /// The settings.
    pub config: DistillConfig,
    /// The teacher's logits.
    pub teacher: TeacherSource,
    /// Where the teacher came from (for the run's identity).
    pub teacher_name: String,
}

impl Distiller {
    /// The loss of one shard.
    pub fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        let device = inputs.logits.device();
        let teacher = match &self.teacher {
            TeacherSource::Cached(cache) => cache.batch(inputs.indices, &device),
            TeacherSource::Live(model) => {
                use keen_models::ImageClassifier;
                model.forward(inputs.images.clone().inner()).detach()
            }
        };
        distillation_loss(
            inputs.logits,
            teacher,
            inputs.labels,
            &self.config,
            cross_entropy,
        )
    }
}

impl TrainHooks for Distiller {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "distill": self.config, "teacher": self.teacher_name })
    }

    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        Distiller::loss(self, inputs, cross_entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn soft_term_vanishes_when_student_matches_teacher() {
        let device = Device::flex();
        let ce = CrossEntropyLossConfig::new().init(&device);
        let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
        let labels = Tensor::<1, Int>::from_ints([0, 2], &device);
        let soft_only = DistillConfig {
            temperature: 3.0,
            alpha: 1.0,
        };
        let same = distillation_loss(
            logits.clone(),
            logits.clone(),
            labels.clone(),
            &soft_only,
            &ce,
        );
        assert!(scalar(same).abs() < 1e-6);
        let other = Tensor::<2>::from_floats([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]], &device);
        let differ = distillation_loss(logits.clone(), other, labels.clone(), &soft_only, &ce);
        assert!(scalar(differ) > 0.1);
        let hard_only = DistillConfig {
            temperature: 3.0,
            alpha: 0.0,
        };
        let hard = distillation_loss(
            logits.clone(),
            logits.clone(),
            labels.clone(),
            &hard_only,
            &ce,
        );
        let expected = ce.forward(logits, labels);
        assert!((scalar(hard) - scalar(expected)).abs() < 1e-6);
    }

    #[test]
    fn kl_matches_a_hand_computed_case() {
        let device = Device::flex();
        let ce = CrossEntropyLossConfig::new().init(&device);
        // Teacher [ln 3, 0] → p = [0.75, 0.25]; student [0, 0] → q = [0.5, 0.5] at T = 1.
        let teacher = Tensor::<2>::from_floats([[3f32.ln(), 0.0]], &device);
        let student = Tensor::<2>::from_floats([[0.0, 0.0]], &device);
        let labels = Tensor::<1, Int>::from_ints([0], &device);
        let config = DistillConfig {
            temperature: 1.0,
            alpha: 1.0,
        };
        let kl = 0.75f32 * (0.75f32 / 0.5).ln() + 0.25 * (0.25f32 / 0.5).ln();
        let loss = scalar(distillation_loss(student, teacher, labels, &config, &ce));
        assert!((loss - kl).abs() < 1e-5, "{loss} vs {kl}");
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(DistillConfig {
            temperature: 0.0,
            alpha: 0.5
        }
        .validate()
        .is_err());
        assert!(DistillConfig {
            temperature: 2.0,
            alpha: 1.5
        }
        .validate()
        .is_err());
        assert!(DistillConfig::default().validate().is_ok());
    }
}
