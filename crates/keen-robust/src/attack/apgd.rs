//! APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks"): PGD on the cross-entropy with momentum and a step size
//! that needs no tuning.
//!
//! Each image starts with step size `η = 2ε`. Every step is a gradient step followed by a
//! momentum step, `x ← P(x + 0.75·(z − x) + 0.25·(x − x_prev))` with `z = P(x + η·dir(∇))`.
//! At checkpoints (after 22%, then intervals shrinking by 3% of the budget to at least 6%),
//! an image's step size is halved and it restarts from its best point when either the loss
//! rose in at most 75% of the steps since the last checkpoint, or the step size was not
//! halved at the last checkpoint and the best loss has not improved since. The attack follows
//! the authors' reference implementation (`autoattack/autopgd_base.py`).

use super::project::{Ball, SplitMix64};
use super::{misclassified, with_restarts, AttackConfig, AttackOutcome, InputGradient, WorstSoFar};
use crate::error::RobustError;

/// Momentum weight of the current step (the paper's α = 0.75).
pub const MOMENTUM: f32 = 0.75;
/// Fraction of steps since the last checkpoint in which the loss must have risen to keep the
/// step size (the paper's ρ).
pub const RHO: f32 = 0.75;

/// The iterations after which APGD checks its step sizes: the first after `⌊0.22·n⌋`, then at
/// intervals shrinking by `⌊0.03·n⌋` down to `⌊0.06·n⌋` (each at least 1).
pub fn apgd_checkpoints(steps: usize) -> Vec<usize> {
    let (mut interval, decrease, minimum) = checkpoint_intervals(steps);
    let mut checkpoints = Vec::new();
    let mut at = interval;
    while at <= steps {
        checkpoints.push(at);
        interval = interval.saturating_sub(decrease).max(minimum);
        at += interval;
    }
    checkpoints
}

fn checkpoint_intervals(steps: usize) -> (usize, usize, usize) {
    let part = |fraction: f64| ((fraction * steps as f64) as usize).max(1);
    (part(0.22), part(0.03), part(0.06))
}

/// Runs APGD-CE on one batch: `config.restarts` runs of `config.steps` steps.
pub fn apgd(
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
        &mut |model, clean, labels, first, rng| {
            apgd_once(model, clean, labels, config, first, rng, None)
        },
    )
}

/// One APGD run; `trace` receives every image's step size before each step.
pub(crate) fn apgd_once(
    model: &dyn InputGradient,
    clean: &[f32],
    labels: &[u32],
    config: &AttackConfig,
    first_run: bool,
    rng: &mut SplitMix64,
    mut trace: Option<&mut Vec<Vec<f32>>>,
) -> Result<AttackOutcome, RobustError> {
    let n = model.image_len();
    let classes = model.num_classes();
    let images = labels.len();
    let ball = Ball {
        clean,
        norm: config.norm,
        eps: config.eps,
        image_len: n,
    };
    let mut x = if config.random_start || !first_run {
        ball.random_start(rng)
    } else {
        clean.to_vec()
    };
    let at_start = model.loss_and_gradient(&x, labels)?;
    let mut gradient = at_start.gradient;
    let mut worst = WorstSoFar::new(
        &x,
        &at_start.loss,
        misclassified(&at_start.logits, classes, labels),
        n,
    );
    // The highest-loss point of each image, where a halving sends it back.
    let mut best_x = x.clone();
    let mut best_gradient = gradient.clone();
    let mut best_loss = at_start.loss.clone();
    let mut history: Vec<Vec<f32>> = vec![at_start.loss];
    let mut step_size = vec![2.0 * config.eps; images];
    let mut previous = x.clone();
    let (mut interval, decrease, minimum) = checkpoint_intervals(config.steps);
    let mut since_check = 0usize;
    let mut best_at_last_check = best_loss.clone();
    let mut halved_at_last_check = vec![true; images];
    let mut z = vec![0.0f32; x.len()];
    for iteration in 0..config.steps {
        if let Some(trace) = trace.as_deref_mut() {
            trace.push(step_size.clone());
        }
        // Gradient step, then the momentum step (none on the first iteration).
        ball.step(&x, &gradient, &step_size, &mut z);
        let momentum = if iteration == 0 { 1.0 } else { MOMENTUM };
        let mut next = vec![0.0f32; x.len()];
        for (((o, &zi), &xi), &pi) in next.iter_mut().zip(&z).zip(&x).zip(&previous) {
            *o = xi + momentum * (zi - xi) + (1.0 - momentum) * (xi - pi);
        }
        ball.project(&mut next);
        previous = std::mem::replace(&mut x, next);

        let at_x = model.loss_and_gradient(&x, labels)?;
        gradient = at_x.gradient;
        worst.update(&x, &at_x.loss, misclassified(&at_x.logits, classes, labels));
        for i in 0..images {
            if at_x.loss[i] > best_loss[i] {
                best_loss[i] = at_x.loss[i];
                best_x[i * n..(i + 1) * n].copy_from_slice(&x[i * n..(i + 1) * n]);
                best_gradient[i * n..(i + 1) * n].copy_from_slice(&gradient[i * n..(i + 1) * n]);
            }
        }
        history.push(at_x.loss);

        since_check += 1;
        if since_check == interval {
            for i in 0..images {
                let rises = (0..interval)
                    .filter(|&t| history[iteration + 1 - t][i] > history[iteration - t][i])
                    .count();
                let oscillating = rises as f32 <= RHO * interval as f32;
                let stalled = !halved_at_last_check[i] && best_at_last_check[i] >= best_loss[i];
                let halve = oscillating || stalled;
                halved_at_last_check[i] = halve;
                best_at_last_check[i] = best_loss[i];
                if halve {
                    step_size[i] /= 2.0;
                    x[i * n..(i + 1) * n].copy_from_slice(&best_x[i * n..(i + 1) * n]);
                    gradient[i * n..(i + 1) * n]
                        .copy_from_slice(&best_gradient[i * n..(i + 1) * n]);
                }
            }
            since_check = 0;
            interval = interval.saturating_sub(decrease).max(minimum);
        }
    }
    Ok(worst.outcome)
}
