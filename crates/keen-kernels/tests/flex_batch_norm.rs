//! `keen_kernels::batch_norm` and `batch_norm_relu` through burn: while training on Flex they
//! must give the output, the gradients (input, gamma, beta) and the running statistics of
//! burn's own `BatchNorm::forward` (then `relu`), in inference on plain Flex its output, and
//! for frozen layers on a training device they must be burn's path.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::{Distribution, TensorData};

fn assert_close<const D: usize>(what: &str, ours: Tensor<D>, burns: Tensor<D>, tolerance: f32) {
    let ours = ours.into_data().try_to_vec::<f32>().unwrap();
    let burns = burns.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(ours.len(), burns.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}[{i}]: keen {a} vs burn {b}"
        );
    }
}

/// A batch norm of `channels` with gamma, beta and running statistics away from their initial
/// values, built from data so that two calls give two independent layers with equal values.
fn layer(channels: usize, device: &Device) -> BatchNorm {
    let ramp = |scale: f32, offset: f32| {
        TensorData::new(
            (0..channels)
                .map(|c| offset + scale * c as f32)
                .collect::<Vec<_>>(),
            [channels],
        )
    };
    let mut bn = BatchNormConfig::new(channels)
        .with_momentum(0.2)
        .init(device);
    bn.gamma = Param::from_tensor(Tensor::from_data(ramp(0.25, 0.5), device));
    bn.beta = Param::from_tensor(Tensor::from_data(ramp(-0.1, 0.2), device));
    bn.running_mean = burn::module::RunningState::new(Tensor::from_data(ramp(0.5, -1.0), device));
    bn.running_var = burn::module::RunningState::new(Tensor::from_data(ramp(0.3, 0.7), device));
    bn
}

type Forward<const D: usize> = fn(&BatchNorm, Tensor<D>) -> Tensor<D>;

fn burn_plain<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    bn.forward(x)
}

fn burn_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    relu(bn.forward(x))
}

fn compare_training<const D: usize>(dims: [usize; D], device: &Device, with_relu: bool) {
    let case = format!("{dims:?} relu={with_relu}");
    let (ours_fn, burns_fn): (Forward<D>, Forward<D>) = if with_relu {
        (keen_kernels::batch_norm_relu, burn_relu)
    } else {
        (keen_kernels::batch_norm, burn_plain)
    };
    let (ours_bn, burns_bn) = (layer(dims[1], device), layer(dims[1], device));
    let data = Tensor::<D>::random(dims, Distribution::Normal(2.0, 3.0), device).into_data();
    let weights = Tensor::<D>::random(dims, Distribution::Uniform(-1.0, 1.0), device);
    let (x_ours, x_burns) = (
        Tensor::<D>::from_data(data.clone(), device).require_grad(),
        Tensor::<D>::from_data(data, device).require_grad(),
    );
    assert!(
        keen_kernels::uses_keen_batch_norm(&ours_bn, &x_ours),
        "{case}"
    );

    let ours = ours_fn(&ours_bn, x_ours.clone());
    let burns = burns_fn(&burns_bn, x_burns.clone());
    assert_close(&format!("{case} output"), ours.clone(), burns.clone(), 1e-4);
    let ours_grads = (ours * weights.clone()).sum().backward();
    let burns_grads = (burns * weights).sum().backward();
    assert_close(
        &format!("{case} input gradient"),
        x_ours.grad(&ours_grads).unwrap(),
        x_burns.grad(&burns_grads).unwrap(),
        1e-3,
    );
    for (name, ours, burns) in [
        ("gamma", &ours_bn.gamma, &burns_bn.gamma),
        ("beta", &ours_bn.beta, &burns_bn.beta),
    ] {
        assert_close(
            &format!("{case} {name} gradient"),
            ours.grad(&ours_grads).unwrap(),
            burns.grad(&burns_grads).unwrap(),
            1e-3,
        );
    }
    for (name, ours, burns) in [
        (
            "running mean",
            &ours_bn.running_mean,
            &burns_bn.running_mean,
        ),
        (
            "running variance",
            &ours_bn.running_var,
            &burns_bn.running_var,
        ),
    ] {
        assert_close(
            &format!("{case} {name}"),
            ours.value_sync(),
            burns.value_sync(),
            1e-5,
        );
    }
}

#[test]
fn training_matches_burns_batch_norm_and_relu() {
    let device = Device::flex().autodiff();
    for with_relu in [false, true] {
        compare_training([4, 3, 5, 6], &device, with_relu);
        compare_training([16, 5], &device, with_relu);
    }
}

#[test]
fn training_under_gradient_checkpointing_matches_burn() {
    let device = Device::flex().autodiff().gradient_checkpointing();
    compare_training([3, 4, 6, 6], &device, true);
}

#[test]
fn running_statistics_follow_burns_over_several_steps() {
    let device = Device::flex().autodiff();
    let (ours_bn, burns_bn) = (layer(3, &device), layer(3, &device));
    for step in 0..3 {
        let x = Tensor::<4>::random(
            [2, 3, 4, 4],
            Distribution::Normal(step as f64, 2.0),
            &device,
        );
        keen_kernels::batch_norm(&ours_bn, x.clone());
        burns_bn.forward(x);
    }
    assert_close(
        "running mean",
        ours_bn.running_mean.value_sync(),
        burns_bn.running_mean.value_sync(),
        1e-5,
    );
    assert_close(
        "running variance",
        ours_bn.running_var.value_sync(),
        burns_bn.running_var.value_sync(),
        1e-5,
    );
}

#[test]
fn inference_on_plain_flex_matches_burns_batch_norm() {
    let training = Device::flex().autodiff();
    let x = Tensor::<4>::random([3, 4, 5, 7], Distribution::Normal(0.5, 2.0), &training).inner();
    let bn = layer(4, &training).valid();
    assert!(keen_kernels::uses_keen_batch_norm(&bn, &x));
    assert_close(
        "inference",
        keen_kernels::batch_norm(&bn, x.clone()),
        bn.forward(x.clone()),
        1e-5,
    );
    let ours = keen_kernels::batch_norm_relu(&bn, x.clone());
    assert_close("inference + relu", ours.clone(), relu(bn.forward(x)), 1e-5);
    let values = ours.into_data().try_to_vec::<f32>().unwrap();
    assert!(values.contains(&0.0) && values.iter().any(|&v| v > 0.0));
}

#[test]
fn frozen_layers_keep_burns_path() {
    // A frozen layer on a training device normalises with its running statistics, as burn's
    // does, and its input still gets a gradient through burn's ops.
    let training = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Normal(0.5, 2.0), &training);
    let frozen = layer(3, &training).freeze();
    assert!(!keen_kernels::uses_keen_batch_norm(&frozen, &x));
    assert_close(
        "frozen",
        keen_kernels::batch_norm_relu(&frozen, x.clone()),
        relu(frozen.forward(x)),
        0.0,
    );
}
