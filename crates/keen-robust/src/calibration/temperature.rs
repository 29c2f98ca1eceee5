//! Temperature scaling (Guo et al., 2017): divide the logits by one scalar `T > 0` fitted
//! on a validation split to minimise the negative log-likelihood. It changes confidences,
//! never predictions.
//!
//! The NLL is convex in `1/T`, hence unimodal in `log T`, so a golden-section search on
//! `log T` over a wide bracket finds the minimum without derivatives or step sizes; it
//! cannot diverge, whatever the logits.

use serde::{Deserialize, Serialize};

use super::nll_of;
use crate::error::RobustError;
use crate::logits::Logits;
use crate::ood::check_temperature;

/// The search bracket for `T`: wide enough for any sensible model (over-confident
/// networks land at 1–5), narrow enough to stay well conditioned.
pub const TEMPERATURE_RANGE: (f64, f64) = (0.01, 100.0);

/// Iterations of golden-section search: the bracket shrinks by 0.618 per step, so 80
/// steps take the 9.2-wide log bracket below 1e-15.
const GOLDEN_STEPS: usize = 80;

/// The fitted temperature and what it did to the validation NLL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemperatureFit {
    /// The fitted temperature; divide logits by it.
    pub temperature: f64,
    /// Validation NLL at `T = 1`.
    pub nll_before: f64,
    /// Validation NLL at the fitted `T`.
    pub nll_after: f64,
    /// Whether the optimum sits on an end of [`TEMPERATURE_RANGE`] (then the true
    /// minimiser may lie beyond it, e.g. logits that are all zero or all correct).
    pub at_bracket_edge: bool,
}

/// Fits `T` on row-major `[n, classes]` validation logits and labels by minimising NLL.
pub fn fit_temperature(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
) -> Result<TemperatureFit, RobustError> {
    let checked = Logits::with_labels(logits, classes, labels)?;
    let nll_at_log_t = |log_t: f64| nll_of(&checked, labels, log_t.exp());
    let (mut lo, mut hi) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (nll_at_log_t(a), nll_at_log_t(b));
    for _ in 0..GOLDEN_STEPS {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = nll_at_log_t(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = nll_at_log_t(b);
        }
    }
    let log_t = (lo + hi) / 2.0;
    let edge_tolerance = 1e-6;
    Ok(TemperatureFit {
        temperature: log_t.exp(),
        nll_before: nll_at_log_t(0.0),
        nll_after: nll_at_log_t(log_t),
        at_bracket_edge: (log_t - TEMPERATURE_RANGE.0.ln()).abs() < edge_tolerance
            || (log_t - TEMPERATURE_RANGE.1.ln()).abs() < edge_tolerance,
    })
}

/// Divides every logit by `temperature`.
pub fn apply_temperature(logits: &[f32], temperature: f64) -> Result<Vec<f32>, RobustError> {
    check_temperature(temperature)?;
    Ok(logits
        .iter()
        .map(|&v| (v as f64 / temperature) as f32)
        .collect())
}
