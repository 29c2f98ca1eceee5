//! Adversarial training as [`TrainHooks`]: the model learns on attacked images.
//!
//! - PGD training (Madry et al. 2018): minimise the cross-entropy at a PGD point of the
//!   ε-ball (random start, `steps` steps of `step_size`).
//! - TRADES (Zhang et al. 2019): `CE(f(x), y) + β·KL(f(x) ‖ f(x'))`, with `x'` maximising
//!   the KL divergence from the clean prediction (start `x + 0.001·N(0, 1)`, signed steps).
//! - Fast FGSM with a random start (Wong, Rice & Kolter 2020): one FGSM step of `1.25·ε` from
//!   a uniform point of the ball, the cost of about two plain steps.
//!
//! Attacks run in pixel space on the model in inference mode (keen-robust's algorithms over
//! [`ModelInputGradient`]): the trainer hands over normalised images, which are mapped back to
//! pixels, attacked, and normalised again. ε may ramp up linearly over the first steps (Wong et
//! al. find it helps on MNIST). Every random start is drawn from the seed, the step and the
//! batch's first index, so a resumed run draws the same starts. Optionally the hooks measure
//! PGD accuracy on validation images after every epoch and keep the most robust model: fast
//! FGSM training can collapse suddenly ("catastrophic overfitting"), and this is the early
//! stopping Wong et al. recommend.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_models::{ImageClassifier, KeenModel, ModelSpec};
use keen_robust::attack::{
    fgsm_images, pgd_images, projected_step, robust_accuracy, AttackConfig, AttackKind,
    InputGradient, Norm, SplitMix64,
};
use serde::{Deserialize, Serialize};

use crate::hooks::{ShardInputs, TrainHooks};
use crate::input_gradient::ModelInputGradient;
use crate::tensors::{images_tensor, to_f32_vec};
use crate::TrainError;

/// Which adversarial training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversarialMethod {
    /// Madry et al.: cross-entropy at PGD points.
    Pgd,
    /// Zhang et al.: clean cross-entropy plus β·KL to the adversarial prediction.
    Trades,
    /// Wong et al.: FGSM from a random start.
    FgsmRs,
}

impl std::str::FromStr for AdversarialMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pgd" => Ok(Self::Pgd),
            "trades" => Ok(Self::Trades),
            "fgsm-rs" | "fgsm" => Ok(Self::FgsmRs),
            other => Err(format!(
                "unknown adversarial training '{other}'; expected pgd, trades or fgsm-rs"
            )),
        }
    }
}

/// The settings of adversarial training (stored with the run: `--resume` refuses others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversarialConfig {
    /// The method.
    pub method: AdversarialMethod,
    /// The L∞ budget in pixel units.
    pub eps: f32,
    /// Attack steps per training step (PGD, TRADES; FGSM takes one).
    pub steps: usize,
    /// Attack step size at full ε (scaled with ε while it ramps up).
    pub step_size: f32,
    /// TRADES' β.
    pub trades_beta: f32,
    /// ε grows linearly from 0 over this many optimizer steps (0 = full ε from the start).
    pub ramp_steps: usize,
    /// Seed of the random starts.
    pub seed: u64,
}

impl AdversarialConfig {
    /// The usual settings of `method` at budget `eps`: FGSM-RS steps by `1.25·ε`; PGD and
    /// TRADES take 10 steps of `2.5·ε/10`; β = 6 (TRADES' MNIST and CIFAR setting).
    pub fn new(method: AdversarialMethod, eps: f32) -> Self {
        let steps = if method == AdversarialMethod::FgsmRs {
            1
        } else {
            10
        };
        let step_size = match method {
            AdversarialMethod::FgsmRs => 1.25 * eps,
            _ => 2.5 * eps / steps as f32,
        };
        Self {
            method,
            eps,
            steps,
            step_size,
            trades_beta: 6.0,
            ramp_steps: 0,
            seed: 0,
        }
    }

