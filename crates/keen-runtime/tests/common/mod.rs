//! Shared test helpers: a seeded generator and small graphs built with the public builder.
#![allow(dead_code)]

use keen_runtime::*;

/// A small deterministic generator (tests need reproducible values, not statistical quality).
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
}

/// He-like uniform weights for a layer with `fan_in` inputs.
pub fn weights(rng: &mut Rng, n: usize, fan_in: usize) -> Vec<f32> {
    rng.vec(n, (6.0 / fan_in as f32).sqrt())
}

/// A small CNN: conv → ReLU → max-pool → conv → ReLU → max-pool → flatten → linear+ReLU →
/// linear, on `[N, 1, 8, 8]`, 3 classes.
pub fn small_cnn(seed: u64) -> GraphBuilder {
    let mut rng = Rng::new(seed);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("image", &[1, 8, 8]);
    let w1 = g
        .tensor_f32("c1.w", vec![4, 1, 3, 3], weights(&mut rng, 36, 9))
        .unwrap();
    let b1 = g.tensor_f32("c1.b", vec![4], rng.vec(4, 0.1)).unwrap();
    let conv = |activation| {
        Op::Conv2d(Conv2dAttrs {
            padding: [1; 4],
            activation,
            ..Default::default()
        })
    };
    let pool = Op::MaxPool2d(MaxPool2dAttrs {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0; 4],
    });
    let c1 = g.op("c1", conv(Activation::Relu), &[&x, &w1, &b1]);
    let p1 = g.op("p1", pool.clone(), &[&c1]);
    let w2 = g
        .tensor_f32("c2.w", vec![8, 4, 3, 3], weights(&mut rng, 288, 36))
        .unwrap();
    let c2 = g.op("c2", conv(Activation::Relu), &[&p1, &w2]);
    let p2 = g.op("p2", pool, &[&c2]);
    let f = g.op("flat", Op::Flatten(FlattenAttrs::default()), &[&p2]);
    let w3 = g
        .tensor_f32("fc.w", vec![16, 32], weights(&mut rng, 512, 32))
        .unwrap();
    let b3 = g.tensor_f32("fc.b", vec![16], rng.vec(16, 0.1)).unwrap();
    let fc = g.op(
        "fc",
        Op::Linear(LinearAttrs {
            activation: Activation::Relu,
        }),
        &[&f, &w3, &b3],
    );
    let w4 = g
        .tensor_f32("head.w", vec![3, 16], weights(&mut rng, 48, 16))
        .unwrap();
    let b4 = g.tensor_f32("head.b", vec![3], rng.vec(3, 0.1)).unwrap();
    let y = g.op("head", Op::Linear(LinearAttrs::default()), &[&fc, &w4, &b4]);
    g.output(&y);
    g.class_names(vec!["a".into(), "b".into(), "c".into()]);
    g.normalization(vec![0.5], vec![0.25]);
    g.property("architecture", "test-cnn");
    g
}
