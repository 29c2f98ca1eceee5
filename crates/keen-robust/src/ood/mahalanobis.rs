//! The Mahalanobis OOD detector of Lee et al. (2018), without input preprocessing:
//! class-conditional Gaussians with a shared covariance, fitted on training features.
//!
//! Fitting computes one mean per class and the pooled within-class covariance
//! `Σ = (1/N) Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ`, adds a ridge to its diagonal, and
//! keeps its Cholesky factor `Σ = L Lᵀ`. The score of a feature vector is
//! `−min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c)`, computed as `−min_c |L⁻¹(x − μ_c)|²` by forward
//! substitution — higher = more in-distribution, like every score in [`crate::ood`].

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, RobustError};

/// Class means and the Cholesky factor of the shared covariance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MahalanobisDetector {
    /// Feature dimension `d`.
    pub dims: usize,
    /// One mean (`d` values) per class that had training samples.
    pub class_means: Vec<Vec<f64>>,
    /// The class label of each entry of `class_means`.
    pub mean_labels: Vec<u32>,
    /// Lower-triangular Cholesky factor of the ridged covariance, row-major `d × d`.
    pub cholesky: Vec<f64>,
    /// The ridge that was added to the diagonal (absolute, after scaling).
    pub ridge_added: f64,
}

impl MahalanobisDetector {
    /// Fits on row-major `[n, dims]` training `features` with one label each.
    ///
    /// `relative_ridge` is added to the covariance diagonal as a fraction of its mean
    /// diagonal (the average feature variance), so it is independent of feature scale;
    /// `1e-6` is enough to make a rank-deficient covariance (more dimensions than
    /// samples) invertible. Classes without samples are skipped.
    pub fn fit(
        features: &[f32],
        dims: usize,
        labels: &[u32],
        relative_ridge: f64,
    ) -> Result<Self, RobustError> {
        let n = check_features(features, dims)?;
        if labels.len() != n {
            return Err(RobustError::LengthMismatch {
                what: "labels (one per feature row)",
                expected: n,
                found: labels.len(),
            });
        }
        if !(relative_ridge.is_finite() && relative_ridge >= 0.0) {
            return Err(RobustError::InvalidArgument {
                name: "relative_ridge",
                value: relative_ridge.to_string(),
                reason: "must be a finite number >= 0".into(),
            });
        }
        let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut sums = vec![vec![0.0f64; dims]; classes];
        let mut counts = vec![0usize; classes];
        for (row, &label) in features.chunks_exact(dims).zip(labels) {
            counts[label as usize] += 1;
            for (s, &v) in sums[label as usize].iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        let mut means = vec![Vec::new(); classes];
        for ((mean, sum), &count) in means.iter_mut().zip(&sums).zip(&counts) {
            if count > 0 {
                *mean = sum.iter().map(|s| s / count as f64).collect();
            }
        }
        let mut covariance = vec![0.0f64; dims * dims];
        let mut centred = vec![0.0f64; dims];
        for (row, &label) in features.chunks_exact(dims).zip(labels) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&means[label as usize]) {
                *c = v as f64 - m;
            }
            for i in 0..dims {
                for j in 0..=i {
                    covariance[i * dims + j] += centred[i] * centred[j];
                }
            }
        }
        let mean_variance =
            (0..dims).map(|i| covariance[i * dims + i]).sum::<f64>() / (n as f64 * dims as f64);
        // A floor keeps constant features (zero variance everywhere) factorisable.
        let ridge = relative_ridge * mean_variance.max(f64::MIN_POSITIVE) + f64::MIN_POSITIVE;
        for i in 0..dims {
            for j in 0..=i {
                covariance[i * dims + j] /= n as f64;
            }
            covariance[i * dims + i] += ridge;
        }
        let cholesky = cholesky_lower(&covariance, dims)?;
        let (class_means, mean_labels) = means
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(c, m)| (m, c as u32))
            .unzip();
        Ok(MahalanobisDetector {
            dims,
            class_means,
            mean_labels,
            cholesky,
            ridge_added: ridge,
        })
    }

    /// Scores row-major `[n, dims]` features: `−min_c` squared Mahalanobis distance.
    pub fn score(&self, features: &[f32]) -> Result<Vec<f32>, RobustError> {
        check_features(features, self.dims)?;
        let mut diff = vec![0.0f64; self.dims];
        Ok(features
            .chunks_exact(self.dims)
            .map(|row| {
                let nearest = self
                    .class_means
                    .iter()
                    .map(|mean| {
                        for ((d, &v), m) in diff.iter_mut().zip(row).zip(mean) {
                            *d = v as f64 - m;
                        }
                        self.squared_norm_of_solve(&diff)
                    })
                    .fold(f64::INFINITY, f64::min);
                -nearest as f32
            })
            .collect())
    }

    /// `|L⁻¹ v|²` by forward substitution.
    fn squared_norm_of_solve(&self, v: &[f64]) -> f64 {
        let d = self.dims;
        let mut z = vec![0.0f64; d];
        for i in 0..d {
            let row = &self.cholesky[i * d..i * d + i];
            let dot: f64 = row.iter().zip(&z).map(|(l, z)| l * z).sum();
            z[i] = (v[i] - dot) / self.cholesky[i * d + i];
        }
        z.iter().map(|z| z * z).sum()
    }
}

