//! Hand-computed calibration metrics, temperature scaling on synthetic data, and
//! selective prediction.

use super::selective::area_under_risk_coverage;
use super::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() < tol
}

/// Four two-class samples with confidences 0.9 (right), 0.9 (wrong), 0.55 (right) and
/// 0.7 (right), in bins 13, 13, 8 and 10 of 15.
fn four_samples() -> (Vec<f32>, Vec<u32>) {
    let logit = |p: f64| (p / (1.0 - p)).ln() as f32;
    (
        vec![
            logit(0.9),
            0.0,
            logit(0.9),
            0.0,
            0.0,
            logit(0.55),
            logit(0.7),
            0.0,
        ],
        vec![0, 1, 1, 0],
    )
}

#[test]
fn hand_computed_ece_mce_nll_and_brier() {
    let (logits, labels) = four_samples();
    let r = calibration_report(&logits, 2, &labels, DEFAULT_BINS).expect("valid");
    assert_eq!(r.count, 4);
    assert!(close(r.accuracy, 0.75, 1e-12));
    let (conf, correct) = confidence_and_correctness(&logits, 2, &labels).expect("valid");
    assert_eq!(correct, vec![true, false, true, true]);
    assert!(close(conf[2], 0.55, 1e-6));
    // Bin 13: 2 samples, accuracy 0.5 vs confidence 0.9 (gap 0.4); bin 8: gap 0.45;
    // bin 10: gap 0.3. ECE = 0.5·0.4 + 0.25·0.45 + 0.25·0.3.
    assert!(close(r.ece, 0.3875, 1e-6), "{}", r.ece);
    assert!(close(r.mce, 0.45, 1e-6), "{}", r.mce);
    let nll = -(0.9f64.ln() + 0.1f64.ln() + 0.55f64.ln() + 0.7f64.ln()) / 4.0;
    assert!(close(r.nll, nll, 1e-6), "{} vs {nll}", r.nll);
    // Per sample Σ_c (p_c − y_c)²: 0.02, 1.62, 0.405, 0.18.
    assert!(close(r.brier, 2.225 / 4.0, 1e-6), "{}", r.brier);
    let occupied: Vec<(usize, usize)> = r
        .bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.count > 0)
        .map(|(i, b)| (i, b.count))
        .collect();
    assert_eq!(occupied, vec![(8, 1), (10, 1), (13, 2)]);
    assert_eq!(r.bins.len(), 15);
    assert!(close(r.bins[13].accuracy, 0.5, 1e-12) && close(r.bins[13].mean_confidence, 0.9, 1e-6));
    assert!(close(
        brier_score(&logits, 2, &labels).expect("ok"),
        r.brier,
        1e-12
    ));
    assert!(close(
        negative_log_likelihood(&logits, 2, &labels, 1.0).expect("ok"),
        r.nll,
        1e-12
    ));
    assert!(close(
        expected_calibration_error(&logits, 2, &labels, 15).expect("ok"),
        r.ece,
        1e-12
    ));
    // JSON keeps every field (serde_json's default float parsing may differ in the last bit).
    let json = serde_json::to_string(&r).expect("serialises");
    let back: CalibrationReport = serde_json::from_str(&json).expect("parses");
    assert!(close(back.ece, r.ece, 1e-12) && back.bins.len() == 15);
}

#[test]
fn bin_edges_are_inclusive_above_and_zero_joins_the_first_bin() {
    let bins = reliability_bins(&[0.0, 1.0 / 3.0, 1.0, 1.0], &[false, false, true, true], 3)
        .expect("valid");
    // 0 joins bin 0, 1/3 is the upper edge of bin 0, 1 the upper edge of bin 2.
    assert_eq!(
        bins.iter().map(|b| b.count).collect::<Vec<_>>(),
        vec![2, 0, 2]
    );
    let (ece, mce) = ece_mce_from_bins(&bins, 4);
    assert!(close(ece, 0.5 * (1.0 / 6.0), 1e-12) && close(mce, 1.0 / 6.0, 1e-12));
    assert!(reliability_bins(&[0.5], &[true], 0).is_err());
    assert!(reliability_bins(&[0.5], &[true, false], 3).is_err());
    assert!(reliability_bins(&[f64::NAN], &[true], 3).is_err());
}

#[test]
fn bad_inputs_are_errors() {
    assert!(calibration_report(&[], 2, &[], 15).is_err());
    assert!(calibration_report(&[0.0, f32::NAN], 2, &[0], 15).is_err());
    assert!(calibration_report(&[0.0, 1.0], 2, &[2], 15).is_err());
    assert!(negative_log_likelihood(&[0.0, 1.0], 2, &[0], -1.0).is_err());
    assert!(fit_temperature(&[0.0, 1.0, 2.0], 2, &[0]).is_err());
    assert!(apply_temperature(&[1.0], 0.0).is_err());
}