    /// Checks ε, steps, step size and β.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::BadConfig(what));
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return bad(format!("--adv-eps must be in (0, 1], got {}", self.eps));
        }
        if self.steps == 0 {
            return bad("--adv-steps must be at least 1".into());
        }
        if !(self.step_size.is_finite() && self.step_size > 0.0) {
            return bad(format!(
                "--adv-alpha must be positive, got {}",
                self.step_size
            ));
        }
        if !(self.trades_beta.is_finite() && self.trades_beta >= 0.0) {
            return bad(format!(
                "--trades-beta must be ≥ 0, got {}",
                self.trades_beta
            ));
        }
        Ok(())
    }

    /// ε after `step` optimizer steps.
    pub fn eps_at(&self, step: usize) -> f32 {
        if self.ramp_steps == 0 {
            self.eps
        } else {
            self.eps * ((step + 1) as f32 / self.ramp_steps as f32).min(1.0)
        }
    }
}

/// PGD accuracy on validation images after every epoch, and the most robust model so far.
pub struct RobustValidation {
    pixels: Vec<f32>,
    labels: Vec<u32>,
    attack: AttackConfig,
    steps_per_epoch: usize,
    log_path: PathBuf,
    best_model: PathBuf,
    spec: ModelSpec,
    metadata: BTreeMap<String, String>,
    best_accuracy: f64,
}

/// One line of `adversarial-val.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustValidationRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// PGD accuracy on the validation images.
    pub pgd_accuracy: f64,
    /// Clean accuracy on the same images.
    pub clean_accuracy: f64,
    /// Images attacked.
    pub images: usize,
    /// Whether this epoch's model became `model-best-robust.safetensors`.
    pub best: bool,
}

impl RobustValidation {
    /// Attacks `images` validation images (`indices` of `dataset`) with PGD-`steps` at `eps`
    /// after each epoch of `steps_per_epoch` steps; logs to `out_dir/adversarial-val.jsonl`
    /// and keeps the best model as `out_dir/model-best-robust.safetensors`. A resumed run
    /// reads the best accuracy back from the log.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: &ImageDataset,
        indices: &[usize],
        eps: f32,
        steps: usize,
        steps_per_epoch: usize,
        out_dir: PathBuf,
        spec: ModelSpec,
        metadata: BTreeMap<String, String>,
    ) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * dataset.image_len());
        for &i in indices {
            pixels.extend(dataset.image(i).iter().map(|&v| v as f32 / 255.0));
        }
        let labels = indices.iter().map(|&i| dataset.labels[i]).collect();
        let log_path = out_dir.join("adversarial-val.jsonl");
        let best_accuracy = std::fs::read_to_string(&log_path)
            .ok()
            .map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<RobustValidationRecord>(l).ok())
                    .map(|r| r.pgd_accuracy)
                    .fold(-1.0, f64::max)
            })
            .unwrap_or(-1.0);
        Self {
            pixels,
            labels,
            attack: AttackConfig {
                steps,
                seed: 1,
                ..AttackConfig::new(AttackKind::Pgd, Norm::Linf, eps)
            },
            steps_per_epoch: steps_per_epoch.max(1),
            log_path,
            best_model: out_dir.join("model-best-robust.safetensors"),
            spec,
            metadata,
            best_accuracy,
        }
    }

    fn run(
        &mut self,
        model: &KeenModel,
        epoch: usize,
        normalization: &Normalization,
    ) -> Result<(), TrainError> {
        let device = Device::flex();
        let oracle =
            ModelInputGradient::new(model, self.spec.input_shape(), normalization, &device)
                .map_err(|e| TrainError::BadConfig(e.to_string()))?;
        let robust = |e: keen_robust::RobustError| TrainError::BadConfig(e.to_string());
        let attacked = robust_accuracy(
            &oracle,
            &self.pixels,
            &self.labels,
            &self.attack,
            256,
            &mut |_| {},
        )
        .map_err(robust)?;
        let clean_config = AttackConfig {
            eps: 0.0,
            steps: 1,
            ..self.attack.clone()
        };
        let clean = robust_accuracy(
            &oracle,
            &self.pixels,
            &self.labels,
            &clean_config,
            256,
            &mut |_| {},
        )
        .map_err(robust)?;
        let best = attacked.accuracy > self.best_accuracy;
        if best {
            self.best_accuracy = attacked.accuracy;
            keen_models::weights::save(
                &model.valid(),
                &self.spec,
                &self.metadata,
                &self.best_model,
            )?;
        }
        let record = RobustValidationRecord {
            epoch,
            pgd_accuracy: attacked.accuracy,
            clean_accuracy: clean.accuracy,
            images: attacked.images,
            best,
        };
        eprintln!(
            "epoch {epoch}: validation PGD-{} accuracy {:.2}% at ε = {} (clean {:.2}%, {} images){}",
            self.attack.steps,
            100.0 * record.pgd_accuracy,
            self.attack.eps,
            100.0 * record.clean_accuracy,
            record.images,
            if best { ", best so far: saved" } else { "" }
        );
        let mut line = serde_json::to_string(&record).unwrap_or_default();
        line.push('\n');
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(TrainError::io(&self.log_path))?;
        file.write_all(line.as_bytes())
            .map_err(TrainError::io(&self.log_path))
    }
}

