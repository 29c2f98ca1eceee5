//! Training throughput on synthetic data: what `keen bench-train` and `bench/` measure.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use keen_models::{ImageClassifier, ModelSpec};
use serde::Serialize;

use crate::TrainError;

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Registry name.
    pub model: String,
    /// Timed steps.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Training images per second over the timed steps.
    pub images_per_sec: f64,
    /// Seconds of the timed steps.
    pub seconds: f64,
}

/// Times `steps` Adam training steps of `model` on random `[batch, 1, 28, 28]` images after
/// `warmup` untimed steps: the same work as the PyTorch side of `bench/train_throughput.py`.
pub fn train_throughput(
    model: &str,
    steps: usize,
    warmup: usize,
    batch_size: usize,
    device: &Device,
) -> Result<ThroughputReport, TrainError> {
    let autodiff = device.clone().autodiff();
    let spec = ModelSpec::new(model, [1, 28, 28], 10);
    let mut net = crate::trainer::seeded_model(&spec, 0, &autodiff)?;
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    let images = Tensor::<4>::random(
        [batch_size, 1, 28, 28],
        Distribution::Normal(0.0, 1.0),
        &autodiff,
    );
    let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 10).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch_size]), &autodiff);
    let mut start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            start = Instant::now();
        }
        let loss = loss_fn.forward(net.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optimizer.step(1e-3, net, grads);
        // Reading the loss waits for the step to finish, as `loss.item()` does in PyTorch.
        let _ = loss.into_scalar::<f32>();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ThroughputReport {
        model: model.to_string(),
        steps,
        batch_size,
        images_per_sec: (steps * batch_size) as f64 / seconds.max(1e-9),
        seconds,
    })
}
