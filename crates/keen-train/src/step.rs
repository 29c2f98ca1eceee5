//! One optimizer step, on one device or data-parallel over several.
//!
//! Data parallelism is burn's: the batch is split into one shard per device, each device runs
//! forward and backward on a fork of the model, and `ModuleOptimizer::step_multi` sums the
//! gradients before the update. Each shard's loss is weighted by its share of the batch, so the
//! summed gradient equals the full batch's mean-loss gradient (a test checks this). On GPUs the
//! shards overlap because kernel launches are asynchronous.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use keen_data::loader::Batch;
use keen_models::KeenModel;

use crate::hooks::{ShardInputs, TrainHooks};
use crate::tensors::{images_tensor, labels_tensor};

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Mean loss over the batch (before the update).
    pub loss: f64,
    /// Correct top-1 predictions in the batch (before the update).
    pub correct: i64,
}

/// The devices of a step and one loss function per device.
pub struct StepDevices {
    devices: Vec<Device>,
    losses: Vec<CrossEntropyLoss>,
}

impl StepDevices {
    /// `devices` must be autodiff devices; the first holds the model between steps.
    pub fn new(devices: Vec<Device>, label_smoothing: f32) -> Self {
        let smoothing = (label_smoothing > 0.0).then_some(label_smoothing);
        let losses = devices
            .iter()
            .map(|d| {
                burn::nn::loss::CrossEntropyLossConfig::new()
                    .with_smoothing(smoothing)
                    .init(d)
            })
            .collect();
        Self { devices, losses }
    }

    /// The device that holds the model.
    pub fn main(&self) -> &Device {
        &self.devices[0]
    }
}

/// Forward, backward and update on `batch`; returns the updated model.
pub fn train_step(
    model: KeenModel,
    optimizer: &mut ModuleOptimizer,
    batch: Batch,
    devices: &StepDevices,
    lr: f64,
    hooks: &dyn TrainHooks,
) -> (KeenModel, StepOutcome) {
    let [total, channels, height, width] = batch.shape;
    let per_image = channels * height * width;
    let shards = devices.devices.len().min(total).max(1);
    let mut grads = MultiGradientsParams::default();
    let (mut loss_sum, mut correct) = (0.0f64, 0i64);
    let mut start = 0;
    for shard in 0..shards {
        // Near-equal shards: the first `total % shards` get one image more.
        let len = total / shards + usize::from(shard < total % shards);
        let device = &devices.devices[shard];
        let replica = if shard == 0 {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        let images = images_tensor(
            batch.images[start * per_image..(start + len) * per_image].to_vec(),
            [len, channels, height, width],
            device,
        );
        let labels = labels_tensor(&batch.labels[start..start + len], device);
        let (logits, loss) = hooks.forward_loss(
            &replica,
            ShardInputs {
                images: &images,
                labels: labels.clone(),
                indices: &batch.indices[start..start + len],
                batch_offset: start,
                batch_len: total,
            },
            &devices.losses[shard],
        );
        correct += logits
            .argmax(1)
            .flatten::<1>(0, 1)
            .equal(labels)
            .int()
            .sum()
            .into_scalar::<i64>();
        let weighted = loss.clone().mul_scalar(len as f64 / total as f64);
        grads.grads.push((
            GradientsParams::from_grads(weighted.backward(), &replica),
            device.clone(),
        ));
        loss_sum += loss.into_scalar::<f32>() as f64 * len as f64;
        start += len;
    }
    let model = if shards == 1 {
        let (single, _) = grads.grads.remove(0);
        optimizer.step(lr, model, single)
    } else {
        optimizer.step_multi(lr, model, grads)
    };
    (
        model,
        StepOutcome {
            loss: loss_sum / total as f64,
            correct,
        },
    )
}