/// Training hooks that train on adversarial images.
pub struct AdversarialTraining {
    config: AdversarialConfig,
    normalization: Normalization,
    shape: [usize; 3],
    step: usize,
    validation: Option<RobustValidation>,
    /// The first error of the per-epoch validation (the hooks cannot return one).
    pub validation_error: Option<TrainError>,
}

impl AdversarialTraining {
    /// Hooks for images of `shape` normalised by `normalization` (the run's).
    pub fn new(
        config: AdversarialConfig,
        normalization: Normalization,
        shape: [usize; 3],
    ) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            normalization,
            shape,
            step: 0,
            validation: None,
            validation_error: None,
        })
    }

    /// Measures PGD accuracy on validation images after every epoch.
    pub fn with_validation(mut self, validation: RobustValidation) -> Self {
        self.validation = Some(validation);
        self
    }

    /// Continues a run after `steps` optimizer steps (on `--resume`), so the ε ramp and the
    /// random starts pick up where they stopped.
    pub fn starting_at(mut self, steps: usize) -> Self {
        self.step = steps;
        self
    }

    /// The settings.
    pub fn config(&self) -> &AdversarialConfig {
        &self.config
    }

    fn to_pixels(&self, normalised: &Tensor<4>) -> Vec<f32> {
        let plane = self.shape[1] * self.shape[2];
        let channels = self.shape[0];
        let mut values = to_f32_vec(normalised.clone().inner());
        for (i, v) in values.iter_mut().enumerate() {
            let c = (i / plane) % channels;
            *v = (*v * self.normalization.std[c] + self.normalization.mean[c]).clamp(0.0, 1.0);
        }
        values
    }

    fn to_normalised(&self, mut pixels: Vec<f32>, n: usize, device: &Device) -> Tensor<4> {
        let plane = self.shape[1] * self.shape[2];
        let channels = self.shape[0];
        for (i, v) in pixels.iter_mut().enumerate() {
            let c = (i / plane) % channels;
            *v = (*v - self.normalization.mean[c]) / self.normalization.std[c];
        }
        let [c, h, w] = self.shape;
        images_tensor(pixels, [n, c, h, w], device)
    }

    fn seed(&self, indices: &[usize]) -> u64 {
        let first = indices.first().copied().unwrap_or(0) as u64;
        self.config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((self.step as u64) << 32)
            .wrapping_add(first)
    }

    /// The adversarial pixels for one shard, or `None` while ε is still 0.
    fn attack(
        &self,
        model: &KeenModel,
        pixels: &[f32],
        labels: &[u32],
        indices: &[usize],
    ) -> Result<Vec<f32>, keen_robust::RobustError> {
        let eps = self.config.eps_at(self.step);
        let scale = eps / self.config.eps;
        let oracle =
            ModelInputGradient::new(model, self.shape, &self.normalization, &Device::flex())?;
        let attack = AttackConfig {
            steps: self.config.steps,
            step_size: Some(self.config.step_size * scale),
            random_start: true,
            seed: self.seed(indices),
            ..AttackConfig::new(AttackKind::Pgd, Norm::Linf, eps)
        };
        match self.config.method {
            AdversarialMethod::FgsmRs => fgsm_images(&oracle, pixels, labels, &attack),
            AdversarialMethod::Pgd => pgd_images(&oracle, pixels, labels, &attack),
            AdversarialMethod::Trades => {
                let image_len = oracle.image_len();
                let clean_probs = oracle.probabilities(pixels);
                let mut rng = SplitMix64::new(attack.seed);
                let mut x: Vec<f32> = pixels
                    .iter()
                    .map(|&p| (p + 0.001 * rng.normal()).clamp(0.0, 1.0))
                    .collect();
                for _ in 0..attack.steps {
                    let gradient = oracle.kl_gradient(&x, &clean_probs)?;
                    x = projected_step(
                        &x,
                        &gradient,
                        pixels,
                        Norm::Linf,
                        eps,
                        self.config.step_size * scale,
                        image_len,
                    );
                }
                Ok(x)
            }
        }
    }
}

