//! The few distributions the corruptions draw from, written out so that results depend
//! only on the ChaCha stream, not on the version of a distributions crate.

use rand::Rng;

/// A standard normal draw (Box–Muller; one of the pair is discarded so every call uses
/// exactly two uniforms and streams stay aligned).
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f32 {
    // 1 - u keeps the logarithm's argument in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A uniform draw in `[lo, hi)`.
pub(crate) fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// A Poisson draw with mean `lambda >= 0`: Knuth's multiplication method below 10,
/// Hörmann's PTRS transformed rejection (1993) above, both exact.
pub(crate) fn poisson(rng: &mut impl Rng, lambda: f64) -> f64 {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0.0;
    }
    if lambda < 10.0 {
        let limit = (-lambda).exp();
        let mut k = 0.0;
        let mut product: f64 = rng.random();
        while product > limit {
            k += 1.0;
            product *= rng.random::<f64>();
        }
        return k;
    }
    let sqrt_lambda = lambda.sqrt();
    let log_lambda = lambda.ln();
    let b = 0.931 + 2.53 * sqrt_lambda;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let v_r = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.random::<f64>() - 0.5;
        let v: f64 = rng.random();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= v_r {
            return k;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let log_accept = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
        if log_accept <= -lambda + k * log_lambda - ln_gamma(k + 1.0) {
            return k;
        }
    }
}

/// `ln Γ(x)` for `x >= 1` (Lanczos, g = 7, nine coefficients; ~1e-13 relative error).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let series = COEFFICIENTS[1..]
        .iter()
        .enumerate()
        .fold(COEFFICIENTS[0], |acc, (i, c)| {
            acc + c / (x + i as f64 + 1.0)
        });
    0.5 * std::f64::consts::TAU.ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn mean_var(samples: &[f64]) -> (f64, f64) {
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!((ln_gamma(1.0)).abs() < 1e-10);
        assert!((ln_gamma(6.0) - 120f64.ln()).abs() < 1e-10);
        assert!((ln_gamma(21.0) - 2_432_902_008_176_640_000f64.ln()).abs() < 1e-8);
    }

    #[test]
    fn poisson_and_normal_have_the_right_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for lambda in [0.5, 4.0, 25.0, 300.0] {
            let s: Vec<f64> = (0..20_000).map(|_| poisson(&mut rng, lambda)).collect();
            let (mean, var) = mean_var(&s);
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.05,
                "{lambda}: {mean}"
            );
            assert!((var - lambda).abs() < 0.1 * lambda + 0.1, "{lambda}: {var}");
        }
        let s: Vec<f64> = (0..20_000)
            .map(|_| standard_normal(&mut rng) as f64)
            .collect();
        let (mean, var) = mean_var(&s);
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
