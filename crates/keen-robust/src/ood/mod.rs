//! Out-of-distribution detection: scores computed from a model's outputs, and the metrics
//! that say how well a score separates in-distribution from OOD samples.
//!
//! **Sign convention:** every score here is *higher for in-distribution* samples, so a
//! detector flags a sample as OOD when its score falls below a threshold, and the metrics
//! in [`metrics`] treat in-distribution as the positive class.

pub mod mahalanobis;
pub mod metrics;
pub mod odin;

pub use mahalanobis::MahalanobisDetector;
pub use metrics::{auroc, average_precision, fpr_at_tpr, ood_metrics, OodMetrics};
pub use odin::{choose_odin_epsilon, odin_image_scores, OdinConfig, OdinEpsilonChoice};

use crate::error::RobustError;
use crate::logits::{log_sum_exp, Logits};

/// Maximum softmax probability (Hendrycks & Gimpel, 2017), one score per row of the
/// `[n, classes]` logits. In `(0, 1]`; higher = more in-distribution.
pub fn msp_scores(logits: &[f32], classes: usize) -> Result<Vec<f32>, RobustError> {
    tempered_msp(logits, classes, 1.0)
}

/// Negative free energy (Liu et al., 2020): `T · logsumexp(logits / T)`.
///
/// The paper defines the energy `E(x) = −T · logsumexp(f(x) / T)` and flags high energy as
/// OOD; keen returns `−E(x)` so that, like every score here, higher = more
/// in-distribution. `T = 1` is the paper's default.
pub fn energy_scores(
    logits: &[f32],
    classes: usize,
    temperature: f64,
) -> Result<Vec<f32>, RobustError> {
    check_temperature(temperature)?;
    let logits = Logits::new(logits, classes)?;
    Ok(logits
        .rows()
        .map(|row| (temperature * log_sum_exp(row, temperature)) as f32)
        .collect())
}

/// ODIN's score (Liang et al., 2018): the maximum softmax of `logits / T`, with a large
/// temperature (the paper uses `T = 1000`).
///
/// ODIN's second half perturbs each input against the gradient of this score before
/// computing the logits ([`odin::odin_image_scores`] does both over any [`InputGradient`]
/// model). Pass the logits of the *perturbed* inputs here (or clean logits for
/// temperature-only ODIN).
///
/// [`InputGradient`]: crate::attack::InputGradient
pub fn odin_scores(
    perturbed_logits: &[f32],
    classes: usize,
    temperature: f64,
) -> Result<Vec<f32>, RobustError> {
    tempered_msp(perturbed_logits, classes, temperature)
}

/// Largest logit per row (Hendrycks et al., 2022, "MaxLogit"); higher = in-distribution.
pub fn max_logit_scores(logits: &[f32], classes: usize) -> Result<Vec<f32>, RobustError> {
    let logits = Logits::new(logits, classes)?;
    Ok(logits
        .rows()
        .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect())
}

fn tempered_msp(logits: &[f32], classes: usize, temperature: f64) -> Result<Vec<f32>, RobustError> {
    check_temperature(temperature)?;
    let logits = Logits::new(logits, classes)?;
    Ok(logits
        .rows()
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            (max / temperature - log_sum_exp(row, temperature)).exp() as f32
        })
        .collect())
}

pub(crate) fn check_temperature(temperature: f64) -> Result<(), RobustError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(RobustError::InvalidArgument {
            name: "temperature",
            value: temperature.to_string(),
            reason: "must be a finite number > 0".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_hand_computation() {
        let logits = [2.0, 0.0, 0.0, 0.0];
        let msp = msp_scores(&logits, 2).expect("ok");
        let e2 = std::f64::consts::E.powi(2);
        assert!((msp[0] as f64 - e2 / (e2 + 1.0)).abs() < 1e-6);
        assert!((msp[1] - 0.5).abs() < 1e-6);
        let energy = energy_scores(&logits, 2, 1.0).expect("ok");
        assert!((energy[0] as f64 - (e2 + 1.0).ln()).abs() < 1e-6);
        assert!((energy[1] as f64 - 2f64.ln()).abs() < 1e-6);
        // A confident row scores higher than an uncertain one under every score.
        let odin = odin_scores(&logits, 2, 1000.0).expect("ok");
        assert!(odin[0] > odin[1] && energy[0] > energy[1] && msp[0] > msp[1]);
        assert_eq!(max_logit_scores(&logits, 2).expect("ok"), vec![2.0, 0.0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(energy_scores(&[1.0, 2.0], 2, 0.0).is_err());
        assert!(odin_scores(&[1.0, 2.0], 2, f64::NAN).is_err());
        assert!(msp_scores(&[1.0, f32::INFINITY], 2).is_err());
        assert!(msp_scores(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