impl TrainHooks for AdversarialTraining {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "adversarial": self.config })
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let device = shard.images.device();
        let n = shard.indices.len();
        let labels: Vec<u32> = shard
            .labels
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|l| l as u32)
            .collect();
        let pixels = self.to_pixels(shard.images);
        let adversarial = if self.config.eps_at(self.step) > 0.0 {
            // An attack can only fail on shapes the trainer already checked; train on the
            // clean images rather than abort the run if it ever does.
            self.attack(model, &pixels, &labels, shard.indices).ok()
        } else {
            None
        };
        let Some(adversarial) = adversarial else {
            let logits = model.forward(shard.images.clone());
            let loss = cross_entropy.forward(logits.clone(), shard.labels);
            return (logits, loss);
        };
        let attacked = self.to_normalised(adversarial, n, &device);
        match self.config.method {
            AdversarialMethod::Pgd | AdversarialMethod::FgsmRs => {
                let logits = model.forward(attacked);
                let loss = cross_entropy.forward(logits.clone(), shard.labels);
                (logits, loss)
            }
            AdversarialMethod::Trades => {
                let clean = model.forward(shard.images.clone());
                let adv = model.forward(attacked);
                let natural = cross_entropy.forward(clean.clone(), shard.labels);
                let kl = (softmax(clean.clone(), 1)
                    * (log_softmax(clean.clone(), 1) - log_softmax(adv, 1)))
                .sum()
                .div_scalar(n as f64);
                let loss = natural + kl.mul_scalar(self.config.trades_beta as f64);
                (clean, loss)
            }
        }
    }

    fn after_step(&mut self, model: KeenModel, step: usize, _total_steps: usize) -> KeenModel {
        self.step = step;
        if let Some(validation) = &mut self.validation {
            if step.is_multiple_of(validation.steps_per_epoch) {
                let epoch = step / validation.steps_per_epoch;
                if let Err(e) = validation.run(&model, epoch, &self.normalization) {
                    eprintln!("adversarial validation failed: {e}");
                    self.validation_error.get_or_insert(e);
                }
            }
        }
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OptimizerKind, TrainConfig};
    use crate::schedule::Decay;
    use crate::{train_with, TrainOptions};
    use keen_data::augment::AugmentConfig;
    use keen_data::toy::{halves_dataset, Halves};

    fn toy_config() -> TrainConfig {
        TrainConfig {
            model: "cnn-small".into(),
            dataset: "halves".into(),
            epochs: 1,
            batch_size: 16,
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            warmup_epochs: 0.0,
            decay: Decay::Constant,
            label_smoothing: 0.0,
            seed: 7,
            val_fraction: 0.25,
            augment: AugmentConfig::none(),
            max_train_images: None,
            mix: Default::default(),
            drop_path: 0.0,
            steps_per_epoch: None,
            labels_per_class: None,
            fixmatch: None,
            ema_decay: None,
        }
    }

    fn options(dir: &std::path::Path, resume: bool) -> TrainOptions {
        TrainOptions {
            out_dir: dir.to_path_buf(),
            resume,
            device: Device::flex(),
            extra_devices: vec![],
            progress: false,
            stop_after_epochs: None,
        }
    }

    fn hooks(method: AdversarialMethod, eps: f32, data: &ImageDataset) -> AdversarialTraining {
        let config = AdversarialConfig {
            steps: 2,
            step_size: eps / 2.0,
            ramp_steps: 2,
            ..AdversarialConfig::new(method, eps)
        };
        AdversarialTraining::new(config, Normalization::fit(data), data.image_shape()).unwrap()
    }

    #[test]
    fn every_method_trains_and_records_its_settings() {
        let data = halves_dataset(64, 1, Halves::LeftRight);
        for method in [
            AdversarialMethod::Pgd,
            AdversarialMethod::Trades,
            AdversarialMethod::FgsmRs,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let val: Vec<usize> = (0..8).collect();
            let spec = ModelSpec::new("cnn-small", data.image_shape(), 2);
            let validation = RobustValidation::new(
                &data,
                &val,
                0.1,
                2,
                3,
                dir.path().to_path_buf(),
                spec,
                BTreeMap::new(),
            );
            let mut h = hooks(method, 0.1, &data).with_validation(validation);
            let summary = train_with(
                &toy_config(),
                &data,
                &options(dir.path(), false),
                None,
                &mut h,
            )
            .unwrap();
            assert!(summary.finished, "{method:?}");
            assert!(summary.history[0].train_loss.is_finite(), "{method:?}");
            assert!(h.validation_error.is_none());
            let stored = std::fs::read_to_string(dir.path().join("hooks.json")).unwrap();
            assert!(stored.contains("\"eps\""), "{stored}");
            let log = std::fs::read_to_string(dir.path().join("adversarial-val.jsonl")).unwrap();
            assert_eq!(log.lines().count(), 1, "{log}");
            assert!(dir.path().join("model-best-robust.safetensors").exists());
        }
    }

    #[test]
    fn resume_refuses_other_adversarial_settings() {
        let data = halves_dataset(64, 2, Halves::LeftRight);
        let dir = tempfile::tempdir().unwrap();
        let mut config = toy_config();
        config.epochs = 2;
        let mut first = hooks(AdversarialMethod::FgsmRs, 0.1, &data);
        let opts = TrainOptions {
            stop_after_epochs: Some(1),
            ..options(dir.path(), false)
        };
        train_with(&config, &data, &opts, None, &mut first).unwrap();
        let mut other = hooks(AdversarialMethod::FgsmRs, 0.2, &data);
        let err = train_with(&config, &data, &options(dir.path(), true), None, &mut other);
        assert!(err.is_err());
        let mut same = hooks(AdversarialMethod::FgsmRs, 0.1, &data);
        assert!(train_with(&config, &data, &options(dir.path(), true), None, &mut same).is_ok());
    }

    #[test]
    fn eps_ramps_up_linearly() {
        let config = AdversarialConfig {
            ramp_steps: 4,
            ..AdversarialConfig::new(AdversarialMethod::Pgd, 0.4)
        };
        assert!((config.eps_at(0) - 0.1).abs() < 1e-6);
        assert!((config.eps_at(3) - 0.4).abs() < 1e-6);
        assert!((config.eps_at(100) - 0.4).abs() < 1e-6);
        let flat = AdversarialConfig::new(AdversarialMethod::Pgd, 0.4);
        assert_eq!(flat.eps_at(0), 0.4);
    }

    #[test]
    fn settings_are_checked_and_parsed() {
        assert_eq!(
            "fgsm-rs".parse::<AdversarialMethod>().unwrap(),
            AdversarialMethod::FgsmRs
        );
        assert!("mart".parse::<AdversarialMethod>().is_err());
        let bad = AdversarialConfig::new(AdversarialMethod::Pgd, 1.5);
        assert!(bad.validate().is_err());
        let fast = AdversarialConfig::new(AdversarialMethod::FgsmRs, 0.3);
        assert!((fast.step_size - 0.375).abs() < 1e-6);
    }

    #[test]
    fn pixels_round_trip_through_the_normalisation() {
        let data = halves_dataset(8, 3, Halves::LeftRight);
        let h = hooks(AdversarialMethod::Pgd, 0.1, &data);
        let [c, hh, w] = data.image_shape();
        let pixels: Vec<f32> = (0..2 * c * hh * w)
            .map(|i| (i % 17) as f32 / 16.0)
            .collect();
        let tensor = h.to_normalised(pixels.clone(), 2, &Device::flex());
        let back = h.to_pixels(&tensor);
        for (a, b) in pixels.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
