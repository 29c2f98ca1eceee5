//! The im2col + GEMM convolution kernels against the plain reference loops: forward, input
//! gradient, weight gradient and bias gradient, over odd shapes, strides, asymmetric padding
//! and dilation.

use keen_kernels::conv::im2col_gemm::{self, WantedGrads};
use keen_kernels::conv::{reference, Conv2dGeometry};
use keen_kernels::KernelError;

mod common;
use common::values;

fn assert_close(what: &str, fast: &[f32], reference: &[f32], depth: usize) {
    assert_eq!(fast.len(), reference.len(), "{what}: length");
    // f32 sums of `depth` products of values in [-1, 1] against f64 sums: allow a few ulps of
    // the largest partial sum.
    let tolerance = 1e-6 * (depth as f32 + 1.0) * 4.0;
    for (i, (a, b)) in fast.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}[{i}]: fast {a} vs reference {b} (tolerance {tolerance})"
        );
    }
}

/// Runs every kernel on `geometry` and compares it with the reference.
fn check_all(geometry: &Conv2dGeometry, with_bias: bool, seed: u64) {
    let g = geometry;
    let input = values(g.batch * g.image_len(), seed);
    let weight = values(g.weight_len(), seed + 1);
    let bias = with_bias.then(|| values(g.out_channels, seed + 2));
    let out_grad = values(g.batch * g.out_image_len(), seed + 3);

    let fast = im2col_gemm::conv2d_forward(g, &input, &weight, bias.as_deref()).unwrap();
    let slow = reference::conv2d_forward(g, &input, &weight, bias.as_deref()).unwrap();
    assert_close("forward", &fast, &slow, g.patch_len());

    let wanted = WantedGrads {
        input: true,
        weight: true,
        bias: with_bias,
    };
    let grads = im2col_gemm::conv2d_backward(g, &input, &weight, &out_grad, wanted).unwrap();
    let input_grad = reference::conv2d_input_grad(g, &weight, &out_grad).unwrap();
    assert_close(
        "input grad",
        grads.input.as_deref().unwrap(),
        &input_grad,
        g.out_channels * g.kernel[0] * g.kernel[1],
    );
    let weight_grad = reference::conv2d_weight_grad(g, &input, &out_grad).unwrap();
    assert_close(
        "weight grad",
        grads.weight.as_deref().unwrap(),
        &weight_grad,
        g.batch * g.out_pixels(),
    );
    match (with_bias, grads.bias) {
        (true, Some(bias_grad)) => {
            let expected = reference::conv2d_bias_grad(g, &out_grad).unwrap();
            assert_close("bias grad", &bias_grad, &expected, g.batch * g.out_pixels());
        }
        (false, None) => {}
        (wanted, got) => panic!("bias grad wanted {wanted}, got {got:?}"),
    }
}

fn geometry(
    input: [usize; 4],
    weight: [usize; 4],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
) -> Conv2dGeometry {
    Conv2dGeometry::new(input, weight, stride, padding, dilation).unwrap()
}

#[test]
fn resnet20_layer_shapes_match_reference() {
    // The three kinds of convolution in resnet20 at Fashion-MNIST size, batch 2.
    let same_3x3 = geometry(
        [2, 16, 28, 28],
        [16, 16, 3, 3],
        [1, 1],
        [(1, 1), (1, 1)],
        [1, 1],
    );
    check_all(&same_3x3, false, 1);
    let down_3x3 = geometry(
        [2, 16, 28, 28],
        [32, 16, 3, 3],
        [2, 2],
        [(1, 1), (1, 1)],
        [1, 1],
    );
    check_all(&down_3x3, false, 2);
    let shortcut_1x1 = geometry(
        [2, 32, 14, 14],
        [64, 32, 1, 1],
        [2, 2],
        [(0, 0), (0, 0)],
        [1, 1],
    );
    check_all(&shortcut_1x1, false, 3);
}

#[test]
fn cnn_small_first_layer_with_bias_matches_reference() {
    let g = geometry(
        [3, 1, 28, 28],
        [32, 1, 3, 3],
        [1, 1],
        [(1, 1), (1, 1)],
        [1, 1],
    );
    check_all(&g, true, 4);
}

#[test]
fn pointwise_stride_one_skips_im2col_and_matches_reference() {
    let g = geometry([2, 5, 7, 9], [3, 5, 1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]);
    check_all(&g, true, 5);
}

