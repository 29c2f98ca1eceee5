//! Selective prediction: answer only when confident. The risk–coverage curve shows the
//! error rate among the answered inputs (selective risk) against the fraction answered
//! (coverage) as the confidence threshold falls; [`choose_threshold`] picks the threshold
//! that answers the most inputs while keeping the validation risk under a target.

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, RobustError};

/// One point of the risk–coverage curve: answer when `confidence >= threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskCoveragePoint {
    /// The confidence threshold.
    pub threshold: f64,
    /// Fraction of samples answered.
    pub coverage: f64,
    /// Error rate among the answered samples.
    pub risk: f64,
}

/// The curve, one point per distinct confidence from the highest down (tied confidences
/// are answered or abstained together, so no point splits a tie). The last point has
/// coverage 1 and the overall error rate.
pub fn risk_coverage_curve(
    confidences: &[f64],
    correct: &[bool],
) -> Result<Vec<RiskCoveragePoint>, RobustError> {
    if confidences.is_empty() {
        return Err(RobustError::Empty {
            what: "confidences",
        });
    }
    if confidences.len() != correct.len() {
        return Err(RobustError::LengthMismatch {
            what: "correctness flags (one per confidence)",
            expected: confidences.len(),
            found: correct.len(),
        });
    }
    check_finite("confidences", confidences)?;
    let mut order: Vec<(f64, bool)> = confidences
        .iter()
        .copied()
        .zip(correct.iter().copied())
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = order.len() as f64;
    let mut points = Vec::new();
    let (mut answered, mut errors) = (0usize, 0usize);
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        answered += group.len();
        errors += group.iter().filter(|(_, ok)| !ok).count();
        points.push(RiskCoveragePoint {
            threshold: group[0].0,
            coverage: answered as f64 / n,
            risk: errors as f64 / answered as f64,
        });
    }
    Ok(points)
}

/// Area under the risk–coverage curve (AURC): the mean selective risk over the
/// coverages `1/n, 2/n, …, 1`, with a tie counted at its group's risk. Lower is better.
pub fn area_under_risk_coverage(curve: &[RiskCoveragePoint]) -> f64 {
    let mut area = 0.0;
    let mut previous = 0.0;
    for p in curve {
        area += (p.coverage - previous) * p.risk;
        previous = p.coverage;
    }
    area
}

/// The chosen abstention rule and how it did on the split it was chosen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectiveThreshold {
    /// Answer when `confidence >= threshold`; `None` when no threshold keeps the risk
    /// under the target (then abstain on everything).
    pub threshold: Option<f64>,
    /// The risk target asked for.
    pub max_risk: f64,
    /// Coverage at the threshold on this split (0 when `threshold` is `None`).
    pub coverage: f64,
    /// Selective risk at the threshold on this split (0 when `threshold` is `None`).
    pub risk: f64,
}

/// Picks the lowest threshold (largest coverage) whose selective risk on this split is
/// `<= max_risk`. Choose it on a validation split and report it on the test split: the
/// guarantee holds only on the data it was chosen on.
pub fn choose_threshold(
    confidences: &[f64],
    correct: &[bool],
    max_risk: f64,
) -> Result<SelectiveThreshold, RobustError> {
    if !(max_risk.is_finite() && (0.0..=1.0).contains(&max_risk)) {
        return Err(RobustError::InvalidArgument {
            name: "max_risk",
            value: max_risk.to_string(),
            reason: "a risk must be a fraction in [0, 1]".into(),
        });
    }
    let curve = risk_coverage_curve(confidences, correct)?;
    // Risk is not monotone in coverage, so scan every point for the widest one that fits.
    let best = curve.iter().rev().find(|p| p.risk <= max_risk);
    Ok(match best {
        Some(p) => SelectiveThreshold {
            threshold: Some(p.threshold),
            max_risk,
            coverage: p.coverage,
            risk: p.risk,
        },
        None => SelectiveThreshold {
            threshold: None,
            max_risk,
            coverage: 0.0,
            risk: 0.0,
        },
    })
}
