//! Noise corruptions: Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise.
//!
//! Every value is drawn independently per pixel and per channel, as in the reference.
//! "Change" figures below are the mean absolute difference in `u8` levels (0..=255) on
//! the test images of `corruptions/tests.rs` (textured 32×32 RGB and 28×28 grayscale,
//! CIFAR-10-C table), severities 1→5.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::random::{poisson, standard_normal};
use super::{CorruptionError, FloatImage, Setting};

/// Additive Gaussian noise `x + N(0, σ²)`, clipped to `[0, 1]`.
///
/// σ by severity: CIFAR-10-C 0.04, 0.06, 0.08, 0.09, 0.10; ImageNet-C 0.08, 0.12, 0.18,
/// 0.26, 0.38. Change on the test images ≈ 7, 10, 13, 15, 16 levels (CIFAR table).
pub fn gaussian_noise(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let sigma = setting.pick(
        &[0.04, 0.06, 0.08, 0.09, 0.10],
        &[0.08, 0.12, 0.18, 0.26, 0.38],
    );
    Ok(image.map_values(|v| v + sigma * standard_normal(rng)))
}

/// Shot noise: each value becomes `Poisson(x·λ) / λ`, so dark pixels stay dark and noise
/// grows with brightness, like photon counting.
///
/// λ (photons at full white) by severity: CIFAR-10-C 500, 250, 100, 75, 50; ImageNet-C
/// 60, 25, 12, 5, 3. Change ≈ 4, 5, 8, 10, 12 levels (CIFAR table).
pub fn shot_noise(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let photons: f32 = setting.pick(
        &[500.0, 250.0, 100.0, 75.0, 50.0],
        &[60.0, 25.0, 12.0, 5.0, 3.0],
    );
    Ok(image.map_values(|v| (poisson(rng, (v.max(0.0) * photons) as f64) as f32) / photons))
}

/// Impulse (salt-and-pepper) noise: each value is, with probability `amount`, replaced
/// by 0 or 1 with equal chance (scikit-image's `s&p`).
///
/// `amount` by severity: CIFAR-10-C 0.01, 0.02, 0.03, 0.05, 0.07; ImageNet-C 0.03, 0.06,
/// 0.09, 0.17, 0.27. Change ≈ amount × 128 levels on mid-grey content: 1, 2, 4, 6, 9.
pub fn impulse_noise(
    image: &FloatImage,
    setting: &Setting,
    rng: &mut ChaCha8Rng,
) -> Result<FloatImage, CorruptionError> {
    let amount = setting.pick(
        &[0.01, 0.02, 0.03, 0.05, 0.07],
        &[0.03, 0.06, 0.09, 0.17, 0.27],
    );
    Ok(image.map_values(|v| {
        // Both draws happen for every value so the stream position never depends on
        // the image content.
        let flip = rng.random::<f32>() < amount;
        let salt = rng.random::<bool>();
        match (flip, salt) {
            (false, _) => v,
            (true, true) => 1.0,
            (true, false) => 0.0,
        }
    }))
}
