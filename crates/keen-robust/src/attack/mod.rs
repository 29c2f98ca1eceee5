//! Adversarial attacks in pixel space: FGSM, PGD and APGD-CE, under an L∞ or L2 budget, and
//! the checks that tell a robust model from one that only hides its gradient.
//!
//! The attacks never see a framework: a model is anything that implements [`InputGradient`],
//! which returns, for a batch of images with pixels in `[0, 1]`, each image's cross-entropy,
//! the logits and the gradient of each image's loss with respect to its pixels. The model
//! normalises its input itself and runs in inference mode (batch norm on its running
//! statistics, no dropout); keen-train implements the trait for every keen model.
//!
//! Every perturbation is projected onto the ε-ball around the clean image and then clipped to
//! `[0, 1]`; clipping a point of the ball only moves each coordinate towards the clean image,
//! so the result stays inside both.
//!
//! - [`fgsm`]: one signed (L∞) or normalised (L2) gradient step, optionally from a random start
//!   (the fast adversarial training of Wong, Rice & Kolter 2020);
//! - [`pgd`]: projected gradient descent (Madry et al. 2018) with random starts and restarts,
//!   keeping each image's worst case;
//! - [`apgd`]: APGD-CE (Croce & Hein 2020), step-size halving at checkpoints and momentum 0.75;
//! - [`masking`]: the gradient-masking checks run with every evaluation;
//! - [`toy`]: small models with exact gradients (and one that masks them) for tests.

pub mod apgd;
pub mod fgsm;
pub mod masking;
pub mod pgd;
mod project;
pub mod toy;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::error::RobustError;

pub use apgd::{apgd, apgd_checkpoints};
pub use fgsm::{fgsm, fgsm_images};
pub use masking::{masking_checks, MaskingCheck, MaskingReport};
pub use pgd::{pgd, pgd_images};
pub use project::SplitMix64;

/// What a model returns for one batch: per-image losses, logits and input gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct LossGradient {
    /// Cross-entropy of each image `[n]`.
    pub loss: Vec<f32>,
    /// Logits, row-major `[n, classes]`.
    pub logits: Vec<f32>,
    /// Gradient of each image's loss with respect to its pixels, laid out like the pixels.
    pub gradient: Vec<f32>,
}

/// A classifier the attacks can query: pixels in `[0, 1]` in, losses, logits and gradients out.
///
/// `pixels` holds `labels.len()` images of [`InputGradient::image_len`] values each. The model
/// must be deterministic (inference mode) so that the loss an attack measured is the loss the
/// evaluation sees.
pub trait InputGradient {
    /// Values per image (`channels × height × width`).
    fn image_len(&self) -> usize;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// Per-image cross-entropy, logits, and the gradient of each image's loss wrt its pixels.
    fn loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<LossGradient, RobustError>;

    /// Like [`InputGradient::loss_and_gradient`] for the cross-entropy of `logits / temperature`
    /// (ODIN's input pre-processing differentiates a softmax at a high temperature, and its
    /// direction is not the temperature-1 gradient's). The returned logits are the model's own,
    /// untempered. By default only `temperature = 1` is available; models that can scale their
    /// logits inside the differentiated function override it.
    fn tempered_loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
        temperature: f32,
    ) -> Result<LossGradient, RobustError> {
        if temperature == 1.0 {
            self.loss_and_gradient(pixels, labels)
        } else {
            Err(RobustError::InvalidArgument {
                name: "temperature",
                value: temperature.to_string(),
                reason: "this model gives input gradients at temperature 1 only".into(),
            })
        }
    }

    /// Per-image cross-entropy and logits without the gradient; by default it computes the
    /// gradient and drops it (models with a cheaper forward pass override it).
    fn loss_and_logits(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), RobustError> {
        let out = self.loss_and_gradient(pixels, labels)?;
        Ok((out.loss, out.logits))
    }
}

/// The threat model's norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// Every pixel moves by at most ε.
    Linf,
    /// The perturbation's Euclidean length is at most ε.
    L2,
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        })
    }
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "l-inf" | "inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            other => Err(format!("unknown norm '{other}'; expected 'linf' or 'l2'")),
        }
    }
}

