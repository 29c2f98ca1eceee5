//! Gradient-masking checks (after Athalye, Carlini & Wagner 2018 and Carlini et al. 2019, "On
//! evaluating adversarial robustness"): signs that an attack failed because the model hides its
//! gradient rather than because the model is robust.
//!
//! 1. Accuracy must not rise (beyond noise) as ε grows: a larger ball contains the smaller one.
//! 2. An unbounded attack (a ball holding every image) must bring accuracy to about zero.
//! 3. An iterative attack must be no weaker than one FGSM step at the same ε.
//!
//! "Noise" is two binomial standard errors of the larger accuracy plus one image, so a check
//! only fails on a difference the number of images cannot explain.

use serde::{Deserialize, Serialize};

use super::EpsPoint;

/// Accuracy an unbounded attack may leave before the check fails.
pub const UNBOUNDED_MAX_ACCURACY: f64 = 0.01;

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskingCheck {
    /// What was checked.
    pub name: String,
    /// Whether it passed (`None` when there was nothing to compare).
    pub passed: Option<bool>,
    /// The figures behind the verdict.
    pub detail: String,
}

/// All checks of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskingReport {
    /// The checks, in the order of the module docs.
    pub checks: Vec<MaskingCheck>,
    /// True when any check failed: the robust accuracy is then not to be trusted.
    pub suspected: bool,
}

/// Two binomial standard errors of the larger accuracy, plus one image.
pub fn noise(a: &EpsPoint, b: &EpsPoint) -> f64 {
    let n = a.images.min(b.images).max(1) as f64;
    let p = a.accuracy.max(b.accuracy);
    2.0 * (p * (1.0 - p) / n).sqrt() + 1.0 / n
}

/// Runs the three checks: `curve` is the attack's accuracy at increasing ε (the clean accuracy
/// may come first as ε = 0), `unbounded` the same attack with an unbounded ε, `fgsm` FGSM's
/// accuracy at the same ε values (empty when the attack is FGSM itself).
pub fn masking_checks(
    curve: &[EpsPoint],
    unbounded: &EpsPoint,
    fgsm: &[EpsPoint],
) -> MaskingReport {
    let mut sorted: Vec<&EpsPoint> = curve.iter().collect();
    sorted.sort_by(|a, b| a.eps.total_cmp(&b.eps));
    let rises: Vec<String> = sorted
        .windows(2)
        .filter(|w| w[1].accuracy > w[0].accuracy + noise(w[0], w[1]))
        .map(|w| {
            format!(
                "ε {} → {}: {:.2}% → {:.2}%",
                w[0].eps,
                w[1].eps,
                100.0 * w[0].accuracy,
                100.0 * w[1].accuracy
            )
        })
        .collect();
    let falls = MaskingCheck {
        name: "accuracy falls as ε grows".into(),
        passed: (sorted.len() >= 2).then_some(rises.is_empty()),
        detail: if rises.is_empty() {
            format!("non-increasing within noise over {} budgets", sorted.len())
        } else {
            format!("accuracy rises: {}", rises.join("; "))
        },
    };
    let reaches_zero = MaskingCheck {
        name: "unbounded attack reaches ~0%".into(),
        passed: Some(unbounded.accuracy <= UNBOUNDED_MAX_ACCURACY),
        detail: format!(
            "ε = {}: {:.2}% (at most {:.0}% allowed)",
            unbounded.eps,
            100.0 * unbounded.accuracy,
            100.0 * UNBOUNDED_MAX_ACCURACY
        ),
    };
    let mut weaker = Vec::new();
    let mut compared = 0;
    for f in fgsm {
        if let Some(a) = curve.iter().find(|a| a.eps == f.eps) {
            compared += 1;
            if a.accuracy > f.accuracy + noise(a, f) {
                weaker.push(format!(
                    "ε {}: {:.2}% vs FGSM {:.2}%",
                    a.eps,
                    100.0 * a.accuracy,
                    100.0 * f.accuracy
                ));
            }
        }
    }
    let beats_fgsm = MaskingCheck {
        name: "no weaker than FGSM".into(),
        passed: (compared > 0).then_some(weaker.is_empty()),
        detail: if compared == 0 {
            "not compared".into()
        } else if weaker.is_empty() {
            format!("at or below FGSM's accuracy at {compared} budgets")
        } else {
            format!("weaker than FGSM: {}", weaker.join("; "))
        },
    };
    let checks = vec![falls, reaches_zero, beats_fgsm];
    let suspected = checks.iter().any(|c| c.passed == Some(false));
    MaskingReport { checks, suspected }
}
