//! ODIN (Liang, Li & Srikant, ICLR 2018): temperature scaling plus a small input perturbation
//! that raises the maximum softmax more for in-distribution images than for OOD ones.
//!
//! For an image `x` with predicted class `ŷ`, ODIN steps against the gradient of the tempered
//! cross-entropy, `x̃ = x − ε · sign(∇ₓ[−log S_ŷ(x; T)])`, and scores `max_c S_c(x̃; T)`, where
//! `S(x; T) = softmax(f(x) / T)`. The step raises `S_ŷ` to first order.
//!
//! **Units of ε.** The paper's ε (0.0014 for its CIFAR DenseNet) is added by the official code
//! (and OpenOOD's) to *normalised* inputs after dividing the sign by each channel's standard
//! deviation: a step of exactly ε in `[0, 1]` pixel units. keen's models normalise inside
//! [`InputGradient`], so keen adds ε to pixels in `[0, 1]`: the same step, no conversion. Like
//! the paper, keen does not clip `x̃` to `[0, 1]`: ODIN is a scoring transform, not an attack,
//! and clipping would pin the black background of a Fashion-MNIST image.
//!
//! **Choosing ε.** The paper tunes `T` and ε on 1,000 images of the OOD test distribution, which
//! leaks it. [`choose_odin_epsilon`] instead follows Hsu et al. (2020, Generalized ODIN): the ε
//! that maximises the mean score of *in-distribution* validation images. `T` has no such
//! criterion (the in-distribution score falls as `T` grows), so it stays a setting.

use serde::{Deserialize, Serialize};

use super::{check_temperature, odin_scores};
use crate::attack::InputGradient;
use crate::error::RobustError;

/// ODIN's two settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdinConfig {
    /// Softmax temperature `T` (the paper's default: 1000).
    pub temperature: f32,
    /// Perturbation ε in pixel units, pixels in `[0, 1]` (the paper's: 0.0014).
    pub epsilon: f32,
}

impl Default for OdinConfig {
    fn default() -> Self {
        Self {
            temperature: 1000.0,
            epsilon: 0.0014,
        }
    }
}

impl OdinConfig {
    /// Checks `T > 0` and `ε ≥ 0`, both finite.
    pub fn validate(&self) -> Result<(), RobustError> {
        check_temperature(self.temperature as f64)?;
        check_epsilon(self.epsilon)
    }
}

fn check_epsilon(epsilon: f32) -> Result<(), RobustError> {
    if epsilon.is_finite() && epsilon >= 0.0 {
        Ok(())
    } else {
        Err(RobustError::InvalidArgument {
            name: "epsilon",
            value: epsilon.to_string(),
            reason: "ODIN's perturbation must be finite and >= 0".into(),
        })
    }
}

/// The default ε grid of [`choose_odin_epsilon`]: the paper's range `[0, 0.004]` and the larger
/// steps Generalized ODIN searches.
pub const ODIN_EPSILON_GRID: [f32; 8] = [0.0, 0.0005, 0.001, 0.0014, 0.002, 0.004, 0.008, 0.016];

