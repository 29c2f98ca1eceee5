//! Classification metrics: accuracy, per-class accuracy and the confusion matrix.

use serde::{Deserialize, Serialize};

/// A confusion matrix: `counts[true_class][predicted_class]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Row = true class, column = predicted class.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            counts: vec![vec![0; num_classes]; num_classes],
        }
    }

    /// Records one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Number of predictions recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Number of correct predictions.
    pub fn correct(&self) -> u64 {
        (0..self.counts.len()).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction of correct predictions (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// Recall of each class: correct / images of that class (0 for a class never seen).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                if n == 0 {
                    0.0
                } else {
                    row[i] as f64 / n as f64
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_recall_follow_the_counts() {
        let mut m = ConfusionMatrix::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0), (2, 2)] {
            m.add(t, p);
        }
        assert_eq!(m.total(), 6);
        assert_eq!(m.correct(), 4);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let recall = m.per_class_accuracy();
        assert!((recall[0] - 2.0 / 3.0).abs() < 1e-12);
        assert!((recall[1] - 1.0).abs() < 1e-12);
        assert!((recall[2] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_matrix_has_zero_accuracy() {
        assert_eq!(ConfusionMatrix::new(4).accuracy(), 0.0);
    }
}
