//! The corruption benchmark of Hendrycks & Dietterich (2019): corruption error (CE),
//! mean CE (mCE) and their relative versions, from per-(corruption, severity) error rates
//! of a model and of a baseline model.
//!
//! With `E[s][c]` the error rate at severity `s` on corruption `c`:
//! - `CE_c = Σ_s E[s][c] / Σ_s E_base[s][c]`, and `mCE` is the mean of `CE_c` over the
//!   corruptions (the paper reports it ×100, in percent; keen keeps fractions);
//! - `relative CE_c = Σ_s (E[s][c] − E_clean) / Σ_s (E_base[s][c] − E_base_clean)`, how much
//!   a model *degrades* under corruption compared with the baseline, and `relative mCE`
//!   its mean.
//!
//! A baseline with no error on a corruption (or no degradation, for the relative version)
//! makes the ratio undefined: that is an error naming the corruption, never NaN.

use serde::{Deserialize, Serialize};

use crate::error::RobustError;

/// Error rates of one model on one corruption at severities 1..=5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionErrors {
    /// The corruption, e.g. `gaussian_noise`.
    pub corruption: String,
    /// Error rate in `[0, 1]` at severity 1, 2, 3, 4, 5.
    pub errors: [f64; 5],
}

/// Everything the benchmark needs from one model: its clean error and its error on each
/// corruption and severity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorTable {
    /// Error rate in `[0, 1]` on the uncorrupted test set.
    pub clean_error: f64,
    /// One entry per corruption, in the order to report them.
    pub corruptions: Vec<CorruptionErrors>,
}

/// The benchmark result for one corruption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionScore {
    /// The corruption.
    pub corruption: String,
    /// Mean error rate over the five severities.
    pub mean_error: f64,
    /// Corruption error `CE_c` (1.0 = as bad as the baseline).
    pub ce: f64,
    /// Relative corruption error (1.0 = degrades as much as the baseline).
    pub relative_ce: f64,
}

/// The benchmark result: mCE, relative mCE and the per-corruption scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionBenchmark {
    /// Clean error rate of the model.
    pub clean_error: f64,
    /// Clean error rate of the baseline.
    pub baseline_clean_error: f64,
    /// Mean of `CE_c` over corruptions.
    pub mce: f64,
    /// Mean of relative `CE_c` over corruptions.
    pub relative_mce: f64,
    /// Mean error over every corruption and severity (unnormalised).
    pub mean_corruption_error: f64,
    /// One entry per corruption of the model's table, in its order.
    pub per_corruption: Vec<CorruptionScore>,
}

impl ErrorTable {
    /// Checks every error rate is a finite number in `[0, 1]` and the table is non-empty.
    pub fn validate(&self) -> Result<(), RobustError> {
        check_rate("clean_error", self.clean_error)?;
        if self.corruptions.is_empty() {
            return Err(RobustError::Empty {
                what: "corruption error table",
            });
        }
        for c in &self.corruptions {
            for &e in &c.errors {
                check_rate("corruption error rate", e)?;
            }
        }
        Ok(())
    }

    fn find(&self, corruption: &str) -> Option<&CorruptionErrors> {
        self.corruptions.iter().find(|c| c.corruption == corruption)
    }
}

fn check_rate(name: &'static str, rate: f64) -> Result<(), RobustError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(RobustError::InvalidArgument {
            name,
            value: rate.to_string(),
            reason: "an error rate must be a fraction in [0, 1]".into(),
        })
    }
}