fn check_features(features: &[f32], dims: usize) -> Result<usize, RobustError> {
    if dims == 0 {
        return Err(RobustError::InvalidArgument {
            name: "dims",
            value: "0".into(),
            reason: "features need at least one dimension".into(),
        });
    }
    if features.is_empty() {
        return Err(RobustError::Empty { what: "features" });
    }
    if !features.len().is_multiple_of(dims) {
        return Err(RobustError::LengthMismatch {
            what: "features (a multiple of dims)",
            expected: features.len().div_ceil(dims) * dims,
            found: features.len(),
        });
    }
    check_finite("features", features)?;
    Ok(features.len() / dims)
}

/// Cholesky factor `L` (lower triangle, row-major) of a symmetric positive-definite
/// matrix given by its lower triangle; fails on a non-positive pivot.
pub(crate) fn cholesky_lower(matrix: &[f64], d: usize) -> Result<Vec<f64>, RobustError> {
    let mut l = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            let value = matrix[i * d + j] - dot;
            if i == j {
                if !(value > 0.0 && value.is_finite()) {
                    return Err(RobustError::NotPositiveDefinite { pivot: i, value });
                }
                l[i * d + i] = value.sqrt();
            } else {
                l[i * d + j] = value / l[j * d + j];
            }
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_of_a_known_matrix() {
        // [[4, 2], [2, 3]] = L Lᵀ with L = [[2, 0], [1, √2]].
        let l = cholesky_lower(&[4.0, 0.0, 2.0, 3.0], 2).expect("spd");
        let want = [2.0, 0.0, 1.0, 2f64.sqrt()];
        assert!(
            l.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{l:?}"
        );
        assert!(cholesky_lower(&[1.0, 0.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn identity_covariance_gives_squared_euclidean_distance() {
        // Two classes at (±1, 0) with within-class offsets (0, ±1) and (±1, 0) chosen so
        // the pooled covariance is exactly diag(0.5, 0.5).
        let features = [
            -2.0, 0.0, 0.0, 0.0, -1.0, 1.0, -1.0, -1.0, // class 0 around (-1, 0)
            0.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, -1.0, // class 1 around (1, 0)
        ];
        let labels = [0, 0, 0, 0, 1, 1, 1, 1];
        let det = MahalanobisDetector::fit(&features, 2, &labels, 0.0).expect("fits");
        assert_eq!(det.mean_labels, vec![0, 1]);
        assert!((det.class_means[1][0] - 1.0).abs() < 1e-12);
        // (3, 0): nearest mean (1, 0), distance² = 2² / 0.5 = 8.
        let s = det.score(&[3.0, 0.0, 1.0, 0.0]).expect("scores");
        assert!((s[0] + 8.0).abs() < 1e-4, "{s:?}");
        assert!(s[1].abs() < 1e-4 && s[1] > s[0]);
    }

    #[test]
    fn correlated_covariance_matches_hand_computation() {
        // One class: (1, 1), (−1, −1), (1, 0), (−1, 0). Mean 0, Σ = [[1, ½], [½, ½]],
        // Σ⁻¹ = [[2, −2], [−2, 4]]. Two points at the same Euclidean distance differ:
        // (1, 1) lies along the correlation (d² = 2 − 4 + 4 = 2), (1, −1) across it
        // (d² = 2 + 4 + 4 = 10).
        let features = [1.0, 1.0, -1.0, -1.0, 1.0, 0.0, -1.0, 0.0];
        let det = MahalanobisDetector::fit(&features, 2, &[0; 4], 0.0).expect("fits");
        let s = det.score(&[1.0, 1.0, 1.0, -1.0]).expect("scores");
        assert!((s[0] + 2.0).abs() < 1e-5, "{s:?}");
        assert!((s[1] + 10.0).abs() < 1e-5, "{s:?}");
    }

    #[test]
    fn bad_inputs_are_errors_and_constant_features_fit_with_a_ridge() {
        assert!(MahalanobisDetector::fit(&[1.0, 2.0, 3.0], 2, &[0], 1e-3).is_err());
        assert!(MahalanobisDetector::fit(&[1.0, 2.0], 2, &[0, 1], 1e-3).is_err());
        assert!(MahalanobisDetector::fit(&[1.0, f32::NAN], 2, &[0], 1e-3).is_err());
        assert!(MahalanobisDetector::fit(&[1.0, 2.0], 2, &[0], -1.0).is_err());
        let det = MahalanobisDetector::fit(&[1.0, 1.0, 1.0, 1.0], 2, &[0, 0], 1e-6).expect("fits");
        assert!(det.score(&[1.0, 1.0]).expect("scores")[0].is_finite());
        assert!(det.score(&[1.0]).is_err());
    }
}
