//! Threshold-free metrics of an OOD score: AUROC, AUPR-In, AUPR-Out and the false
//! positive rate at 95% true positive rate. In-distribution samples are the positives
//! and higher scores mean "more in-distribution" (see the [module doc](super)).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, RobustError};

/// The standard OOD detection report for one score on one (in, out) pair of sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodMetrics {
    /// Area under the ROC curve: P(in-score > out-score), ties counted ½.
    pub auroc: f64,
    /// Average precision with in-distribution as positives.
    pub aupr_in: f64,
    /// Average precision with OOD as positives (scores negated).
    pub aupr_out: f64,
    /// Fraction of OOD samples accepted at the highest threshold that accepts ≥ 95% of
    /// in-distribution samples (see [`fpr_at_tpr`]).
    pub fpr_at_95_tpr: f64,
    /// Number of in-distribution scores.
    pub in_count: usize,
    /// Number of OOD scores.
    pub out_count: usize,
}

/// All four metrics at once.
pub fn ood_metrics(in_scores: &[f32], out_scores: &[f32]) -> Result<OodMetrics, RobustError> {
    let negated = |s: &[f32]| s.iter().map(|v| -v).collect::<Vec<f32>>();
    Ok(OodMetrics {
        auroc: auroc(in_scores, out_scores)?,
        aupr_in: average_precision(in_scores, out_scores)?,
        aupr_out: average_precision(&negated(out_scores), &negated(in_scores))?,
        fpr_at_95_tpr: fpr_at_tpr(in_scores, out_scores, 0.95)?,
        in_count: in_scores.len(),
        out_count: out_scores.len(),
    })
}

fn check_pair(what: &'static str, positives: &[f32], negatives: &[f32]) -> Result<(), RobustError> {
    check_finite("positive (in-distribution) scores", positives)?;
    check_finite("negative (OOD) scores", negatives)?;
    if positives.is_empty() || negatives.is_empty() {
        return Err(RobustError::OneSided { what });
    }
    Ok(())
}