impl Norm {
    /// The smallest ε whose ball around any image of `image_len` pixels in `[0, 1]` holds the
    /// whole cube: 1 for L∞, `√image_len` for L2. An attack with this budget is unbounded.
    pub fn unbounded_eps(self, image_len: usize) -> f32 {
        match self {
            Norm::Linf => 1.0,
            Norm::L2 => (image_len as f32).sqrt(),
        }
    }
}

/// Which attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// One gradient step of size ε.
    Fgsm,
    /// Projected gradient descent.
    Pgd,
    /// Auto-PGD on the cross-entropy.
    Apgd,
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::Apgd => "apgd",
        })
    }
}

impl std::str::FromStr for AttackKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fgsm" => Ok(AttackKind::Fgsm),
            "pgd" => Ok(AttackKind::Pgd),
            "apgd" | "apgd-ce" => Ok(AttackKind::Apgd),
            other => Err(format!(
                "unknown attack '{other}'; expected fgsm, pgd or apgd"
            )),
        }
    }
}

/// One attack's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackConfig {
    /// The algorithm.
    pub kind: AttackKind,
    /// The threat model's norm.
    pub norm: Norm,
    /// The budget ε (pixel units, pixels in `[0, 1]`).
    pub eps: f32,
    /// Gradient steps (PGD, APGD; FGSM takes one).
    pub steps: usize,
    /// PGD's step size; `None` takes `2.5·ε / steps` (Madry et al.). FGSM with a random start
    /// uses it as its step (Wong et al. use `1.25·ε`), APGD ignores it (it starts at `2ε`).
    pub step_size: Option<f32>,
    /// Runs from independent random starts; each image keeps its worst case.
    pub restarts: usize,
    /// Start from a uniformly random point of the ball (always on after the first restart).
    pub random_start: bool,
    /// Seed of the random starts.
    pub seed: u64,
}

impl AttackConfig {
    /// PGD's usual setting: `steps` steps of `2.5·ε/steps` from a random start.
    pub fn new(kind: AttackKind, norm: Norm, eps: f32) -> Self {
        Self {
            kind,
            norm,
            eps,
            steps: 50,
            step_size: None,
            restarts: 1,
            random_start: kind != AttackKind::Fgsm,
            seed: 0,
        }
    }

    /// The step size PGD uses.
    pub fn pgd_step_size(&self) -> f32 {
        self.step_size
            .unwrap_or(2.5 * self.eps / self.steps.max(1) as f32)
    }

    /// Checks ε, steps, step size and restarts.
    pub fn validate(&self) -> Result<(), RobustError> {
        let bad = |name: &'static str, value: String, reason: &str| RobustError::InvalidArgument {
            name,
            value,
            reason: reason.into(),
        };
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(bad("eps", self.eps.to_string(), "must be finite and ≥ 0"));
        }
        if self.kind != AttackKind::Fgsm && self.steps == 0 {
            return Err(bad(
                "steps",
                "0".into(),
                "PGD and APGD need at least one step",
            ));
        }
        if self.restarts == 0 {
            return Err(bad("restarts", "0".into(), "need at least one run"));
        }
        if let Some(a) = self.step_size {
            if !(a.is_finite() && a > 0.0) {
                return Err(bad("step_size", a.to_string(), "must be finite and > 0"));
            }
        }
        Ok(())
    }
}

/// The attack's result for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackOutcome {
    /// The adversarial images, laid out like the clean ones.
    pub adversarial: Vec<f32>,
    /// Each image's cross-entropy at its adversarial image.
    pub loss: Vec<f32>,
    /// Whether the model misclassifies each adversarial image (true for images it already
    /// misclassified clean).
    pub fooled: Vec<bool>,
}

impl AttackOutcome {
    /// The model's loss and verdict at `adversarial`.
    pub fn evaluate(
        model: &dyn InputGradient,
        adversarial: Vec<f32>,
        labels: &[u32],
    ) -> Result<Self, RobustError> {
        let (loss, logits) = model.loss_and_logits(&adversarial, labels)?;
        let fooled = misclassified(&logits, model.num_classes(), labels);
        Ok(Self {
            adversarial,
            loss,
            fooled,
        })
    }

    /// Fraction of images still classified correctly.
    pub fn accuracy(&self) -> f64 {
        let robust = self.fooled.iter().filter(|&&f| !f).count();
        robust as f64 / self.fooled.len().max(1) as f64
    }

