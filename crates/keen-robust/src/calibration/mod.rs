//! Calibration: does a model's confidence match its accuracy?
//!
//! Metrics ([`calibration_report`]): expected and maximum calibration error over
//! equal-width confidence bins (Guo et al., 2017), negative log-likelihood, the
//! multi-class Brier score, and the reliability-diagram bins. Fixes and uses:
//! temperature scaling ([`temperature`]) and selective prediction, i.e. abstaining on
//! low-confidence inputs ([`selective`]).
//!
//! Confidence is the maximum softmax probability and the prediction its argmax (first
//! index on ties); all sums run in `f64`.

pub mod selective;
pub mod temperature;

pub use selective::{
    area_under_risk_coverage, choose_threshold, risk_coverage_curve, RiskCoveragePoint,
    SelectiveThreshold,
};
pub use temperature::{apply_temperature, fit_temperature, TemperatureFit};

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, RobustError};
use crate::logits::{log_sum_exp, predictions, softmax, Logits};

/// Guo et al.'s bin count for ECE.
pub const DEFAULT_BINS: usize = 15;

/// One equal-width confidence bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive, except 0 for the first bin).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Samples whose confidence falls in the bin.
    pub count: usize,
    /// Mean confidence of those samples (0 when empty).
    pub mean_confidence: f64,
    /// Fraction of them predicted correctly (0 when empty).
    pub accuracy: f64,
}

/// Every calibration metric of one set of logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Samples evaluated.
    pub count: usize,
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Expected calibration error: `Σ_b (n_b / n) · |acc_b − conf_b|`.
    pub ece: f64,
    /// Maximum calibration error: `max_b |acc_b − conf_b|` over non-empty bins.
    pub mce: f64,
    /// Mean negative log-likelihood of the true class (natural log).
    pub nll: f64,
    /// Brier score: `mean_i Σ_c (p_ic − [c = y_i])²`, in `[0, 2]` (see [`brier_score`]).
    pub brier: f64,
    /// The reliability-diagram bins the ECE and MCE were computed from.
    pub bins: Vec<ReliabilityBin>,
}

/// All metrics for row-major `[n, classes]` logits and their labels, with `bins`
/// equal-width bins (use [`DEFAULT_BINS`]).
pub fn calibration_report(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    bins: usize,
) -> Result<CalibrationReport, RobustError> {
    let checked = Logits::with_labels(logits, classes, labels)?;
    let (confidences, correct) = confidences_and_correct(&checked, labels);
    let bins = reliability_bins(&confidences, &correct, bins)?;
    let (ece, mce) = ece_mce_from_bins(&bins, confidences.len());
    Ok(CalibrationReport {
        count: checked.len(),
        accuracy: correct.iter().filter(|&&c| c).count() as f64 / correct.len() as f64,
        ece,
        mce,
        nll: nll_of(&checked, labels, 1.0),
        brier: brier_of(&checked, labels),
        bins,
    })
}

/// Confidence (max softmax) and correctness of every prediction of row-major
/// `[n, classes]` logits: the inputs of [`risk_coverage_curve`] and [`choose_threshold`].
pub fn confidence_and_correctness(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
) -> Result<(Vec<f64>, Vec<bool>), RobustError> {
    let checked = Logits::with_labels(logits, classes, labels)?;
    Ok(confidences_and_correct(&checked, labels))
}

/// Confidence (max softmax) and correctness of every prediction.
pub(crate) fn confidences_and_correct(
    logits: &Logits<'_>,
    labels: &[u32],
) -> (Vec<f64>, Vec<bool>) {
    predictions(logits, 1.0)
        .into_iter()
        .zip(labels)
        .map(|((class, confidence), &label)| (confidence, class == label as usize))
        .unzip()
}

/// Splits `[0, 1]` into `bins` equal-width bins `((b−1)/B, b/B]` (confidence 0 joins the
/// first) and summarises the samples in each.
pub fn reliability_bins(
    confidences: &[f64],
    correct: &[bool],
    bins: usize,
) -> Result<Vec<ReliabilityBin>, RobustError> {
    if bins == 0 {
        return Err(RobustError::InvalidArgument {
            name: "bins",
            value: "0".into(),
            reason: "need at least one bin".into(),
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
    let mut count = vec![0usize; bins];
    let mut confidence_sum = vec![0.0f64; bins];
    let mut correct_count = vec![0usize; bins];
    for (&c, &ok) in confidences.iter().zip(correct) {
        // ceil(c·B) − 1 puts c in ((b−1)/B, b/B]; clamping handles 0 and values ≥ 1.
        let b = ((c * bins as f64).ceil() as isize - 1).clamp(0, bins as isize - 1) as usize;
        count[b] += 1;
        confidence_sum[b] += c;
        correct_count[b] += ok as usize;
    }
    Ok((0..bins)
        .map(|b| {
            let n = count[b].max(1) as f64;
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                mean_confidence: confidence_sum[b] / n,
                accuracy: correct_count[b] as f64 / n,
            }
        })
        .collect())
}

/// ECE and MCE from reliability bins over `total` samples.
pub fn ece_mce_from_bins(bins: &[ReliabilityBin], total: usize) -> (f64, f64) {
    let total = total.max(1) as f64;
    bins.iter()
        .filter(|b| b.count > 0)
        .map(|b| (b.count as f64, (b.accuracy - b.mean_confidence).abs()))
        .fold((0.0, 0.0), |(ece, mce), (n, gap)| {
            (ece + n / total * gap, f64::max(mce, gap))
        })
}

/// Expected calibration error with `bins` equal-width bins.
pub fn expected_calibration_error(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    bins: usize,
) -> Result<f64, RobustError> {
    Ok(calibration_report(logits, classes, labels, bins)?.ece)
}

/// Mean negative log-likelihood `−mean_i log softmax(logits_i / T)[y_i]` (natural log).
pub fn negative_log_likelihood(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    temperature: f64,
) -> Result<f64, RobustError> {
    crate::ood::check_temperature(temperature)?;
    let checked = Logits::with_labels(logits, classes, labels)?;
    Ok(nll_of(&checked, labels, temperature))
}

pub(crate) fn nll_of(logits: &Logits<'_>, labels: &[u32], temperature: f64) -> f64 {
    let total: f64 = logits
        .rows()
        .zip(labels)
        .map(|(row, &y)| log_sum_exp(row, temperature) - row[y as usize] as f64 / temperature)
        .sum();
    total / logits.len() as f64
}

/// Multi-class Brier score: for each sample the squared distance between the softmax
/// vector and the one-hot label, *summed over classes*, then averaged over samples
/// (Brier's original definition; 0 is perfect, 2 the worst). Some libraries also divide
/// by the class count; keen does not.
pub fn brier_score(logits: &[f32], classes: usize, labels: &[u32]) -> Result<f64, RobustError> {
    let checked = Logits::with_labels(logits, classes, labels)?;
    Ok(brier_of(&checked, labels))
}

fn brier_of(logits: &Logits<'_>, labels: &[u32]) -> f64 {
    let total: f64 = logits
        .rows()
        .zip(labels)
        .map(|(row, &y)| {
            softmax(row, 1.0)
                .iter()
                .enumerate()
                .map(|(c, p)| (p - (c == y as usize) as u8 as f64).powi(2))
                .sum::<f64>()
        })
        .sum();
    total / logits.len() as f64
}

#[cfg(test)]
mod tests;