/// The top class of each row of `[n, classes]` logits (the first one on ties).
pub fn predicted_classes(logits: &[f32], classes: usize) -> Vec<u32> {
    logits
        .chunks(classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

/// The direction ODIN moves each pixel *against*: `sign(∇ₓ CE(f(x) / T, ŷ))` in `{−1, 0, 1}`
/// (0 where the gradient is exactly 0), for images `pixels` with predicted classes `predicted`.
pub fn odin_gradient_sign(
    model: &dyn InputGradient,
    pixels: &[f32],
    predicted: &[u32],
    temperature: f32,
) -> Result<Vec<f32>, RobustError> {
    check_temperature(temperature as f64)?;
    check_images(model, pixels, predicted.len())?;
    let out = model.tempered_loss_and_gradient(pixels, predicted, temperature)?;
    Ok(out
        .gradient
        .iter()
        .map(|&g| {
            // f32::signum(0.0) is 1; a pixel the score does not depend on should not move.
            if g > 0.0 {
                1.0
            } else if g < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
        .collect())
}

/// `x − ε · sign`, unclipped (see the [module doc](self)).
pub fn odin_perturb(pixels: &[f32], sign: &[f32], epsilon: f32) -> Vec<f32> {
    pixels
        .iter()
        .zip(sign)
        .map(|(&x, &s)| x - epsilon * s)
        .collect()
}

/// ODIN scores (higher = more in-distribution) of images `pixels` in batches of `batch_size`.
///
/// `predicted` holds each image's predicted class (from its clean logits, which the caller
/// usually has already; [`predicted_classes`] computes it), so each batch costs one forward and
/// backward pass for the gradient and one forward pass at the perturbed images.
pub fn odin_image_scores(
    model: &dyn InputGradient,
    pixels: &[f32],
    predicted: &[u32],
    config: &OdinConfig,
    batch_size: usize,
) -> Result<Vec<f32>, RobustError> {
    config.validate()?;
    check_images(model, pixels, predicted.len())?;
    let image_len = model.image_len();
    let mut scores = Vec::with_capacity(predicted.len());
    for (b, labels) in predicted.chunks(batch_size.max(1)).enumerate() {
        let start = b * batch_size.max(1) * image_len;
        let images = &pixels[start..start + labels.len() * image_len];
        let perturbed = if config.epsilon == 0.0 {
            images.to_vec()
        } else {
            let sign = odin_gradient_sign(model, images, labels, config.temperature)?;
            odin_perturb(images, &sign, config.epsilon)
        };
        let (_, logits) = model.loss_and_logits(&perturbed, labels)?;
        scores.extend(odin_scores(
            &logits,
            model.num_classes(),
            config.temperature as f64,
        )?);
    }
    Ok(scores)
}

/// One candidate of [`choose_odin_epsilon`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdinCandidate {
    /// The perturbation tried.
    pub epsilon: f32,
    /// Mean ODIN score of the in-distribution validation images at this ε.
    pub mean_in_score: f64,
}

/// The ε [`choose_odin_epsilon`] picked, with every candidate's criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdinEpsilonChoice {
    /// The chosen ε (the first of the best on ties, so the smallest when the grid ascends).
    pub epsilon: f32,
    /// Every candidate in grid order.
    pub candidates: Vec<OdinCandidate>,
    /// Validation images used.
    pub images: usize,
}

/// Picks ODIN's ε from `grid` as the one maximising the mean score of in-distribution
/// validation images `pixels` (Hsu et al. 2020), at temperature `temperature`. The gradient
/// does not depend on ε, so each batch needs one backward pass and one forward pass per
/// candidate.
pub fn choose_odin_epsilon(
    model: &dyn InputGradient,
    pixels: &[f32],
    predicted: &[u32],
    temperature: f32,
    grid: &[f32],
    batch_size: usize,
) -> Result<OdinEpsilonChoice, RobustError> {
    check_temperature(temperature as f64)?;
    check_images(model, pixels, predicted.len())?;
    if grid.is_empty() {
        return Err(RobustError::Empty { what: "ε grid" });
    }
    for &epsilon in grid {
        check_epsilon(epsilon)?;
    }
    let image_len = model.image_len();
    let mut sums = vec![0.0f64; grid.len()];
    for (b, labels) in predicted.chunks(batch_size.max(1)).enumerate() {
        let start = b * batch_size.max(1) * image_len;
        let images = &pixels[start..start + labels.len() * image_len];
        let sign = odin_gradient_sign(model, images, labels, temperature)?;
        for (sum, &epsilon) in sums.iter_mut().zip(grid) {
            let (_, logits) =
                model.loss_and_logits(&odin_perturb(images, &sign, epsilon), labels)?;
            let scores = odin_scores(&logits, model.num_classes(), temperature as f64)?;
            *sum += scores.iter().map(|&s| s as f64).sum::<f64>();
        }
    }
    let n = predicted.len() as f64;
    let candidates: Vec<OdinCandidate> = grid
        .iter()
        .zip(&sums)
        .map(|(&epsilon, &sum)| OdinCandidate {
            epsilon,
            mean_in_score: sum / n,
        })
        .collect();
    let best = candidates
        .iter()
        .fold(&candidates[0], |best, c| {
            if c.mean_in_score > best.mean_in_score {
                c
            } else {
                best
            }
        })
        .epsilon;
    Ok(OdinEpsilonChoice {
        epsilon: best,
        candidates,
        images: predicted.len(),
    })
}

/// Checks that `pixels` holds `count ≥ 1` whole finite images of the model's size.
fn check_images(
    model: &dyn InputGradient,
    pixels: &[f32],
    count: usize,
) -> Result<(), RobustError> {
    if count == 0 {
        return Err(RobustError::Empty { what: "images" });
    }
    let expected = count * model.image_len();
    if pixels.len() != expected {
        return Err(RobustError::LengthMismatch {
            what: "pixels (predicted labels × image size)",
            expected,
            found: pixels.len(),
        });
    }
    crate::error::check_finite("pixels", pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::toy::{LinearModel, QuantisedInputModel};

    fn identity_model() -> LinearModel {
        LinearModel {
            weights: vec![1.0, 0.0, 0.0, 1.0],
            bias: vec![0.0, 0.0],
        }
    }

    #[test]
    fn the_step_raises_the_tempered_max_softmax_as_computed_by_hand() {
        // logits = x, so x = (0.6, 0.4) predicts class 0. With p = softmax(x / T),
        // ∇ₓ CE(x / T, 0) = (p − e₀) / T = (p₀ − 1, p₁) / T: signs (−, +). ODIN moves against
        // them: x̃ = (0.6 + ε, 0.4 − ε), which widens the margin by 2ε.
        let model = identity_model();
        let x = [0.6f32, 0.4];
        let predicted = predicted_classes(&x, 2);
        assert_eq!(predicted, vec![0]);
        let sign = odin_gradient_sign(&model, &x, &predicted, 1000.0).expect("sign");
        assert_eq!(sign, vec![-1.0, 1.0]);
        let eps = 0.01;
        let perturbed = odin_perturb(&x, &sign, eps);
        assert_eq!(perturbed, vec![0.6 + eps, 0.4 - eps]);
        let config = OdinConfig {
            temperature: 1000.0,
            epsilon: eps,
        };
        let score = odin_image_scores(&model, &x, &predicted, &config, 8).expect("scores")[0];
        // max softmax at T of a margin m between two logits: 1 / (1 + exp(−m / T)).
        let by_hand = 1.0 / (1.0 + (-(0.2f64 + 2.0 * eps as f64) / 1000.0).exp());
        assert!(
            (score as f64 - by_hand).abs() < 1e-6,
            "{score} vs {by_hand}"
        );
        let clean = odin_image_scores(
            &model,
            &x,
            &predicted,
            &OdinConfig {
                epsilon: 0.0,
                ..config
            },
            8,
        )
        .expect("scores")[0];
        assert!(score > clean);
    }

    #[test]
    fn small_steps_never_lower_the_score_of_a_linear_model() {
        // log S_ŷ is concave in the logits and the logits are linear in x, so a small signed
        // gradient step cannot lower it; checked on a 3-class, 4-pixel model.
        let model = LinearModel {
            weights: vec![
                0.5, -1.0, 2.0, 0.3, //
                -0.7, 0.2, 0.1, 1.5, //
                1.1, 0.9, -0.4, -0.2,
            ],
            bias: vec![0.1, -0.2, 0.05],
        };
        let pixels: Vec<f32> = (0..5 * 4).map(|i| ((i * 37) % 11) as f32 / 10.0).collect();
        let (_, logits) = model
            .loss_and_logits(&pixels, &[0; 5])
            .expect("forward pass");
        let predicted = predicted_classes(&logits, 3);
        for temperature in [1.0, 10.0, 1000.0] {
            let at = |epsilon| {
                let config = OdinConfig {
                    temperature,
                    epsilon,
                };
                odin_image_scores(&model, &pixels, &predicted, &config, 2).expect("scores")
            };
            for (after, before) in at(0.002).iter().zip(at(0.0)) {
                assert!(after >= &before, "T {temperature}: {after} < {before}");
            }
        }
    }

    #[test]
    fn epsilon_choice_keeps_the_best_in_distribution_mean() {
        let model = identity_model();
        let pixels = [0.6f32, 0.4, 0.1, 0.9];
        let predicted = predicted_classes(&pixels, 2);
        let grid = [0.0, 0.001, 0.01];
        let choice =
            choose_odin_epsilon(&model, &pixels, &predicted, 1000.0, &grid, 1).expect("choice");
        // For a linear model the margin grows with ε, so the largest step wins.
        assert_eq!(choice.epsilon, 0.01);
        assert_eq!(choice.candidates.len(), 3);
        assert!(choice.candidates[0].mean_in_score < choice.candidates[2].mean_in_score);
        assert!(choose_odin_epsilon(&model, &pixels, &predicted, 1000.0, &[], 1).is_err());
    }

    #[test]
    fn bad_settings_and_models_without_tempered_gradients_are_errors() {
        let model = identity_model();
        let x = [0.6f32, 0.4];
        let bad_eps = OdinConfig {
            temperature: 1000.0,
            epsilon: -1.0,
        };
        assert!(odin_image_scores(&model, &x, &[0], &bad_eps, 1).is_err());
        assert!(odin_gradient_sign(&model, &x, &[0], 0.0).is_err());
        assert!(odin_gradient_sign(&model, &x[..1], &[0], 1.0).is_err());
        let masked = QuantisedInputModel {
            linear: identity_model(),
            levels: 4.0,
        };
        assert!(odin_gradient_sign(&masked, &x, &[0], 1000.0).is_err());
        assert!(odin_gradient_sign(&masked, &x, &[0], 1.0).is_ok());
    }
}