    /// Keeps, image by image, the worse of `self` and `other`: fooled beats not fooled, then
    /// the higher loss wins. `which` selects the images of `other` (positions in `self`).
    pub(crate) fn keep_worst(&mut self, other: &AttackOutcome, which: &[usize], image_len: usize) {
        for (j, &i) in which.iter().enumerate() {
            let worse = (other.fooled[j], other.loss[j]) > (self.fooled[i], self.loss[i]);
            if worse {
                self.fooled[i] = other.fooled[j];
                self.loss[i] = other.loss[j];
                self.adversarial[i * image_len..(i + 1) * image_len]
                    .copy_from_slice(&other.adversarial[j * image_len..(j + 1) * image_len]);
            }
        }
    }
}

/// Runs `config`'s attack on one batch.
pub fn run_attack(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
) -> Result<AttackOutcome, RobustError> {
    config.validate()?;
    match config.kind {
        AttackKind::Fgsm => fgsm(model, pixels, labels, config),
        AttackKind::Pgd => pgd(model, pixels, labels, config),
        AttackKind::Apgd => apgd(model, pixels, labels, config),
    }
}

/// Checks a batch: whole images, one label each, valid labels, pixels finite and in `[0, 1]`.
pub(crate) fn check_batch(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
) -> Result<(), RobustError> {
    let image_len = model.image_len();
    if labels.is_empty() {
        return Err(RobustError::Empty { what: "labels" });
    }
    if pixels.len() != labels.len() * image_len {
        return Err(RobustError::LengthMismatch {
            what: "pixels (labels × image size)",
            expected: labels.len() * image_len,
            found: pixels.len(),
        });
    }
    let classes = model.num_classes();
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(RobustError::LabelOutOfRange {
            index,
            label,
            classes,
        });
    }
    if let Some(index) = pixels
        .iter()
        .position(|p| !(p.is_finite() && (0.0..=1.0).contains(p)))
    {
        return Err(RobustError::InvalidArgument {
            name: "pixels",
            value: format!("{} at position {index}", pixels[index]),
            reason: "attacks work on pixels in [0, 1]; pass images before normalisation".into(),
        });
    }
    Ok(())
}

/// Whether each logits row's top class differs from its label.
pub(crate) fn misclassified(logits: &[f32], classes: usize, labels: &[u32]) -> Vec<bool> {
    logits
        .chunks(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best != label as usize
        })
        .collect()
}

/// One point of an ε–accuracy curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpsPoint {
    /// The budget.
    pub eps: f32,
    /// Accuracy under attack.
    pub accuracy: f64,
    /// Mean cross-entropy at the adversarial images.
    pub mean_loss: f64,
    /// Images attacked.
    pub images: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Attacks every image of a data set in batches of `batch_size` and reports accuracy and mean
