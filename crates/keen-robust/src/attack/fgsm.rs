//! FGSM (Goodfellow et al. 2015): one step of size ε along the gradient's sign (L∞) or its
//! direction (L2, "fast gradient method").
//!
//! With `random_start` it is the FGSM of fast adversarial training (Wong, Rice & Kolter 2020):
//! start from a uniform point of the ε-ball, take one step of `step_size` (default `1.25·ε`),
//! project back onto the ball.

use super::project::{Ball, SplitMix64};
use super::{check_batch, AttackConfig, AttackOutcome, InputGradient};
use crate::error::RobustError;

/// Runs FGSM on one batch (`config.restarts` random starts when `random_start` is on; without
/// one, a single deterministic step). Images the model misclassifies clean count as fooled.
pub fn fgsm(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
) -> Result<AttackOutcome, RobustError> {
    config.validate()?;
    check_batch(model, pixels, labels)?;
    let runs = if config.random_start {
        config.restarts
    } else {
        1
    };
    let ball = Ball {
        clean: pixels,
        norm: config.norm,
        eps: config.eps,
        image_len: model.image_len(),
    };
    let mut rng = SplitMix64::new(config.seed);
    let everyone: Vec<usize> = (0..labels.len()).collect();
    let mut best = AttackOutcome::evaluate(model, pixels.to_vec(), labels)?;
    for _ in 0..runs {
        let (start, step) = if config.random_start {
            (
                ball.random_start(&mut rng),
                config.step_size.unwrap_or(1.25 * config.eps),
            )
        } else {
            (pixels.to_vec(), config.step_size.unwrap_or(config.eps))
        };
        let at_start = model.loss_and_gradient(&start, labels)?;
        let mut adversarial = vec![0.0f32; pixels.len()];
        let steps = vec![step; labels.len()];
        ball.step(&start, &at_start.gradient, &steps, &mut adversarial);
        let outcome = AttackOutcome::evaluate(model, adversarial, labels)?;
        best.keep_worst(&outcome, &everyone, ball.image_len);
    }
    Ok(best)
}

/// FGSM's adversarial images without the evaluation at the end: what fast adversarial
/// training needs (one gradient computation per image).
pub fn fgsm_images(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
) -> Result<Vec<f32>, RobustError> {
    config.validate()?;
    check_batch(model, pixels, labels)?;
    let ball = Ball {
        clean: pixels,
        norm: config.norm,
        eps: config.eps,
        image_len: model.image_len(),
    };
    let mut rng = SplitMix64::new(config.seed);
    let (start, step) = if config.random_start {
        (
            ball.random_start(&mut rng),
            config.step_size.unwrap_or(1.25 * config.eps),
        )
    } else {
        (pixels.to_vec(), config.step_size.unwrap_or(config.eps))
    };
    let at_start = model.loss_and_gradient(&start, labels)?;
    let mut adversarial = vec![0.0f32; pixels.len()];
    ball.step(
        &start,
        &at_start.gradient,
        &vec![step; labels.len()],
        &mut adversarial,
    );
    Ok(adversarial)
}
