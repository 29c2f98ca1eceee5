//! `keen_kernels::conv2d` through burn: on Flex, with and without autodiff, it must give the
//! output and the gradients (input, weight, bias) of burn's own `Conv2d::forward`, and it must
//! take keen's path only where that applies.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::Distribution;

fn assert_close(what: &str, ours: Tensor<4>, burns: Tensor<4>) {
    let ours = ours.into_data().try_to_vec::<f32>().unwrap();
    let burns = burns.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(ours.len(), burns.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what}[{i}]: keen {a} vs burn {b}"
        );
    }
}

fn assert_close_1d(what: &str, ours: Tensor<1>, burns: Tensor<1>) {
    assert_close(
        what,
        ours.reshape([1, 1, 1, -1]),
        burns.reshape([1, 1, 1, -1]),
    );
}

fn uses_keen(conv: &Conv2d, input: &Tensor<4>) -> bool {
    let options = keen_kernels::conv2d_options(conv, input.dims());
    keen_kernels::uses_keen_conv(input, &conv.weight.val(), &options)
}

struct Case {
    name: &'static str,
    config: Conv2dConfig,
    input: [usize; 4],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "resnet 3x3 same, no bias",
            config: Conv2dConfig::new([4, 6], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false),
            input: [3, 4, 9, 9],
        },
        Case {
            name: "3x3 stride 2 with bias",
            config: Conv2dConfig::new([3, 5], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            input: [2, 3, 11, 8],
        },
        Case {
            name: "1x1 stride 2 shortcut",
            config: Conv2dConfig::new([4, 8], [1, 1])
                .with_stride([2, 2])
                .with_bias(false),
            input: [2, 4, 7, 7],
        },
        Case {
            name: "asymmetric padding, non-square kernel, dilation",
            config: Conv2dConfig::new([2, 3], [2, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 2, 1, 0))
                .with_dilation([2, 1]),
            input: [2, 2, 6, 5],
        },
    ]
}

#[test]
fn autodiff_gradients_match_burns_convolution() {
    let device = Device::flex().autodiff();
    for case in cases() {
        let conv: Conv2d = case.config.init(&device);
        let input = Tensor::<4>::random(case.input, Distribution::Uniform(-1.0, 1.0), &device);
        assert!(uses_keen(&conv, &input), "{}", case.name);

        // The same upstream gradient for both: a fixed random weighting of the outputs.
        let output_dims = conv.forward(input.clone()).dims();
        let weighting = Tensor::<4>::random(output_dims, Distribution::Uniform(-1.0, 1.0), &device);

        let run = |ours: bool| {
            let x = input.clone().detach().require_grad();
            let out = if ours {
                keen_kernels::conv2d_layer(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let grads = (out.clone() * weighting.clone()).sum().backward();
            let weight_grad = conv.weight.grad(&grads).expect("weight gradient");
            let bias_grad = conv
                .bias
                .as_ref()
                .map(|b| b.grad(&grads).expect("bias gradient"));
            let input_grad = x.grad(&grads).expect("input gradient");
            (out, input_grad, weight_grad, bias_grad)
        };
        let (out, input_grad, weight_grad, bias_grad) = run(true);
        let (out_b, input_grad_b, weight_grad_b, bias_grad_b) = run(false);
        assert_close(&format!("{} output", case.name), out, out_b);
        assert_close(
            &format!("{} input grad", case.name),
            input_grad,
            input_grad_b,
        );
        assert_close(
            &format!("{} weight grad", case.name),
            weight_grad,
            weight_grad_b,
        );
        match (bias_grad, bias_grad_b) {
            (Some(ours), Some(burns)) => {
                assert_close_1d(&format!("{} bias grad", case.name), ours, burns)
            }
            (None, None) => {}
            _ => panic!("{}: bias gradient present on one side only", case.name),
        }
    }
}

#[test]
fn inference_on_plain_flex_matches_burns_convolution() {
    let device = Device::flex();
    for case in cases() {
        let conv: Conv2d = case.config.init(&device);
        let input = Tensor::<4>::random(case.input, Distribution::Uniform(-1.0, 1.0), &device);
        assert!(uses_keen(&conv, &input), "{}", case.name);
        let ours = keen_kernels::conv2d_layer(&conv, input.clone());
        assert_close(case.name, ours, conv.forward(input));
    }
}

#[test]
fn grouped_convolution_keeps_burns_path() {
    let device = Device::flex().autodiff();
    let conv: Conv2d = Conv2dConfig::new([4, 4], [3, 3])
        .with_groups(4)
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let input = Tensor::<4>::random([2, 4, 5, 5], Distribution::Uniform(-1.0, 1.0), &device);
    assert!(!uses_keen(&conv, &input));
    assert_close(
        "depthwise",
        keen_kernels::conv2d_layer(&conv, input.clone()),
        conv.forward(input),
    );
}

#[test]
fn frozen_input_gets_no_gradient_but_weight_does() {
    // The first layer of a network: the images need no gradient, only the weight.
    let device = Device::flex().autodiff();
    let conv: Conv2d = Conv2dConfig::new([1, 4], [3, 3]).init(&device);
    let images = Tensor::<4>::random([2, 1, 6, 6], Distribution::Uniform(0.0, 1.0), &device);
    let grads = keen_kernels::conv2d_layer(&conv, images.clone())
        .sum()
        .backward();
    assert!(images.grad(&grads).is_none());
    let weight_grad = conv.weight.grad(&grads).expect("weight gradient");
    assert_eq!(weight_grad.dims(), [4, 1, 3, 3]);
}
