//! The fused batch-norm kernels against the plain reference loops: output, batch statistics and
//! the gradients of the input, gamma and beta, with and without the ReLU, over planes that are
//! and are not a multiple of the kernels' lane count.

use keen_kernels::norm::{fused, reference, BatchNormShape};
use keen_kernels::KernelError;

mod common;

/// Deterministic values in [offset − scale, offset + scale) from a seed.
fn values(len: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    common::values(len, seed)
        .into_iter()
        .map(|v| v * scale + offset)
        .collect()
}

fn assert_close(what: &str, fast: &[f32], reference: &[f32], tolerance: f32) {
    assert_eq!(fast.len(), reference.len(), "{what}: length");
    for (i, (a, b)) in fast.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}[{i}]: fused {a} vs reference {b}"
        );
    }
}

fn check(dims: &[usize], relu: bool, seed: u64) {
    let shape = BatchNormShape::new(dims).unwrap();
    // An offset and a spread far from N(0, 1), as a convolution's output is: the variance must
    // not lose digits to the mean.
    let x = values(shape.len(), seed, 3.0, 5.0);
    let gamma = values(shape.channels, seed + 1, 1.0, 0.5);
    let beta = values(shape.channels, seed + 2, 0.5, 0.0);
    let out_grad = values(shape.len(), seed + 3, 1.0, 0.0);
    let epsilon = 1e-5;

    let fast = fused::batch_norm_forward(&shape, &x, &gamma, &beta, epsilon, relu).unwrap();
    let slow = reference::batch_norm_forward(&shape, &x, &gamma, &beta, epsilon, relu).unwrap();
    let case = format!("{dims:?} relu={relu}");
    assert_close(&format!("{case} output"), &fast.output, &slow.output, 1e-5);
    assert_close(
        &format!("{case} mean"),
        &fast.stats.mean,
        &slow.stats.mean,
        1e-6,
    );
    assert_close(
        &format!("{case} variance"),
        &fast.stats.variance,
        &slow.stats.variance,
        1e-5,
    );
    if relu {
        assert!(fast.output.iter().all(|&v| v >= 0.0), "{case}: ReLU output");
        assert!(
            fast.output.contains(&0.0) && fast.output.iter().any(|&v| v > 0.0),
            "{case}: the test data must open and close the ReLU"
        );
    }

    // Inference with the statistics the reference found: the same output.
    let inference =
        fused::batch_norm_inference(&shape, &x, &gamma, &beta, &slow.stats, epsilon, relu).unwrap();
    let inference_reference =
        reference::batch_norm_inference(&shape, &x, &gamma, &beta, &slow.stats, epsilon, relu)
            .unwrap();
    assert_close(
        &format!("{case} inference"),
        &inference,
        &inference_reference,
        1e-5,
    );
    assert_close(
        &format!("{case} inference against training"),
        &inference,
        &slow.output,
        1e-5,
    );

    let fast_grads = fused::batch_norm_backward(
        &shape,
        &x,
        &gamma,
        &beta,
        &fast.stats,
        epsilon,
        relu,
        &out_grad,
    )
    .unwrap();
    let slow_grads =
        reference::batch_norm_backward(&shape, &x, &gamma, &beta, epsilon, relu, &out_grad)
            .unwrap();
    // Gradient sums run over N·plane values: scale the tolerance with their count.
    let sum_tolerance = 1e-6 * shape.per_channel() as f32;
    assert_close(
        &format!("{case} input gradient"),
        &fast_grads.input,
        &slow_grads.input,
        1e-4,
    );
    assert_close(
        &format!("{case} gamma gradient"),
        &fast_grads.gamma,
        &slow_grads.gamma,
        sum_tolerance,
    );
    assert_close(
        &format!("{case} beta gradient"),
        &fast_grads.beta,
        &slow_grads.beta,
        sum_tolerance,
    );
}

#[test]
fn fused_kernels_match_the_reference() {
    let shapes: [&[usize]; 5] = [
        &[4, 3, 8, 8],    // planes a multiple of the lane count
        &[3, 5, 7, 9],    // planes with a remainder
        &[2, 4, 1, 1],    // one value per plane
        &[16, 6],         // [N, C], as after a linear layer
        &[2, 3, 2, 5, 3], // rank 5
    ];
    for (i, dims) in shapes.iter().enumerate() {
        for relu in [false, true] {
            check(dims, relu, 10 * i as u64 + relu as u64);
        }
    }
}

#[test]
fn gradients_sum_to_zero_over_each_channel_without_relu() {
    // Batch norm's output does not move when every input of a channel shifts by the same amount,
    // so its input gradient sums to zero per channel: a property neither kernel states directly.
    let shape = BatchNormShape::new(&[5, 2, 6, 6]).unwrap();
    let x = values(shape.len(), 7, 2.0, -1.0);
    let (gamma, beta) = (vec![1.5, -0.7], vec![0.2, 0.1]);
    let out_grad = values(shape.len(), 8, 1.0, 0.3);
    let forward = fused::batch_norm_forward(&shape, &x, &gamma, &beta, 1e-5, false).unwrap();
    let grads = fused::batch_norm_backward(
        &shape,
        &x,
        &gamma,
        &beta,
        &forward.stats,
        1e-5,
        false,
        &out_grad,
    )
    .unwrap();
    for c in 0..shape.channels {
        let sum: f64 = (0..shape.batch)
            .flat_map(|n| {
                let start = (n * shape.channels + c) * shape.plane;
                grads.input[start..start + shape.plane].to_vec()
            })
            .map(f64::from)
            .sum();
        assert!(sum.abs() < 1e-4, "channel {c}: Σ dx = {sum}");
    }
}

#[test]
fn wrong_lengths_and_shapes_are_errors_naming_the_buffer() {
    assert_eq!(
        BatchNormShape::new(&[4]),
        Err(KernelError::BatchNormShape { dims: vec![4] })
    );
    assert_eq!(
        BatchNormShape::new(&[0, 3, 4, 4]),
        Err(KernelError::BatchNormShape {
            dims: vec![0, 3, 4, 4]
        })
    );
    let shape = BatchNormShape::new(&[2, 3, 4, 4]).unwrap();
    let x = vec![0.0; shape.len()];
    let error =
        fused::batch_norm_forward(&shape, &x, &[1.0; 2], &[0.0; 3], 1e-5, false).unwrap_err();
    assert_eq!(
        error,
        KernelError::BufferLength {
            what: "batch norm gamma",
            len: 2,
            expected: 3
        }
    );
    let forward = fused::batch_norm_forward(&shape, &x, &[1.0; 3], &[0.0; 3], 1e-5, true).unwrap();
    let error = fused::batch_norm_backward(
        &shape,
        &x,
        &[1.0; 3],
        &[0.0; 3],
        &forward.stats,
        1e-5,
        true,
        &x[1..],
    )
    .unwrap_err();
    assert!(error.to_string().contains("output gradient"), "{error}");
}
