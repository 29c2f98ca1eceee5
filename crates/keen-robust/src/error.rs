//! The one error type of keen-robust.
//!
//! Metrics take user data (logits, labels, scores, error tables); every way that data
//! can be unusable is a variant naming the input and the value at fault, never a panic.

/// Everything that can go wrong while computing a robustness metric or chart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RobustError {
    /// An input that needs at least one element has none.
    #[error("{what} is empty")]
    Empty {
        /// Which input.
        what: &'static str,
    },

    /// Two inputs that must agree in length do not.
    #[error("{what}: expected {expected} entries, found {found}")]
    LengthMismatch {
        /// Which input, and what it must agree with.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },

    /// A NaN or infinite value where a finite number is required.
    #[error("{what}: entry {index} is {value}, expected a finite number")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Position of the first bad entry.
        index: usize,
        /// The value found.
        value: f64,
    },

    /// A label is not a valid class index.
    #[error("label {label} at sample {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Sample position.
        index: usize,
        /// The label found.
        label: u32,
        /// Number of classes.
        classes: usize,
    },

    /// An argument outside its valid range (a temperature ≤ 0, zero bins, a rate > 1…).
    #[error("{name} = {value}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// What the valid range is.
        reason: String,
    },

    /// The baseline's error sum for a corruption is zero (or, for relative CE, does
    /// not exceed its clean error), so the normalised error is undefined.
    #[error(
        "baseline has no {kind} error on `{corruption}`, so its normalised error is undefined"
    )]
    DegenerateBaseline {
        /// The corruption whose baseline errors sum to zero.
        corruption: String,
        /// `"corruption"` for CE, `"relative"` for relative CE.
        kind: &'static str,
    },

    /// The model reports a corruption the baseline lacks.
    #[error("corruption `{corruption}` is missing from the baseline")]
    MissingCorruption {
        /// The corruption name.
        corruption: String,
    },

    /// A metric needs both classes (e.g. in- and out-of-distribution scores).
    #[error("{what}: needs at least one sample of each kind")]
    OneSided {
        /// Which metric.
        what: &'static str,
    },

    /// The covariance of the training features is not positive definite even after the
    /// ridge (e.g. all features constant).
    #[error(
        "covariance is not positive definite at pivot {pivot} (value {value}); raise the ridge"
    )]
    NotPositiveDefinite {
        /// The Cholesky pivot that failed.
        pivot: usize,
        /// Its value.
        value: f64,
    },

    /// Encoding an image failed.
    #[error("image encoding failed: {reason}")]
    Image {
        /// What the encoder reported.
        reason: String,
    },

    /// A corruption could not be applied (from keen-data).
    #[error(transparent)]
    Corruption(#[from] keen_data::CorruptionError),
}

/// Checks that every value is finite, naming the input and the first bad entry.
pub(crate) fn check_finite<T: Copy + Into<f64>>(
    what: &'static str,
    values: &[T],
) -> Result<(), RobustError> {
    match values.iter().position(|&v| !v.into().is_finite()) {
        Some(index) => Err(RobustError::NonFinite {
            what,
            index,
            value: values[index].into(),
        }),
        None => Ok(()),
    }
}
