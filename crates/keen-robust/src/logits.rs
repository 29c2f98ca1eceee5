//! Checked views of row-major `[n, classes]` logits and the softmax arithmetic every
//! metric shares, done in `f64` so long sums of probabilities stay exact enough.

use crate::error::{check_finite, RobustError};

/// Row-major `[n, classes]` logits whose shape and values have been checked.
#[derive(Clone, Copy, Debug)]
pub struct Logits<'a> {
    values: &'a [f32],
    classes: usize,
}

impl<'a> Logits<'a> {
    /// Checks that `values` holds a non-empty whole number of rows of `classes`
    /// finite logits.
    pub fn new(values: &'a [f32], classes: usize) -> Result<Self, RobustError> {
        if classes == 0 {
            return Err(RobustError::InvalidArgument {
                name: "classes",
                value: "0".into(),
                reason: "need at least one class".into(),
            });
        }
        if values.is_empty() {
            return Err(RobustError::Empty { what: "logits" });
        }
        if !values.len().is_multiple_of(classes) {
            return Err(RobustError::LengthMismatch {
                what: "logits (a multiple of the class count)",
                expected: values.len().div_ceil(classes) * classes,
                found: values.len(),
            });
        }
        check_finite("logits", values)?;
        Ok(Logits { values, classes })
    }

    /// Checks the logits and that `labels` has one valid class index per row.
    pub fn with_labels(
        values: &'a [f32],
        classes: usize,
        labels: &[u32],
    ) -> Result<Self, RobustError> {
        let logits = Logits::new(values, classes)?;
        if labels.len() != logits.len() {
            return Err(RobustError::LengthMismatch {
                what: "labels (one per logits row)",
                expected: logits.len(),
                found: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(RobustError::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
        Ok(logits)
    }

    /// Number of rows (samples).
    pub fn len(&self) -> usize {
        self.values.len() / self.classes
    }

    /// Always false: construction rejects empty logits.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of classes (columns).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The logits of sample `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.classes..(i + 1) * self.classes]
    }

    /// Iterates over the rows.
    pub fn rows(&self) -> impl Iterator<Item = &'a [f32]> {
        self.values.chunks_exact(self.classes)
    }
}

/// `log Σ exp(row / temperature)`, shifted by the maximum so it never overflows.
pub fn log_sum_exp(row: &[f32], temperature: f64) -> f64 {
    let max = row
        .iter()
        .map(|&v| v as f64 / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row
        .iter()
        .map(|&v| (v as f64 / temperature - max).exp())
        .sum();
    max + sum.ln()
}

/// Softmax of `row / temperature`.
pub fn softmax(row: &[f32], temperature: f64) -> Vec<f64> {
    let lse = log_sum_exp(row, temperature);
    row.iter()
        .map(|&v| (v as f64 / temperature - lse).exp())
        .collect()
}

/// Index of the largest logit; the first one on ties, so predictions are reproducible.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The predicted class and its softmax probability (the confidence) for every row.
pub fn predictions(logits: &Logits<'_>, temperature: f64) -> Vec<(usize, f64)> {
    logits
        .rows()
        .map(|row| {
            let class = argmax(row);
            let confidence =
                (row[class] as f64 / temperature - log_sum_exp(row, temperature)).exp();
            (class, confidence)
        })
        .collect()
}

/// Fraction of rows whose argmax is not the label (the classification error rate).
pub fn error_rate(logits: &[f32], classes: usize, labels: &[u32]) -> Result<f64, RobustError> {
    let logits = Logits::with_labels(logits, classes, labels)?;
    let wrong = logits
        .rows()
        .zip(labels)
        .filter(|(row, &label)| argmax(row) != label as usize)
        .count();
    Ok(wrong as f64 / logits.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_labels_and_values_are_checked() {
        assert!(Logits::new(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(Logits::new(&[], 2).is_err());
        assert!(Logits::new(&[1.0], 0).is_err());
        let err = Logits::new(&[1.0, f32::NAN], 2).expect_err("nan");
        assert!(
            matches!(err, RobustError::NonFinite { index: 1, .. }),
            "{err}"
        );
        assert!(Logits::with_labels(&[1.0, 2.0], 2, &[2]).is_err());
        assert!(Logits::with_labels(&[1.0, 2.0], 2, &[0, 1]).is_err());
        let l = Logits::with_labels(&[1.0, 2.0, 3.0, 0.0], 2, &[1, 0]).expect("valid");
        assert_eq!((l.len(), l.classes()), (2, 2));
        assert_eq!(l.row(1), &[3.0, 0.0]);
    }

    #[test]
    fn softmax_is_stable_and_argmax_takes_the_first_tie() {
        let p = softmax(&[1000.0, 1000.0], 1.0);
        assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.5).abs() < 1e-12);
        assert_eq!(argmax(&[2.0, 5.0, 5.0]), 1);
        assert!((log_sum_exp(&[0.0, 0.0], 1.0) - 2f64.ln()).abs() < 1e-12);
        let err = error_rate(&[0.0, 1.0, 1.0, 0.0, 5.0, 1.0], 2, &[1, 1, 0]).expect("ok");
        assert!((err - 1.0 / 3.0).abs() < 1e-12);
    }
}