/// Scores tagged with their class, sorted by score (ascending).
fn sorted_tagged(positives: &[f32], negatives: &[f32]) -> Vec<(f32, bool)> {
    let mut all: Vec<(f32, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

/// Splits a sorted list into runs of equal scores.
fn tie_groups(sorted: &[(f32, bool)]) -> impl Iterator<Item = &[(f32, bool)]> {
    sorted.chunk_by(|a, b| a.0.total_cmp(&b.0) == Ordering::Equal)
}

/// AUROC by the Mann–Whitney U statistic: `P(positive > negative) + ½·P(equal)`, from
/// mid-ranks after one sort, `O(n log n)`. 1 = perfect separation, 0.5 = chance,
/// 0 = perfectly inverted.
pub fn auroc(positive_scores: &[f32], negative_scores: &[f32]) -> Result<f64, RobustError> {
    check_pair("AUROC", positive_scores, negative_scores)?;
    let sorted = sorted_tagged(positive_scores, negative_scores);
    let mut rank_sum = 0.0f64;
    let mut below = 0usize;
    for group in tie_groups(&sorted) {
        // Every member of a tie shares the mean of the ranks the group spans (1-based).
        let mid_rank = below as f64 + (group.len() as f64 + 1.0) / 2.0;
        rank_sum += mid_rank * group.iter().filter(|(_, p)| *p).count() as f64;
        below += group.len();
    }
    let (np, nn) = (positive_scores.len() as f64, negative_scores.len() as f64);
    Ok((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// Average precision of `positive_scores` against `negative_scores` (higher = positive):
/// `Σ_k (R_k − R_{k−1}) · P_k` over thresholds at each distinct score from the top, with
/// tied scores entering together (scikit-learn's `average_precision_score`). It is the
/// step-wise area under the precision–recall curve, without trapezoidal optimism.
pub fn average_precision(
    positive_scores: &[f32],
    negative_scores: &[f32],
) -> Result<f64, RobustError> {
    check_pair("average precision", positive_scores, negative_scores)?;
    let mut sorted = sorted_tagged(positive_scores, negative_scores);
    sorted.reverse();
    let total_positives = positive_scores.len() as f64;
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    for group in tie_groups(&sorted) {
        let positives = group.iter().filter(|(_, p)| *p).count() as f64;
        tp += positives;
        fp += group.len() as f64 - positives;
        let recall = tp / total_positives;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    Ok(ap)
}

/// False positive rate at a true positive rate of at least `tpr` (0.95 for the usual
/// "FPR95"), in-distribution as positives, accepting a sample when `score >= t`.
///
/// **Rule (no interpolation):** `t` is the highest threshold that accepts at least
/// `ceil(tpr · n_in)` in-distribution samples, i.e. the `ceil(tpr · n_in)`-th largest
/// in-distribution score; the result is the fraction of OOD scores `>= t` (ties with the
/// threshold count as accepted). This is the first ROC point at or above the target TPR,
/// the conservative reading that never reports an FPR for a TPR below the target.
pub fn fpr_at_tpr(in_scores: &[f32], out_scores: &[f32], tpr: f64) -> Result<f64, RobustError> {
    check_pair("FPR at TPR", in_scores, out_scores)?;
    if !(tpr > 0.0 && tpr <= 1.0) {
        return Err(RobustError::InvalidArgument {
            name: "tpr",
            value: tpr.to_string(),
            reason: "a true positive rate must be in (0, 1]".into(),
        });
    }
    let mut descending = in_scores.to_vec();
    descending.sort_by(|a, b| b.total_cmp(a));
    // The small slack keeps 0.95 · 20 = 19 from rounding up to 20 in floating point.
    let needed = ((tpr * descending.len() as f64) - 1e-9).ceil().max(1.0) as usize;
    let threshold = descending[needed.min(descending.len()) - 1];
    let accepted = out_scores.iter().filter(|&&s| s >= threshold).count();
    Ok(accepted as f64 / out_scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn perfect_inverted_and_tied_separation() {
        let (a, b) = ([3.0, 4.0, 5.0], [0.0, 1.0]);
        let m = ood_metrics(&a, &b).expect("ok");
        assert!(close(m.auroc, 1.0) && close(m.aupr_in, 1.0) && close(m.aupr_out, 1.0));
        assert!(close(m.fpr_at_95_tpr, 0.0));
        let m = ood_metrics(&b, &a).expect("ok");
        assert!(close(m.auroc, 0.0) && close(m.fpr_at_95_tpr, 1.0));
        // Inverted: the first positive arrives after all 3 negatives; precision 1/4 then
        // 2/5 at recalls 1/2 and 1.
        assert!(close(m.aupr_in, 0.5 * 0.25 + 0.5 * 0.4), "{}", m.aupr_in);
        let m = ood_metrics(&[1.0, 1.0], &[1.0, 1.0, 1.0]).expect("ok");
        assert!(close(m.auroc, 0.5));
        assert!(close(m.aupr_in, 0.4) && close(m.aupr_out, 0.6));
        assert!(close(m.fpr_at_95_tpr, 1.0));
    }

    #[test]
    fn hand_computed_mixed_case_with_ties() {
        let in_scores = [0.9, 0.8, 0.5, 0.5];
        let out_scores = [0.7, 0.5, 0.1];
        // Pairs (in > out) : 0.9 beats 3, 0.8 beats 3, each 0.5 beats 0.1 and ties 0.5.
        // U = 3 + 3 + 1.5 + 1.5 = 9 of 12.
        assert!(close(auroc(&in_scores, &out_scores).expect("ok"), 0.75));
        // From the top: 0.9 (P 1, R 1/4), 0.8 (P 1, R 1/2), 0.7 (neg), then the 0.5 tie
        // adds 2 positives and 1 negative: P 4/6 at R 1.
        let ap = average_precision(&in_scores, &out_scores).expect("ok");
        assert!(close(ap, 0.25 + 0.25 + 0.5 * 4.0 / 6.0), "{ap}");
        // 95% of 4 in-scores needs all 4: threshold 0.5 accepts out-scores 0.7 and 0.5.
        assert!(close(
            fpr_at_tpr(&in_scores, &out_scores, 0.95).expect("ok"),
            2.0 / 3.0
        ));
        // 50% needs 2: threshold 0.8 accepts nothing.
        assert!(close(
            fpr_at_tpr(&in_scores, &out_scores, 0.5).expect("ok"),
            0.0
        ));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            auroc(&[], &[1.0]),
            Err(RobustError::OneSided { .. })
        ));
        assert!(matches!(
            auroc(&[f32::NAN], &[1.0]),
            Err(RobustError::NonFinite { .. })
        ));
        assert!(fpr_at_tpr(&[1.0], &[0.0], 0.0).is_err());
        assert!(fpr_at_tpr(&[1.0], &[0.0], 1.5).is_err());
    }

    proptest! {
        #[test]
        fn auroc_equals_brute_force_pair_counting(
            in_scores in prop::collection::vec(0u8..8, 1..30),
            out_scores in prop::collection::vec(0u8..8, 1..30),
        ) {
            // Few distinct values, so ties are common.
            let a: Vec<f32> = in_scores.iter().map(|&v| v as f32 * 0.5).collect();
            let b: Vec<f32> = out_scores.iter().map(|&v| v as f32 * 0.5).collect();
            let mut pairs = 0.0;
            for x in &a {
                for y in &b {
                    pairs += match x.partial_cmp(y) {
                        Some(Ordering::Greater) => 1.0,
                        Some(Ordering::Equal) => 0.5,
                        _ => 0.0,
                    };
                }
            }
            let brute = pairs / (a.len() * b.len()) as f64;
            prop_assert!(close(auroc(&a, &b).unwrap(), brute));
            // FPR at TPR against a scan over every candidate threshold.
            let needed = (0.95 * a.len() as f64 - 1e-9).ceil();
            let best = a.iter().chain(&b)
                .filter(|&&t| a.iter().filter(|&&s| s >= t).count() as f64 >= needed)
                .map(|&t| b.iter().filter(|&&s| s >= t).count() as f64 / b.len() as f64)
                .fold(f64::INFINITY, f64::min);
            prop_assert!(close(fpr_at_tpr(&a, &b, 0.95).unwrap(), best));
            let ap = average_precision(&a, &b).unwrap();
            prop_assert!((0.0..=1.0 + 1e-12).contains(&ap));
        }
    }
}