/// xorshift64*: a tiny deterministic generator so the tests need no rand dependency.
struct TestRng(u64);

impl TestRng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` samples of `classes` logits drawn N(0, 2²)-ish, with labels drawn from
/// `softmax(logits / true_temperature)`: the NLL-optimal temperature is the true one.
fn synthetic(n: usize, classes: usize, true_temperature: f64, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = TestRng(seed);
    let mut logits = Vec::with_capacity(n * classes);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..classes)
            .map(|_| ((rng.uniform() - 0.5) * 8.0) as f32)
            .collect();
        let p = crate::logits::softmax(&row, true_temperature);
        let u = rng.uniform();
        let mut cumulative = 0.0;
        let label = p.iter().position(|&pi| {
            cumulative += pi;
            u < cumulative
        });
        labels.push(label.unwrap_or(classes - 1) as u32);
        logits.extend(row);
    }
    (logits, labels)
}

#[test]
fn temperature_scaling_recovers_a_known_temperature() {
    let (logits, labels) = synthetic(20_000, 5, 2.5, 11);
    let fit = fit_temperature(&logits, 5, &labels).expect("fits");
    assert!(close(fit.temperature, 2.5, 0.15), "{fit:?}");
    assert!(!fit.at_bracket_edge);
    assert!(fit.nll_after < fit.nll_before, "{fit:?}");
}

#[test]
fn temperature_scaling_cools_over_confident_logits() {
    // Labels follow softmax(z) but the model reports 4z: over-confident by a factor 4.
    let (logits, labels) = synthetic(5_000, 10, 1.0, 5);
    let over: Vec<f32> = logits.iter().map(|v| v * 4.0).collect();
    let fit = fit_temperature(&over, 10, &labels).expect("fits");
    assert!(close(fit.temperature, 4.0, 0.4), "{fit:?}");
    assert!(fit.nll_after < 0.8 * fit.nll_before, "{fit:?}");
    let scaled = apply_temperature(&over, fit.temperature).expect("ok");
    let before = calibration_report(&over, 10, &labels, DEFAULT_BINS).expect("ok");
    let after = calibration_report(&scaled, 10, &labels, DEFAULT_BINS).expect("ok");
    assert!(after.ece < before.ece, "{} → {}", before.ece, after.ece);
    assert!(
        close(after.accuracy, before.accuracy, 1e-12),
        "scaling keeps predictions"
    );
}

#[test]
fn risk_coverage_and_threshold_choice() {
    let conf = [0.9, 0.8, 0.8, 0.6, 0.5];
    let correct = [true, false, true, true, false];
    let curve = risk_coverage_curve(&conf, &correct).expect("valid");
    let got: Vec<(f64, f64, f64)> = curve
        .iter()
        .map(|p| (p.threshold, p.coverage, p.risk))
        .collect();
    let want = [
        (0.9, 0.2, 0.0),
        (0.8, 0.6, 1.0 / 3.0),
        (0.6, 0.8, 0.25),
        (0.5, 1.0, 0.4),
    ];
    for (g, w) in got.iter().zip(want) {
        assert!(
            close(g.0, w.0, 1e-12) && close(g.1, w.1, 1e-12) && close(g.2, w.2, 1e-12),
            "{got:?}"
        );
    }
    let aurc = 0.2 * 0.0 + 0.4 / 3.0 + 0.2 * 0.25 + 0.2 * 0.4;
    assert!(close(area_under_risk_coverage(&curve), aurc, 1e-12));
    let t = choose_threshold(&conf, &correct, 0.3).expect("valid");
    assert_eq!(t.threshold, Some(0.6));
    assert!(close(t.coverage, 0.8, 1e-12) && close(t.risk, 0.25, 1e-12));
    assert_eq!(
        choose_threshold(&conf, &correct, 0.0)
            .expect("ok")
            .threshold,
        Some(0.9)
    );
    assert_eq!(
        choose_threshold(&conf, &correct, 1.0).expect("ok").coverage,
        1.0
    );
    let none = choose_threshold(&[0.9, 0.4], &[false, false], 0.1).expect("ok");
    assert_eq!((none.threshold, none.coverage), (None, 0.0));
    assert!(choose_threshold(&conf, &correct, 1.5).is_err());
    assert!(risk_coverage_curve(&[], &[]).is_err());
    assert!(risk_coverage_curve(&[0.5], &[]).is_err());
}
