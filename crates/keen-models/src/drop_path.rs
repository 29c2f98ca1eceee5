//! Stochastic depth (Huang et al. 2016), as timm's `DropPath`: in training, each sample's
//! residual branch is dropped with probability `prob` and kept ones are scaled by
//! `1 / (1 − prob)`, so the expected output is unchanged; in inference it is the identity.

use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

/// Drops a whole residual branch per sample during training.
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping a sample's branch (0 = off).
    pub prob: f64,
    /// Training behaviour is on. Cleared by `valid()` like burn's `Dropout`; flags are not
    /// stored in weight files, so a loaded model always starts with the rate its builder gave.
    pub training: Param<Flag>,
}

impl DropPath {
    /// A drop path with probability `prob`.
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Applies stochastic depth to a residual branch `[batch, ...]`.
    pub fn forward<const D: usize>(&self, branch: Tensor<D>) -> Tensor<D> {
        // Same test as burn's Dropout: the device says a backward is possible, the flag says
        // this module is in training mode (valid() on an autodiff input clears it).
        if self.prob <= 0.0 || !self.training.is_enabled() || !branch.device().is_autodiff() {
            return branch;
        }
        let keep = 1.0 - self.prob;
        let mut mask_shape = [1usize; D];
        mask_shape[0] = branch.dims()[0];
        let mask = Tensor::<D>::random(mask_shape, Distribution::Bernoulli(keep), &branch.device());
        branch * mask.div_scalar(keep)
    }
}

/// timm's schedule: rates growing linearly from 0 at the first block to `rate` at the last.
pub fn linear_rates(rate: f64, blocks: usize) -> Vec<f64> {
    match blocks {
        0 => Vec::new(),
        1 => vec![rate],
        n => (0..n).map(|i| rate * i as f64 / (n - 1) as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_in_eval_and_on_plain_devices() {
        let drop = DropPath::new(0.5);
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::random([64, 3, 4], Distribution::Default, &device);
        // valid() switches the module to inference mode even on an autodiff input.
        let eval = drop.valid().forward(x.clone());
        eval.into_data().assert_eq(&x.clone().into_data(), true);
        let plain = x.clone().inner();
        drop.forward(plain.clone())
            .into_data()
            .assert_eq(&plain.into_data(), true);
    }

    #[test]
    fn training_drops_whole_samples_and_keeps_the_mean() {
        let drop = DropPath::new(0.5);
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::ones([512, 2, 3], &device);
        let out = drop
            .forward(x)
            .inner()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for sample in out.chunks(6) {
            // A sample is either dropped entirely or kept and scaled by 1/keep.
            assert!(sample.iter().all(|v| *v == sample[0]), "{sample:?}");
            assert!(sample[0] == 0.0 || (sample[0] - 2.0).abs() < 1e-6);
        }
        let mean = out.iter().sum::<f32>() / out.len() as f32;
        assert!((mean - 1.0).abs() < 0.2, "mean {mean}");
    }

    #[test]
    fn rates_grow_linearly_to_the_last_block() {
        assert_eq!(linear_rates(0.1, 3), vec![0.0, 0.05, 0.1]);
        assert_eq!(linear_rates(0.2, 1), vec![0.2]);
    }
}
