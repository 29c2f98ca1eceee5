//! Shared test helpers: a seeded generator and running ONNX bytes with tract.
#![allow(dead_code)]

use tract_onnx::prelude::*;

/// A small deterministic generator (reproducible values, not statistical quality).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `n` values uniform in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.uniform() * 2.0 - 1.0) * scale)
            .collect()
    }

    /// He-like uniform weights for a layer with `fan_in` inputs.
    pub fn weights(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        self.vec(n, (6.0 / fan_in as f32).sqrt())
    }
}

/// Runs ONNX `bytes` with tract on one f32 input of `shape`; returns the first output.
pub fn run_tract(bytes: &[u8], shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the model")
        .with_input_fact(0, f32::fact(shape).into())
        .expect("input fact")
        .into_optimized()
        .expect("tract optimizes the model")
        .into_runnable()
        .expect("runnable");
    let input = Tensor::from_shape(shape, data).expect("input tensor");
    let out = model.run(tvec!(input.into_tvalue())).expect("tract runs");
    let shape = out[0].shape().to_vec();
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    (shape, view.iter().copied().collect())
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
