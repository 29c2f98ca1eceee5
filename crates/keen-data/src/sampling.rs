//! Random draws the augmentations need beyond uniform ones: Gamma, Beta and Dirichlet samples
//! (mixup's and CutMix's blend weights, AugMix's chain weights), from the caller's generator so
//! every draw stays a function of the seed.

use rand::Rng;

/// A Gamma(shape, 1) sample (Marsaglia and Tsang 2000; shape < 1 by the boost
/// `Gamma(a) = Gamma(a + 1)·U^{1/a}`).
pub fn gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal by Box-Muller.
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
        let x = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(α, α) sample.
pub fn beta(rng: &mut impl Rng, alpha: f64) -> f64 {
    let (a, b) = (gamma(rng, alpha), gamma(rng, alpha));
    if a + b <= 0.0 {
        0.5
    } else {
        a / (a + b)
    }
}

/// A symmetric Dirichlet(α, …, α) sample of `k` weights summing to 1.
pub fn dirichlet(rng: &mut impl Rng, alpha: f64, k: usize) -> Vec<f64> {
    let draws: Vec<f64> = (0..k).map(|_| gamma(rng, alpha)).collect();
    let total: f64 = draws.iter().sum();
    if total <= 0.0 {
        return vec![1.0 / k as f64; k];
    }
    draws.into_iter().map(|g| g / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn mean_and_variance(samples: &[f64]) -> (f64, f64) {
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        (mean, var)
    }

    #[test]
    fn beta_samples_have_the_right_mean_and_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for alpha in [0.2, 0.8, 1.0, 2.0] {
            let samples: Vec<f64> = (0..20_000).map(|_| beta(&mut rng, alpha)).collect();
            let (mean, var) = mean_and_variance(&samples);
            // Beta(α, α): mean 1/2, variance 1 / (4(2α + 1)).
            assert!((mean - 0.5).abs() < 0.01, "α {alpha}: mean {mean}");
            let expected = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!(
                (var - expected).abs() < 0.01,
                "α {alpha}: var {var} vs {expected}"
            );
        }
    }

    #[test]
    fn dirichlet_weights_sum_to_one_with_the_right_marginals() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (k, alpha) = (3, 1.0);
        let mut first = Vec::new();
        for _ in 0..20_000 {
            let w = dirichlet(&mut rng, alpha, k);
            assert_eq!(w.len(), k);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(w.iter().all(|&x| (0.0..=1.0).contains(&x)));
            first.push(w[0]);
        }
        // A Dirichlet(1, 1, 1) weight is Beta(1, 2): mean 1/3, variance 1/18.
        let (mean, var) = mean_and_variance(&first);
        assert!((mean - 1.0 / 3.0).abs() < 0.01, "mean {mean}");
        assert!((var - 1.0 / 18.0).abs() < 0.005, "var {var}");
    }
}
