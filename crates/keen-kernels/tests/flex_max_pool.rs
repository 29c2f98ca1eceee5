//! `keen_kernels::max_pool2d` through burn: on Flex, with and without autodiff, it must give the
//! output and the input gradient of burn's own `MaxPool2d::forward` exactly, and it must take
//! keen's path only where that applies.

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::Distribution;

fn assert_same(what: &str, ours: Tensor<4>, burns: Tensor<4>) {
    assert_eq!(ours.dims(), burns.dims(), "{what}: shape");
    let ours = ours.into_data().try_to_vec::<f32>().unwrap();
    let burns = burns.into_data().try_to_vec::<f32>().unwrap();
    for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}[{i}]: keen {a} vs burn {b}"
        );
    }
}

/// A pooling case: name, kernel, stride, input shape.
type Case = (&'static str, [usize; 2], [usize; 2], [usize; 4]);

const CASES: [Case; 4] = [
    ("cnn-small's 2x2 stride 2", [2, 2], [2, 2], [4, 8, 28, 28]),
    ("odd sizes", [2, 2], [2, 2], [2, 3, 7, 9]),
    ("overlapping 3x3 stride 2", [3, 3], [2, 2], [2, 3, 9, 8]),
    ("non-square window and stride", [3, 2], [1, 2], [2, 2, 6, 7]),
];

fn layer(kernel: [usize; 2], stride: [usize; 2]) -> MaxPool2d {
    MaxPool2dConfig::new(kernel).with_strides(stride).init()
}

/// Inputs with many ties, so that the choice of the winning input shows in the gradient.
fn tied_input(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<4>::random(shape, Distribution::Uniform(-2.0, 2.0), device).round()
}

/// The case's layer and an input for it that keen's path takes.
fn keen_case(
    (name, kernel, stride, shape): Case,
    device: &Device,
) -> (&'static str, MaxPool2d, Tensor<4>) {
    let input = tied_input(shape, device);
    assert!(
        keen_kernels::uses_keen_max_pool(&input, kernel, stride),
        "{name}"
    );
    (name, layer(kernel, stride), input)
}

#[test]
fn autodiff_output_and_gradient_match_burns_max_pool() {
    let device = Device::flex().autodiff();
    for case in CASES {
        let (name, pool, input) = keen_case(case, &device);
        let output_dims = pool.forward(input.clone()).dims();
        let weighting = Tensor::<4>::random(output_dims, Distribution::Uniform(-1.0, 1.0), &device);
        let run = |ours: bool| {
            let x = input.clone().detach().require_grad();
            let out = if ours {
                keen_kernels::max_pool2d_layer(&pool, x.clone())
            } else {
                pool.forward(x.clone())
            };
            let grads = (out.clone() * weighting.clone()).sum().backward();
            (out, x.grad(&grads).expect("input gradient"))
        };
        let (out, grad) = run(true);
        let (out_b, grad_b) = run(false);
        assert_same(&format!("{name} output"), out, out_b);
        assert_same(&format!("{name} input grad"), grad, grad_b);
    }
}

#[test]
fn inference_on_plain_flex_matches_burns_max_pool() {
    let device = Device::flex();
    for case in CASES {
        let (name, pool, input) = keen_case(case, &device);
        let ours = keen_kernels::max_pool2d_layer(&pool, input.clone());
        assert_same(name, ours, pool.forward(input));
    }
}

#[test]
fn layers_keen_does_not_cover_keep_burns_path() {
    let device = Device::flex().autodiff();
    let input = tied_input([2, 3, 8, 8], &device);
    // Padding and ceil mode are burn's to handle; the results are still burn's.
    for pool in [
        MaxPool2dConfig::new([2, 2])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(),
        MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_ceil_mode(true)
            .init(),
    ] {
        let ours = keen_kernels::max_pool2d_layer(&pool, input.clone());
        assert_same("burn's path", ours, pool.forward(input.clone()));
    }
    // A window larger than the input is not keen's either (burn reports it).
    assert!(!keen_kernels::uses_keen_max_pool(&input, [9, 9], [1, 1]));
}
