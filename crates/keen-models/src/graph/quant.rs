//! Fake quantization: what QAT trains through and what PTQ simulates.
//!
//! keen's INT8 scheme is the one ONNX Runtime, TFLite and PyTorch use for CPUs: weights are
//! symmetric INT8 per output channel (zero point 0, range ±127), activations affine UINT8 per
//! tensor (a scale and an integer zero point, so that 0.0 is exact). Fake quantization rounds a
//! float tensor to the nearest value that INT8 can represent and back, in float, and lets the
//! gradient pass straight through (the straight-through estimator of Bengio et al. 2013) inside
//! the representable range and stop outside it, as PyTorch's `FakeQuantize` does.

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Largest magnitude of a symmetric INT8 weight (−127..=127; −128 is left out so the range is
/// symmetric).
pub const WEIGHT_QMAX: f32 = 127.0;
/// Largest UINT8 activation code.
pub const ACTIVATION_QMAX: f32 = 255.0;

/// Scale and zero point of an affine UINT8 quantizer covering `[lo, hi]`, widened to include
/// 0.0 so that zero padding and ReLU outputs are exact.
pub fn affine_qparams(range: [f32; 2]) -> (f32, f32) {
    let lo = range[0].min(0.0);
    let hi = range[1].max(0.0);
    let scale = ((hi - lo) / ACTIVATION_QMAX).max(1e-8);
    let zero_point = (-lo / scale).round().clamp(0.0, ACTIVATION_QMAX);
    (scale, zero_point)
}

/// Fake-quantizes an activation to affine UINT8 over `range`, with a clipped straight-through
/// gradient.
pub fn fake_quant_activation<const D: usize>(x: Tensor<D>, range: [f32; 2]) -> Tensor<D> {
    let (scale, zero_point) = affine_qparams(range);
    let lo = -zero_point * scale;
    let hi = (ACTIVATION_QMAX - zero_point) * scale;
    let clamped = x.clamp(lo, hi);
    // zero_point is an integer, so round(x / s + z) − z = round(x / s).
    let rounded = clamped.clone().div_scalar(scale).round().mul_scalar(scale);
    clamped.clone() + (rounded - clamped).detach()
}

/// Per-output-channel symmetric INT8 scales of a weight laid out `[channels, rest]`.
pub fn weight_scales(weight: Tensor<2>) -> Tensor<2> {
    weight
        .abs()
        .max_dim(1)
        .div_scalar(WEIGHT_QMAX)
        .clamp_min(1e-12)
}

/// Fake-quantizes a weight `[channels, rest]` to symmetric INT8 per channel (dimension 0), with
/// a straight-through gradient.
pub fn fake_quant_weight(weight: Tensor<2>) -> Tensor<2> {
    let scales = weight_scales(weight.clone().detach());
    let rounded = weight
        .clone()
        .div(scales.clone())
        .round()
        .clamp(-WEIGHT_QMAX, WEIGHT_QMAX)
        .mul(scales);
    weight.clone() + (rounded - weight).detach()
}

/// Fake-quantizes a convolution weight `[out, in, kh, kw]` per output channel.
pub fn fake_quant_conv_weight(weight: Tensor<4>) -> Tensor<4> {
    let dims = weight.dims();
    fake_quant_weight(weight.reshape([dims[0], dims[1] * dims[2] * dims[3]])).reshape(dims)
}

/// Fake-quantizes a burn linear weight `[in, out]` per output feature.
pub fn fake_quant_linear_weight(weight: Tensor<2>) -> Tensor<2> {
    fake_quant_weight(weight.transpose()).transpose()
}

/// How the range of an activation is tracked during QAT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observer {
    /// The smallest and largest value ever seen.
    MinMax,
    /// An exponential moving average of each batch's minimum and maximum (PyTorch's
    /// `MovingAverageMinMaxObserver`, whose default constant is 0.01).
    MovingAverage {
        /// Weight of the newest batch.
        constant: f32,
    },
}

/// What a [`super::GraphNet`]'s forward does about quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantConfig {
    /// Fake-quantize weights and activations. Off: the graph computes in float.
    pub enabled: bool,
    /// Update activation ranges from training batches (QAT). Off: ranges stay as calibrated.
    pub observe: bool,
    /// How ranges are updated when observing.
    pub observer: Observer,
    /// Nodes kept in float (their weights and their output), e.g. by a sensitivity scan.
    pub float_nodes: Vec<usize>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            observe: false,
            observer: Observer::MovingAverage { constant: 0.01 },
            float_nodes: Vec::new(),
        }
    }
}

/// Quantization settings and the activation range of every value, shared by all clones of a
/// graph (so that data-parallel replicas update one set of ranges).
#[derive(Debug, Clone, Default)]
pub struct QuantState {
    /// The settings.
    pub config: QuantConfig,
    /// `[min, max]` per value id, `None` until observed or calibrated.
    pub ranges: Arc<Mutex<Vec<Option<[f32; 2]>>>>,
}

/// What a saved graph stores about quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantRecord {
    /// The settings.
    pub config: QuantConfig,
    /// Ranges per value id.
    pub ranges: Vec<Option<[f32; 2]>>,
}

