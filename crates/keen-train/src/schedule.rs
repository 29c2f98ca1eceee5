//! Learning-rate schedules, as a pure function of the optimizer step.
//!
//! Being a function of the step (not a stateful object) is what lets `--resume` continue on the
//! exact curve an uninterrupted run follows.

use serde::{Deserialize, Serialize};

/// How the learning rate decays after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decay {
    /// Keep the peak learning rate.
    Constant,
    /// Half a cosine from the peak down to `min_factor` × peak at the last step.
    Cosine {
        /// Final learning rate as a fraction of the peak.
        min_factor: f64,
    },
    /// A straight line from the peak down to zero at the last step: with warm-up, the
    /// triangular "one-cycle" schedule of Wong et al.'s fast adversarial training.
    Linear,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// Factor applied at each decay.
        gamma: f64,
    },
}

/// A learning-rate schedule: linear warm-up from zero, then [`Decay`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of warm-up.
    pub peak_lr: f64,
    /// Warm-up length in optimizer steps.
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// Optimizer steps per epoch (for step decay).
    pub steps_per_epoch: usize,
    /// The decay after warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// Learning rate for optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.decay {
            Decay::Constant => self.peak_lr,
            Decay::Cosine { min_factor } => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.peak_lr * (min_factor + (1.0 - min_factor) * cosine)
            }
            Decay::Linear => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                self.peak_lr * (1.0 - progress)
            }
            Decay::Step {
                every_epochs,
                gamma,
            } => {
                let epoch = step / self.steps_per_epoch.max(1);
                self.peak_lr * gamma.powi((epoch / every_epochs.max(1)) as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: Decay) -> LrSchedule {
        LrSchedule {
            peak_lr: 0.1,
            warmup_steps: 10,
            total_steps: 110,
            steps_per_epoch: 10,
            decay,
        }
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = schedule(Decay::Constant);
        assert!((s.lr_at(0) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(4) - 0.05).abs() < 1e-12);
        assert!((s.lr_at(9) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(50) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn cosine_falls_monotonically_to_the_floor() {
        let s = schedule(Decay::Cosine { min_factor: 0.0 });
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(60) - 0.05).abs() < 1e-9);
        assert!(s.lr_at(110) < 1e-12);
        for step in 10..110 {
            assert!(s.lr_at(step + 1) <= s.lr_at(step));
        }
    }

    #[test]
    fn linear_decay_is_a_straight_line_to_zero() {
        let s = schedule(Decay::Linear);
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(60) - 0.05).abs() < 1e-12);
        assert!((s.lr_at(85) - 0.025).abs() < 1e-12);
        assert!(s.lr_at(110).abs() < 1e-12);
    }

    #[test]
    fn step_decay_multiplies_by_gamma_each_period() {
        let s = schedule(Decay::Step {
            every_epochs: 3,
            gamma: 0.1,
        });
        assert!((s.lr_at(29) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(30) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(65) - 0.001).abs() < 1e-12);
    }
}