/// loss; `progress` is called with the number of images finished after every batch.
pub fn robust_accuracy(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<EpsPoint, RobustError> {
    let started = std::time::Instant::now();
    let image_len = model.image_len();
    check_batch(model, pixels, labels)?;
    let batch_size = batch_size.max(1);
    let (mut robust, mut loss_sum, mut done) = (0usize, 0.0f64, 0usize);
    for (b, chunk) in labels.chunks(batch_size).enumerate() {
        let start = b * batch_size;
        let images = &pixels[start * image_len..(start + chunk.len()) * image_len];
        // Each batch draws its own random starts, seeded by its position.
        let mut batch_config = config.clone();
        batch_config.seed = config
            .seed
            .wrapping_add((start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let outcome = run_attack(model, images, chunk, &batch_config)?;
        robust += outcome.fooled.iter().filter(|&&f| !f).count();
        loss_sum += outcome.loss.iter().map(|&l| l as f64).sum::<f64>();
        done += chunk.len();
        progress(done);
    }
    Ok(EpsPoint {
        eps: config.eps,
        accuracy: robust as f64 / done.max(1) as f64,
        mean_loss: loss_sum / done.max(1) as f64,
        images: done,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One run of an iterative attack on a sub-batch: `(model, clean, labels, first_run, rng)`.
pub(crate) type SingleRun<'r> = dyn FnMut(
        &dyn InputGradient,
        &[f32],
        &[u32],
        bool,
        &mut SplitMix64,
    ) -> Result<AttackOutcome, RobustError>
    + 'r;

/// Starts from the clean images' outcome, then runs `run` `config.restarts` times, each time on
/// the images not fooled yet (a fooled image stays fooled, so attacking it again cannot change
/// the accuracy), keeping each image's worst case.
pub(crate) fn with_restarts(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
    run: &mut SingleRun<'_>,
) -> Result<AttackOutcome, RobustError> {
    config.validate()?;
    check_batch(model, pixels, labels)?;
    let image_len = model.image_len();
    let mut rng = SplitMix64::new(config.seed);
    let mut best = AttackOutcome::evaluate(model, pixels.to_vec(), labels)?;
    for restart in 0..config.restarts {
        // The first run attacks every image (so its loss is maximised too); later runs only
        // the ones still standing.
        let which: Vec<usize> = (0..labels.len())
            .filter(|&i| restart == 0 || !best.fooled[i])
            .collect();
        if which.is_empty() {
            break;
        }
        let mut clean = Vec::with_capacity(which.len() * image_len);
        let mut sub_labels = Vec::with_capacity(which.len());
        for &i in &which {
            clean.extend_from_slice(&pixels[i * image_len..(i + 1) * image_len]);
            sub_labels.push(labels[i]);
        }
        let outcome = run(model, &clean, &sub_labels, restart == 0, &mut rng)?;
        best.keep_worst(&outcome, &which, image_len);
    }
    Ok(best)
}

/// The worst iterate seen so far, image by image, as an iterative attack tracks it.
pub(crate) struct WorstSoFar {
    pub(crate) outcome: AttackOutcome,
    everyone: Vec<usize>,
    image_len: usize,
}

impl WorstSoFar {
    /// Starts from `x` with its loss and logits.
    pub(crate) fn new(x: &[f32], loss: &[f32], fooled: Vec<bool>, image_len: usize) -> Self {
        Self {
            outcome: AttackOutcome {
                adversarial: x.to_vec(),
                loss: loss.to_vec(),
                fooled,
            },
            everyone: (0..loss.len()).collect(),
            image_len,
        }
    }

    /// Takes, image by image, `x` where it is worse for the model.
    pub(crate) fn update(&mut self, x: &[f32], loss: &[f32], fooled: Vec<bool>) {
        let candidate = AttackOutcome {
            adversarial: x.to_vec(),
            loss: loss.to_vec(),
            fooled,
        };
        self.outcome
            .keep_worst(&candidate, &self.everyone, self.image_len);
    }
}

/// A gradient step of `step` along `gradient`'s ascent direction, projected onto the ε-ball
/// around `clean` and `[0, 1]`, for a batch of images of `image_len` values: the building block
/// for attacks on other losses (TRADES maximises a KL divergence).
pub fn projected_step(
    current: &[f32],
    gradient: &[f32],
    clean: &[f32],
    norm: Norm,
    eps: f32,
    step: f32,
    image_len: usize,
) -> Vec<f32> {
    let ball = project::Ball {
        clean,
        norm,
        eps,
        image_len,
    };
    let mut out = vec![0.0f32; current.len()];
    let images = current.len() / image_len.max(1);
    ball.step(current, gradient, &vec![step; images], &mut out);
    out
}

/// Accuracy and mean loss on the clean images (ε = 0), in batches of `batch_size`.
pub fn clean_accuracy(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    batch_size: usize,
) -> Result<EpsPoint, RobustError> {
    let started = std::time::Instant::now();
    check_batch(model, pixels, labels)?;
    let image_len = model.image_len();
    let (mut robust, mut loss_sum) = (0usize, 0.0f64);
    for (b, chunk) in labels.chunks(batch_size.max(1)).enumerate() {
        let start = b * batch_size.max(1);
        let images = &pixels[start * image_len..(start + chunk.len()) * image_len];
        let outcome = AttackOutcome::evaluate(model, images.to_vec(), chunk)?;
        robust += outcome.fooled.iter().filter(|&&f| !f).count();
        loss_sum += outcome.loss.iter().map(|&l| l as f64).sum::<f64>();
    }
    Ok(EpsPoint {
        eps: 0.0,
        accuracy: robust as f64 / labels.len() as f64,
        mean_loss: loss_sum / labels.len() as f64,
        images: labels.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
