//! Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
//! Gradient-based Localization").
//!
//! For a class score `y` and a layer's activations `A` (`channels × h × w`), each channel's
//! weight is its gradient averaged over the positions, `α_k = mean_ij ∂y/∂A_kij`; the map is
//! `ReLU(Σ_k α_k A_k)`, positive where the features push the class score up.

use crate::error::{check_finite, RobustError};

/// The Grad-CAM map `h × w` (row-major) of one image from its activations and their
/// gradients, both `[channels, h, w]`.
pub fn grad_cam(
    activations: &[f32],
    gradients: &[f32],
    [channels, height, width]: [usize; 3],
) -> Result<Vec<f32>, RobustError> {
    let plane = height * width;
    if plane == 0 || channels == 0 {
        return Err(RobustError::Empty {
            what: "Grad-CAM activations",
        });
    }
    for (what, values) in [
        ("Grad-CAM activations", activations),
        ("Grad-CAM gradients", gradients),
    ] {
        if values.len() != channels * plane {
            return Err(RobustError::LengthMismatch {
                what,
                expected: channels * plane,
                found: values.len(),
            });
        }
        check_finite(what, values)?;
    }
    let mut map = vec![0.0f64; plane];
    for (a, g) in activations
        .chunks_exact(plane)
        .zip(gradients.chunks_exact(plane))
    {
        let alpha = g.iter().map(|&v| v as f64).sum::<f64>() / plane as f64;
        for (m, &v) in map.iter_mut().zip(a) {
            *m += alpha * v as f64;
        }
    }
    Ok(map.into_iter().map(|v| v.max(0.0) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_channels_by_their_mean_gradient_and_keeps_the_positive_part() {
        // Channel 0 (lit on the left column) raises the score, channel 1 (lit on the right)
        // lowers it: only the left column shows.
        let activations = [1.0, 0.0, 1.0, 0.0, /* */ 0.0, 1.0, 0.0, 1.0];
        let gradients = [0.5, 0.5, 0.5, 0.5, /* */ -1.0, -1.0, -1.0, -1.0];
        let map = grad_cam(&activations, &gradients, [2, 2, 2]).unwrap();
        assert_eq!(map, vec![0.5, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn mismatched_or_non_finite_inputs_are_errors() {
        assert!(matches!(
            grad_cam(&[1.0; 3], &[1.0; 4], [1, 2, 2]),
            Err(RobustError::LengthMismatch { .. })
        ));
        assert!(matches!(
            grad_cam(&[1.0; 4], &[f32::INFINITY; 4], [1, 2, 2]),
            Err(RobustError::NonFinite { .. })
        ));
        assert!(grad_cam(&[], &[], [0, 2, 2]).is_err());
    }
}