/// Computes CE, mCE, relative CE and relative mCE of `model` against `baseline`.
///
/// Every corruption of `model` must be in `baseline` (extra baseline rows are ignored).
pub fn corruption_benchmark(
    model: &ErrorTable,
    baseline: &ErrorTable,
) -> Result<CorruptionBenchmark, RobustError> {
    model.validate()?;
    baseline.validate()?;
    let mut per_corruption = Vec::with_capacity(model.corruptions.len());
    for row in &model.corruptions {
        let base =
            baseline
                .find(&row.corruption)
                .ok_or_else(|| RobustError::MissingCorruption {
                    corruption: row.corruption.clone(),
                })?;
        let sum: f64 = row.errors.iter().sum();
        let base_sum: f64 = base.errors.iter().sum();
        if base_sum <= 0.0 {
            return Err(RobustError::DegenerateBaseline {
                corruption: row.corruption.clone(),
                kind: "corruption",
            });
        }
        let degradation: f64 = row.errors.iter().map(|e| e - model.clean_error).sum();
        let base_degradation: f64 = base.errors.iter().map(|e| e - baseline.clean_error).sum();
        if base_degradation <= 0.0 {
            return Err(RobustError::DegenerateBaseline {
                corruption: row.corruption.clone(),
                kind: "relative",
            });
        }
        per_corruption.push(CorruptionScore {
            corruption: row.corruption.clone(),
            mean_error: sum / 5.0,
            ce: sum / base_sum,
            relative_ce: degradation / base_degradation,
        });
    }
    let count = per_corruption.len() as f64;
    Ok(CorruptionBenchmark {
        clean_error: model.clean_error,
        baseline_clean_error: baseline.clean_error,
        mce: per_corruption.iter().map(|s| s.ce).sum::<f64>() / count,
        relative_mce: per_corruption.iter().map(|s| s.relative_ce).sum::<f64>() / count,
        mean_corruption_error: per_corruption.iter().map(|s| s.mean_error).sum::<f64>() / count,
        per_corruption,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(clean: f64, rows: &[(&str, [f64; 5])]) -> ErrorTable {
        ErrorTable {
            clean_error: clean,
            corruptions: rows
                .iter()
                .map(|(name, errors)| CorruptionErrors {
                    corruption: name.to_string(),
                    errors: *errors,
                })
                .collect(),
        }
    }

    #[test]
    fn hand_computed_ce_and_relative_ce() {
        let model = table(
            0.1,
            &[("fog", [0.2, 0.2, 0.3, 0.3, 0.5]), ("snow", [0.1; 5])],
        );
        let base = table(
            0.2,
            &[("snow", [0.4; 5]), ("fog", [0.4, 0.4, 0.6, 0.6, 1.0])],
        );
        let r = corruption_benchmark(&model, &base).expect("valid");
        // fog: 1.5 / 3.0 = 0.5; relative (1.5 - 0.5) / (3.0 - 1.0) = 0.5.
        // snow: 0.5 / 2.0 = 0.25; relative (0.5 - 0.5) / (2.0 - 1.0) = 0.
        let fog = &r.per_corruption[0];
        assert_eq!(fog.corruption, "fog");
        assert!((fog.ce - 0.5).abs() < 1e-12 && (fog.relative_ce - 0.5).abs() < 1e-12);
        assert!((fog.mean_error - 0.3).abs() < 1e-12);
        assert!((r.mce - 0.375).abs() < 1e-12, "{}", r.mce);
        assert!((r.relative_mce - 0.25).abs() < 1e-12);
        assert!((r.mean_corruption_error - 0.2).abs() < 1e-12);
        let json = serde_json::to_string(&r).expect("serialises");
        let back: CorruptionBenchmark = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, r);
    }

    #[test]
    fn the_baseline_against_itself_scores_one() {
        let t = table(0.05, &[("a", [0.1, 0.2, 0.3, 0.4, 0.5])]);
        let r = corruption_benchmark(&t, &t).expect("valid");
        assert!((r.mce - 1.0).abs() < 1e-12 && (r.relative_mce - 1.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_or_bad_tables_are_errors() {
        let model = table(0.1, &[("fog", [0.2; 5])]);
        let perfect = table(0.0, &[("fog", [0.0; 5])]);
        let err = corruption_benchmark(&model, &perfect).expect_err("zero baseline");
        assert!(matches!(
            err,
            RobustError::DegenerateBaseline {
                kind: "corruption",
                ..
            }
        ));
        assert!(err.to_string().contains("fog"));
        let flat = table(0.3, &[("fog", [0.3; 5])]);
        let err = corruption_benchmark(&model, &flat).expect_err("no degradation");
        assert!(matches!(
            err,
            RobustError::DegenerateBaseline {
                kind: "relative",
                ..
            }
        ));
        let other = table(0.1, &[("snow", [0.2; 5])]);
        assert!(matches!(
            corruption_benchmark(&model, &other),
            Err(RobustError::MissingCorruption { .. })
        ));
        let nan = table(f64::NAN, &[("fog", [0.2; 5])]);
        assert!(corruption_benchmark(&nan, &model).is_err());
        let big = table(0.1, &[("fog", [1.2; 5])]);
        assert!(corruption_benchmark(&big, &model).is_err());
        assert!(corruption_benchmark(&table(0.1, &[]), &model).is_err());
    }
}
