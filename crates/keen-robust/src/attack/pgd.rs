//! PGD (Madry et al. 2018): repeated gradient steps, each projected back onto the ε-ball and
//! the pixel box, from a random start; with restarts, each image keeps its worst case.
//!
//! Every iterate's loss and logits come with its gradient, so the attack returns the worst
//! iterate it saw (a misclassified one before any correctly classified one, then the highest
//! loss), not merely the last.

use super::project::{Ball, SplitMix64};
use super::{misclassified, with_restarts, AttackConfig, AttackOutcome, InputGradient, WorstSoFar};
use crate::error::RobustError;

/// Runs PGD on one batch: `config.restarts` runs of `config.steps` steps of
/// [`AttackConfig::pgd_step_size`].
pub fn pgd(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
) -> Result<AttackOutcome, RobustError> {
    with_restarts(
        model,
        pixels,
        labels,
        config,
        &mut |model, clean, labels, first, rng| pgd_once(model, clean, labels, config, first, rng),
    )
}

fn pgd_once(
    model: &dyn InputGradient,
    clean: &[f32],
    labels: &[u32],
    config: &AttackConfig,
    first_run: bool,
    rng: &mut SplitMix64,
) -> Result<AttackOutcome, RobustError> {
    let ball = Ball {
        clean,
        norm: config.norm,
        eps: config.eps,
        image_len: model.image_len(),
    };
    let classes = model.num_classes();
    let mut x = if config.random_start || !first_run {
        ball.random_start(rng)
    } else {
        clean.to_vec()
    };
    let steps = vec![config.pgd_step_size(); labels.len()];
    let mut next = vec![0.0f32; x.len()];
    let mut worst: Option<WorstSoFar> = None;
    for _ in 0..config.steps {
        let at_x = model.loss_and_gradient(&x, labels)?;
        let fooled = misclassified(&at_x.logits, classes, labels);
        match &mut worst {
            None => worst = Some(WorstSoFar::new(&x, &at_x.loss, fooled, ball.image_len)),
            Some(w) => w.update(&x, &at_x.loss, fooled),
        }
        ball.step(&x, &at_x.gradient, &steps, &mut next);
        std::mem::swap(&mut x, &mut next);
    }
    let last = AttackOutcome::evaluate(model, x, labels)?;
    Ok(match worst {
        None => last,
        Some(mut w) => {
            w.update(&last.adversarial, &last.loss, last.fooled);
            w.outcome
        }
    })
}

/// PGD's last iterate from one random start, without tracking the worst iterate or evaluating
/// the result: what Madry-style adversarial training feeds the model (`config.steps` gradient
/// computations per image).
pub fn pgd_images(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    config: &AttackConfig,
) -> Result<Vec<f32>, RobustError> {
    config.validate()?;
    super::check_batch(model, pixels, labels)?;
    let ball = Ball {
        clean: pixels,
        norm: config.norm,
        eps: config.eps,
        image_len: model.image_len(),
    };
    let mut rng = SplitMix64::new(config.seed);
    let mut x = if config.random_start {
        ball.random_start(&mut rng)
    } else {
        pixels.to_vec()
    };
    let steps = vec![config.pgd_step_size(); labels.len()];
    let mut next = vec![0.0f32; x.len()];
    for _ in 0..config.steps {
        let at_x = model.loss_and_gradient(&x, labels)?;
        ball.step(&x, &at_x.gradient, &steps, &mut next);
        std::mem::swap(&mut x, &mut next);
    }
    Ok(x)
}