impl QuantState {
    /// Fake quantization on, with calibrated `ranges`; `observe` lets QAT keep moving them
    /// (a moving average with constant 0.01).
    pub fn enabled(ranges: Vec<Option<[f32; 2]>>, observe: bool) -> Self {
        Self {
            config: QuantConfig {
                enabled: true,
                observe,
                observer: Observer::MovingAverage { constant: 0.01 },
                float_nodes: Vec::new(),
            },
            ranges: Arc::new(Mutex::new(ranges)),
        }
    }

    /// A float graph's state for `values` values.
    pub fn new(values: usize) -> Self {
        Self {
            config: QuantConfig::default(),
            ranges: Arc::new(Mutex::new(vec![None; values])),
        }
    }

    /// A copy that no longer shares its ranges with `self`.
    pub fn detached(&self) -> Self {
        Self {
            config: self.config.clone(),
            ranges: Arc::new(Mutex::new(self.ranges())),
        }
    }

    /// The current ranges.
    pub fn ranges(&self) -> Vec<Option<[f32; 2]>> {
        self.ranges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the ranges.
    pub fn set_ranges(&self, ranges: Vec<Option<[f32; 2]>>) {
        *self
            .ranges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ranges;
    }

    /// The range of `value`.
    pub fn range(&self, value: usize) -> Option<[f32; 2]> {
        self.ranges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(value)
            .copied()
            .flatten()
    }

    /// Folds a batch's `[min, max]` into `value`'s range with the configured observer.
    pub fn observe(&self, value: usize, batch: [f32; 2]) {
        let mut ranges = self
            .ranges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if value >= ranges.len() {
            ranges.resize(value + 1, None);
        }
        ranges[value] = Some(match (ranges[value], self.config.observer) {
            (None, _) => batch,
            (Some(old), Observer::MinMax) => [old[0].min(batch[0]), old[1].max(batch[1])],
            (Some(old), Observer::MovingAverage { constant }) => [
                old[0] + constant * (batch[0] - old[0]),
                old[1] + constant * (batch[1] - old[1]),
            ],
        });
    }

    /// The serialisable form.
    pub fn record(&self) -> QuantRecord {
        QuantRecord {
            config: self.config.clone(),
            ranges: self.ranges(),
        }
    }

    /// Rebuilds a state from its record.
    pub fn from_record(record: QuantRecord) -> Self {
        Self {
            config: record.config,
            ranges: Arc::new(Mutex::new(record.ranges)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn zero_is_exact_and_range_widened_to_include_it() {
        let (scale, zp) = affine_qparams([0.5, 2.0]);
        assert_eq!(zp, 0.0);
        assert!((scale - 2.0 / 255.0).abs() < 1e-7);
        let (scale, zp) = affine_qparams([-1.0, 1.0]);
        assert!(((-zp) * scale + 1.0).abs() < scale, "lowest code ~ -1");
        assert_eq!(zp, zp.round());
    }

    #[test]
    fn activation_fake_quant_rounds_to_grid_and_clamps() {
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([-3.0, -0.26, 0.0, 0.26, 0.74, 5.0], &device);
        let out = values(fake_quant_activation(x, [-1.0, 1.0]));
        let (scale, zp) = affine_qparams([-1.0, 1.0]);
        assert!(
            (out[0] - (-zp * scale)).abs() < 1e-6,
            "clamped to the lowest code"
        );
        assert!(
            (out[5] - (255.0 - zp) * scale).abs() < 1e-6,
            "clamped to the top"
        );
        assert_eq!(out[2], 0.0);
        for v in &out {
            let code = v / scale;
            assert!((code - code.round()).abs() < 1e-3, "{v} is on the grid");
        }
    }

    #[test]
    fn weight_fake_quant_is_per_channel_and_within_half_a_step() {
        let device = Device::flex();
        let w = Tensor::<2>::from_floats([[1.0, -0.5, 0.25], [100.0, 3.0, -50.0]], &device);
        let q = fake_quant_weight(w.clone());
        let q = q.into_data().try_to_vec::<f32>().unwrap();
        let w = w.into_data().try_to_vec::<f32>().unwrap();
        for (row, max) in [(0usize, 1.0f32), (1, 100.0)] {
            let step = max / 127.0;
            for col in 0..3 {
                let (a, b) = (w[row * 3 + col], q[row * 3 + col]);
                assert!((a - b).abs() <= step / 2.0 + 1e-6, "{a} -> {b}");
            }
        }
        // The small channel keeps its precision: its own scale, not the large channel's.
        assert!((q[2] - 0.25).abs() < 1.0 / 127.0);
    }

    #[test]
    fn straight_through_gradient_inside_range_zero_outside() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_floats([-5.0, 0.3, 0.7, 5.0], &device).require_grad();
        let y = fake_quant_activation(x.clone(), [-1.0, 1.0]);
        let grads = y.sum().backward();
        let g = values(x.grad(&grads).unwrap());
        assert_eq!(g, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn observers_track_ranges() {
        let mut state = QuantState::new(2);
        state.config.observer = Observer::MinMax;
        state.observe(1, [-1.0, 1.0]);
        state.observe(1, [-0.5, 2.0]);
        assert_eq!(state.range(1), Some([-1.0, 2.0]));
        state.config.observer = Observer::MovingAverage { constant: 0.5 };
        state.observe(1, [0.0, 0.0]);
        assert_eq!(state.range(1), Some([-0.5, 1.0]));
        assert_eq!(state.range(0), None);
    }
}
