//! Holding out a validation set from a training split.
//!
//! Test sets are for the final number only; model selection (early stopping, sweeps)
//! needs a validation set carved from the training data, reproducibly, so the same
//! seed always holds out the same images.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Splits `0..n` into `(train, val)` index lists, both sorted ascending.
///
/// The validation set has `round(n * val_fraction)` indices drawn uniformly at random
/// (not stratified) by a generator seeded with `seed`, so the split is a pure function
/// of `(n, val_fraction, seed)`. `val_fraction` is clamped to `[0, 1]`; `0` (or NaN)
/// gives an empty validation set.
pub fn train_val_split(n: usize, val_fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if val_fraction.is_nan() {
        0.0
    } else {
        val_fraction.clamp(0.0, 1.0) as f64
    };
    let n_val = ((n as f64) * fraction).round() as usize;
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut val = perm[..n_val].to_vec();
    let mut train = perm[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes_follow_the_fraction() {
        let (train, val) = train_val_split(1000, 0.1, 7);
        assert_eq!((train.len(), val.len()), (900, 100));
        let (train, val) = train_val_split(10, 0.0, 7);
        assert_eq!((train.len(), val.len()), (10, 0));
        let (train, val) = train_val_split(10, 1.5, 7);
        assert_eq!((train.len(), val.len()), (0, 10));
        let (train, val) = train_val_split(10, f32::NAN, 7);
        assert_eq!((train.len(), val.len()), (10, 0));
        let (train, val) = train_val_split(0, 0.5, 7);
        assert!(train.is_empty() && val.is_empty());
    }
}