#[test]
fn kernel_reaching_only_padding_gives_bias_alone() {
    // Output pixels whose whole 3×3 window is padding must be exactly the bias, with no
    // gradient reaching the input from them.
    let g = geometry([1, 2, 2, 2], [3, 2, 3, 3], [1, 1], [(3, 3), (3, 3)], [1, 1]);
    check_all(&g, true, 6);
    let input = values(g.batch * g.image_len(), 7);
    let weight = values(g.weight_len(), 8);
    let bias = [0.5f32, -1.0, 2.0];
    let out = im2col_gemm::conv2d_forward(&g, &input, &weight, Some(&bias)).unwrap();
    // Output (0, 0) reads input rows/cols −3..−1: all padding.
    for (channel, b) in bias.iter().enumerate() {
        assert_eq!(out[channel * g.out_pixels()], *b);
    }
}

#[test]
fn mismatched_buffers_are_errors_not_panics() {
    let g = geometry([1, 2, 4, 4], [3, 2, 3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
    let input = values(g.image_len(), 1);
    let short_weight = values(g.weight_len() - 1, 2);
    assert_eq!(
        im2col_gemm::conv2d_forward(&g, &input, &short_weight, None).unwrap_err(),
        KernelError::BufferLength {
            what: "weight",
            len: g.weight_len() - 1,
            expected: g.weight_len()
        }
    );
    let weight = values(g.weight_len(), 2);
    let wanted = WantedGrads {
        input: true,
        weight: true,
        bias: false,
    };
    assert!(matches!(
        im2col_gemm::conv2d_backward(&g, &input, &weight, &input[..3], wanted),
        Err(KernelError::BufferLength {
            what: "output gradient",
            ..
        })
    ));
    assert!(matches!(
        Conv2dGeometry::new([1, 2, 4, 4], [3, 5, 3, 3], [1, 1], [(0, 0), (0, 0)], [1, 1]),
        Err(KernelError::ChannelMismatch { .. })
    ));
    assert!(matches!(
        Conv2dGeometry::new([1, 2, 2, 2], [3, 2, 5, 5], [1, 1], [(0, 0), (0, 0)], [1, 1]),
        Err(KernelError::KernelLargerThanInput { .. })
    ));
    assert!(matches!(
        Conv2dGeometry::new([1, 2, 4, 4], [3, 2, 3, 3], [0, 1], [(0, 0), (0, 0)], [1, 1]),
        Err(KernelError::ZeroSize { .. })
    ));
}

/// Every combination of small sizes, strides, paddings and dilations that makes a valid
/// convolution, visited in a fixed pseudo-random order so that each run checks the same
/// 400 cases (a sweep rather than proptest: it needs no extra dependency, which would change
/// burn's feature set and cost a rebuild of burn for this crate's tests alone).
fn sweep_geometries(cases: usize) -> Vec<(Conv2dGeometry, bool, u64)> {
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % bound
    };
    let mut found = Vec::new();
    while found.len() < cases {
        let input = [1 + next(3), 1 + next(5), 1 + next(9), 1 + next(9)];
        let weight = [1 + next(6), input[1], 1 + next(4), 1 + next(4)];
        let stride = [1 + next(3), 1 + next(3)];
        let padding = [(next(3), next(3)), (next(3), next(3))];
        let dilation = [1 + next(2), 1 + next(2)];
        let with_bias = next(2) == 1;
        if let Ok(g) = Conv2dGeometry::new(input, weight, stride, padding, dilation) {
            found.push((g, with_bias, found.len() as u64));
        }
    }
    found
}

#[test]
fn swept_convolutions_match_reference() {
    let cases = sweep_geometries(400);
    // The sweep must reach the interesting corners, or it proves less than it claims.
    assert!(cases.iter().any(|(g, _, _)| g.stride == [2, 3]));
    assert!(cases.iter().any(|(g, _, _)| g.dilation == [2, 2]));
    assert!(cases
        .iter()
        .any(|(g, _, _)| g.padding[0].0 != g.padding[0].1));
    assert!(cases
        .iter()
        .any(|(g, _, _)| g.kernel == [1, 1] && g.stride == [1, 1]));
    for (geometry, with_bias, seed) in &cases {
        check_all(geometry, *with_bias, *seed);
    }
}
