//! The plane-parallel max-pool kernels against the plain reference loops: the same values, the
//! same winning inputs (ties and NaN included) and the same input gradients, over the 2×2
//! window keen's models use, odd sizes, overlapping and non-square windows, and batches large
//! enough to be split over several rayon tasks.

use keen_kernels::pool::{parallel, reference, MaxPool2dGeometry};
use keen_kernels::KernelError;

mod common;
use common::values;

/// Compares every kernel on `geometry` with the reference, exactly.
fn check_all(g: &MaxPool2dGeometry, input: &[f32], seed: u64) {
    let fast = parallel::max_pool2d_forward(g, input).unwrap();
    let slow = reference::max_pool2d_forward(g, input).unwrap();
    assert_eq!(fast.argmax, slow.argmax, "{g:?}: winning inputs");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&fast.values), bits(&slow.values), "{g:?}: values");
    // Each value is the input its index names.
    for (plane, chunk) in slow.values.chunks(g.out_plane()).enumerate() {
        for (i, value) in chunk.iter().enumerate() {
            let index = slow.argmax[plane * g.out_plane() + i] as usize;
            assert_eq!(
                value.to_bits(),
                input[plane * g.in_plane() + index].to_bits(),
                "{g:?}"
            );
        }
    }
    let out_grad = values(g.planes() * g.out_plane(), seed + 1);
    let fast_grad = parallel::max_pool2d_backward(g, &slow.argmax, &out_grad).unwrap();
    let slow_grad = reference::max_pool2d_backward(g, &slow.argmax, &out_grad).unwrap();
    assert_eq!(bits(&fast_grad), bits(&slow_grad), "{g:?}: input gradient");
    // Nothing of the output gradient is lost or invented.
    let (sum_in, sum_out) = (
        fast_grad.iter().map(|&v| v as f64).sum::<f64>(),
        out_grad.iter().map(|&v| v as f64).sum::<f64>(),
    );
    assert!(
        (sum_in - sum_out).abs() < 1e-3,
        "{g:?}: {sum_in} vs {sum_out}"
    );
}

fn geometries() -> Vec<MaxPool2dGeometry> {
    [
        // cnn-small's two pools, a batch large enough for several tasks.
        ([64, 32, 28, 28], [2, 2], [2, 2]),
        ([64, 64, 14, 14], [2, 2], [2, 2]),
        // Odd sizes: the last row and column are dropped (floor mode).
        ([3, 5, 7, 9], [2, 2], [2, 2]),
        // Overlapping windows: one input can win several outputs.
        ([2, 3, 9, 8], [3, 3], [2, 2]),
        ([2, 2, 6, 7], [3, 2], [1, 1]),
        // Non-square stride, a window as large as the input, a 1×1 window.
        ([2, 3, 8, 10], [2, 3], [2, 3]),
        ([1, 4, 5, 6], [5, 6], [1, 1]),
        ([2, 2, 4, 4], [1, 1], [1, 1]),
    ]
    .into_iter()
    .map(|(shape, kernel, stride)| MaxPool2dGeometry::new(shape, kernel, stride).unwrap())
    .collect()
}

#[test]
fn parallel_kernels_match_the_reference_on_distinct_values() {
    for (seed, g) in geometries().iter().enumerate() {
        let input = values(g.planes() * g.in_plane(), seed as u64);
        check_all(g, &input, seed as u64);
    }
}

#[test]
fn ties_go_to_the_first_input_in_window_order_in_both_kernels() {
    for (seed, g) in geometries().iter().enumerate() {
        // Three levels only: most windows hold a tie for their maximum.
        let input: Vec<f32> = values(g.planes() * g.in_plane(), seed as u64 + 100)
            .iter()
            .map(|v| (v * 1.5).round())
            .collect();
        check_all(g, &input, seed as u64);
    }
    // A constant plane: every output takes its window's top-left input.
    let g = MaxPool2dGeometry::new([1, 1, 4, 4], [2, 2], [2, 2]).unwrap();
    let out = parallel::max_pool2d_forward(&g, &[1.0; 16]).unwrap();
    assert_eq!(out.argmax, vec![0, 2, 8, 10]);
}

#[test]
fn nan_wins_its_window_in_both_kernels() {
    for (seed, g) in geometries().iter().enumerate() {
        let mut input = values(g.planes() * g.in_plane(), seed as u64 + 200);
        for v in input.iter_mut().step_by(7) {
            *v = f32::NAN;
        }
        check_all(g, &input, seed as u64);
    }
    let g = MaxPool2dGeometry::new([1, 1, 2, 2], [2, 2], [2, 2]).unwrap();
    let out = reference::max_pool2d_forward(&g, &[5.0, f32::NAN, 7.0, 1.0]).unwrap();
    assert!(out.values[0].is_nan());
    assert_eq!(out.argmax, vec![1]);
}

#[test]
fn output_size_is_floor_mode() {
    let g = MaxPool2dGeometry::new([2, 3, 7, 9], [2, 2], [2, 2]).unwrap();
    assert_eq!(g.output_shape(), [2, 3, 3, 4]);
    let g = MaxPool2dGeometry::new([1, 1, 9, 8], [3, 3], [2, 2]).unwrap();
    assert_eq!(g.output_shape(), [1, 1, 4, 3]);
}

#[test]
fn bad_shapes_and_buffers_are_errors() {
    for (shape, kernel, stride) in [
        ([1, 1, 4, 4], [2, 2], [0, 2]),
        ([1, 1, 4, 4], [0, 2], [2, 2]),
        ([0, 1, 4, 4], [2, 2], [2, 2]),
        ([1, 1, 4, 4], [5, 2], [1, 1]),
    ] {
        assert_eq!(
            MaxPool2dGeometry::new(shape, kernel, stride),
            Err(KernelError::PoolShape {
                input_shape: shape,
                kernel,
                stride
            })
        );
    }
    let g = MaxPool2dGeometry::new([1, 2, 4, 4], [2, 2], [2, 2]).unwrap();
    let err = parallel::max_pool2d_forward(&g, &[0.0; 31]).unwrap_err();
    assert!(err.to_string().contains("expected 32"), "{err}");
    assert!(reference::max_pool2d_forward(&g, &[0.0; 33]).is_err());
    assert!(parallel::max_pool2d_backward(&g, &[0; 8], &[0.0; 7]).is_err());
    assert!(reference::max_pool2d_backward(&g, &[0; 7], &[0.0; 8]).is_err());
}
