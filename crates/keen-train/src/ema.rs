//! An exponential moving average of the weights (Polyak averaging): the model FixMatch evaluates
//! with, timm's `--model-ema`, Mean Teacher's teacher.
//!
//! After every optimizer step, each float tensor of the averaged model — parameters and
//! batch-norm running statistics alike, as timm averages the whole state dict — moves towards
//! the trained model's: `avg ← d·avg + (1 − d)·w`. The decay warms up as
//! `d_t = min(d, (1 + t) / (10 + t))` (TensorFlow's `ExponentialMovingAverage` with
//! `num_updates`, timm's `ModelEmaV3` warm-up): with d = 0.999 a short run would otherwise keep
//! the random initial weights for its first thousand steps.
//!
//! The step count is the run's global step, so a resumed run, which reloads the average from
//! its checkpoint, continues exactly where an uninterrupted run would be.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use keen_models::KeenModel;

use crate::TrainError;

/// The averaged model and its decay.
pub struct WeightAverage {
    decay: f64,
    model: KeenModel,
}

impl WeightAverage {
    /// Starts the average at `model`'s current weights (kept in inference mode, without
    /// gradients).
    pub fn new(decay: f64, model: &KeenModel) -> Result<Self, TrainError> {
        validate_decay(decay)?;
        Ok(Self {
            decay,
            model: model.valid(),
        })
    }

    /// The decay applied at update number `step` (0-based): the warm-up, capped at the decay.
    pub fn decay_at(&self, step: usize) -> f64 {
        let t = step as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves the average towards `model`'s weights, as update number `step` (0-based).
    ///
    /// `model` must have the averaged model's architecture (it is the model being trained).
    pub fn update(&mut self, model: &KeenModel, step: usize) {
        let mut current = FlatFloats::default();
        model.valid().visit(&mut current);
        let mut blend = Blend {
            keep: self.decay_at(step),
            targets: current.tensors.into_iter(),
        };
        self.model = self.model.clone().map(&mut blend);
    }

    /// The averaged model, in inference mode.
    pub fn model(&self) -> &KeenModel {
        &self.model
    }

    /// Replaces the averaged weights (a resumed run loading its checkpoint).
    pub fn set_model(&mut self, model: KeenModel) {
        self.model = model.valid();
    }
}

/// Checks that a decay is in (0, 1).
pub fn validate_decay(decay: f64) -> Result<(), TrainError> {
    if decay > 0.0 && decay < 1.0 {
        Ok(())
    } else {
        Err(TrainError::BadConfig(format!(
            "the weight-average decay must be in (0, 1), e.g. 0.999; got {decay}"
        )))
    }
}

/// Every float tensor of a module in visiting order, flattened (so that tensors of any rank
/// fit one list).
#[derive(Default)]
struct FlatFloats {
    tensors: Vec<Tensor<1>>,
}

impl ModuleVisitor for FlatFloats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.tensors.push(param.val().flatten(0, D - 1));
    }
}

/// `avg ← keep·avg + (1 − keep)·target`, taking the targets in visiting order.
struct Blend {
    keep: f64,
    targets: std::vec::IntoIter<Tensor<1>>,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // The two models share an architecture, so they visit the same tensors in the same
        // order; a missing target leaves the tensor as it is rather than panic.
        let Some(target) = self.targets.next() else {
            return param;
        };
        let keep = self.keep;
        param.map(|average| {
            let target = target.reshape(average.shape());
            average.mul_scalar(keep).add(target.mul_scalar(1.0 - keep))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keen_models::{build_model, ModelSpec};

    use crate::tensors::to_f32_vec;

    fn floats(model: &KeenModel) -> Vec<f32> {
        let mut all = FlatFloats::default();
        model.visit(&mut all);
        all.tensors.into_iter().flat_map(to_f32_vec).collect()
    }

    fn model(seed: u64) -> KeenModel {
        let device = Device::flex();
        device.seed(seed);
        let model = build_model(&ModelSpec::new("cnn-small", [1, 28, 28], 10), &device)
            .expect("cnn-small builds");
        // Draw the lazily initialised weights now.
        let _ = floats(&model);
        model
    }

    #[test]
    fn warm_up_then_the_decay() {
        let average = WeightAverage::new(0.999, &model(1)).unwrap();
        assert!((average.decay_at(0) - 0.1).abs() < 1e-12);
        assert!((average.decay_at(90) - 91.0 / 100.0).abs() < 1e-12);
        assert_eq!(average.decay_at(1_000_000), 0.999);
    }

    #[test]
    fn an_update_blends_every_tensor_by_the_decay_of_its_step() {
        let (start, trained) = (model(1), model(2));
        let (a, b) = (floats(&start), floats(&trained));
        assert_ne!(a, b);
        let mut average = WeightAverage::new(0.9, &start).unwrap();
        // Step 40: warm-up gives 41/50 = 0.82, under the cap of 0.9.
        average.update(&trained, 40);
        let keep = 41.0f32 / 50.0;
        let got = floats(average.model());
        assert_eq!(got.len(), a.len());
        for ((g, x), y) in got.iter().zip(&a).zip(&b) {
            let want = keep * x + (1.0 - keep) * y;
            assert!((g - want).abs() < 1e-5, "{g} vs {want}");
        }
        // Averaging a model with itself changes nothing.
        let mut same = WeightAverage::new(0.999, &trained).unwrap();
        same.update(&trained, 5000);
        for (g, y) in floats(same.model()).iter().zip(&b) {
            assert!((g - y).abs() < 1e-6);
        }
    }

    #[test]
    fn decays_outside_zero_to_one_are_refused() {
        for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(WeightAverage::new(bad, &model(1)).is_err(), "{bad}");
        }
    }
}
