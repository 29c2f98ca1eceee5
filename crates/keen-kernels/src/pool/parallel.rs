//! Max pooling for training: channel planes in parallel, the common 2×2 stride-2 window read two
//! input rows at a time, and no index arithmetic beyond a running offset. burn-flex 0.22 pools
//! 2-D inputs through its 3-D kernel with per-window range checks and i64 indices, which made
//! pooling (forward and backward) about as costly as the convolutions of `cnn-small`.

use rayon::prelude::*;

use super::{replaces, MaxPool2dGeometry, MaxPoolOutput};
use crate::KernelError;

/// Values per rayon task at least: a plane of a small feature map is a few hundred values, too
/// little work to be worth a task of its own.
const MIN_VALUES_PER_TASK: usize = 1 << 14;

/// Planes per task so that each task has at least [`MIN_VALUES_PER_TASK`] input values.
fn planes_per_task(g: &MaxPool2dGeometry) -> usize {
    MIN_VALUES_PER_TASK.div_ceil(g.in_plane().max(1)).max(1)
}

/// Pools `x` (`[N, C, H, W]`); the same result as [`super::reference::max_pool2d_forward`].
pub fn max_pool2d_forward(g: &MaxPool2dGeometry, x: &[f32]) -> Result<MaxPoolOutput, KernelError> {
    g.check_input("max pool input", x.len())?;
    let out_len = g.planes() * g.out_plane();
    let mut values = vec![0.0; out_len];
    let mut argmax = vec![0; out_len];
    let per_task = planes_per_task(g);
    let pool_one_plane = if g.kernel == [2, 2] && g.stride == [2, 2] {
        pool_plane_2x2
    } else {
        pool_plane
    };
    values
        .par_chunks_mut(g.out_plane() * per_task)
        .zip(argmax.par_chunks_mut(g.out_plane() * per_task))
        .zip(x.par_chunks(g.in_plane() * per_task))
        .for_each(|((values, argmax), x)| {
            let planes = values
                .chunks_mut(g.out_plane())
                .zip(argmax.chunks_mut(g.out_plane()))
                .zip(x.chunks(g.in_plane()));
            for ((values, argmax), plane) in planes {
                pool_one_plane(g, plane, values, argmax);
            }
        });
    Ok(MaxPoolOutput { values, argmax })
}

/// Any window: the window's rows are contiguous runs of the plane.
fn pool_plane(g: &MaxPool2dGeometry, plane: &[f32], values: &mut [f32], argmax: &mut [u32]) {
    let w = g.in_width;
    let mut out = 0;
    for oy in 0..g.out_height {
        let top = oy * g.stride[0] * w;
        for ox in 0..g.out_width {
            let corner = top + ox * g.stride[1];
            let (mut best, mut best_index) = (plane[corner], corner);
            for ky in 0..g.kernel[0] {
                let row = corner + ky * w;
                for (kx, &value) in plane[row..row + g.kernel[1]].iter().enumerate() {
                    if replaces(value, best) {
                        best = value;
                        best_index = row + kx;
                    }
                }
            }
            values[out] = best;
            argmax[out] = best_index as u32;
            out += 1;
        }
    }
}

/// The 2×2 stride-2 window: two input rows give one output row, four candidates per output in
/// row-major order.
fn pool_plane_2x2(g: &MaxPool2dGeometry, plane: &[f32], values: &mut [f32], argmax: &mut [u32]) {
    let w = g.in_width;
    let ow = g.out_width;
    for oy in 0..g.out_height {
        let top = 2 * oy * w;
        let (upper, lower) = (&plane[top..top + w], &plane[top + w..top + 2 * w]);
        let values = &mut values[oy * ow..(oy + 1) * ow];
        let argmax = &mut argmax[oy * ow..(oy + 1) * ow];
        for ox in 0..ow {
            let x = 2 * ox;
            let (mut best, mut best_index) = (upper[x], top + x);
            if replaces(upper[x + 1], best) {
                (best, best_index) = (upper[x + 1], top + x + 1);
            }
            if replaces(lower[x], best) {
                (best, best_index) = (lower[x], top + w + x);
            }
            if replaces(lower[x + 1], best) {
                (best, best_index) = (lower[x + 1], top + w + x + 1);
            }
            values[ox] = best;
            argmax[ox] = best_index as u32;
        }
    }
}

/// The gradient of the input; the same result as [`super::reference::max_pool2d_backward`]
/// (each plane's gradients are added in the same order, so even overlapping windows agree
/// exactly).
pub fn max_pool2d_backward(
    g: &MaxPool2dGeometry,
    argmax: &[u32],
    out_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    let mut grad = g.zeroed_input_grad(argmax, out_grad)?;
    let per_task = planes_per_task(g);
    grad.par_chunks_mut(g.in_plane() * per_task)
        .zip(argmax.par_chunks(g.out_plane() * per_task))
        .zip(out_grad.par_chunks(g.out_plane() * per_task))
        .for_each(|((grad, argmax), out_grad)| {
            let planes = grad
                .chunks_mut(g.in_plane())
                .zip(argmax.chunks(g.out_plane()))
                .zip(out_grad.chunks(g.out_plane()));
            for ((grad, argmax), out_grad) in planes {
                for (&index, &value) in argmax.iter().zip(out_grad) {
                    grad[index as usize] += value;
                }
            }
        });
    Ok(grad)
}
