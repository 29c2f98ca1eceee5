//! Max pooling as plain loops: one window at a time, every index spelled out. The tests hold the
//! plane-parallel kernels to these.

use super::{replaces, MaxPool2dGeometry, MaxPoolOutput};
use crate::KernelError;

/// Pools `x` (`[N, C, H, W]`): each output is its window's maximum, with the index of that input
/// inside its plane.
pub fn max_pool2d_forward(g: &MaxPool2dGeometry, x: &[f32]) -> Result<MaxPoolOutput, KernelError> {
    g.check_input("max pool input", x.len())?;
    let mut values = Vec::with_capacity(g.planes() * g.out_plane());
    let mut argmax = Vec::with_capacity(values.capacity());
    for plane in 0..g.planes() {
        let base = plane * g.in_plane();
        for oy in 0..g.out_height {
            for ox in 0..g.out_width {
                let mut best_index = None;
                let mut best = f32::NEG_INFINITY;
                for ky in 0..g.kernel[0] {
                    for kx in 0..g.kernel[1] {
                        let index = (oy * g.stride[0] + ky) * g.in_width + ox * g.stride[1] + kx;
                        let value = x[base + index];
                        if best_index.is_none() || replaces(value, best) {
                            best = value;
                            best_index = Some(index);
                        }
                    }
                }
                values.push(best);
                argmax.push(best_index.expect("a window holds at least one input") as u32);
            }
        }
    }
    Ok(MaxPoolOutput { values, argmax })
}

/// The gradient of the input: each output's gradient added to the input its maximum came from.
pub fn max_pool2d_backward(
    g: &MaxPool2dGeometry,
    argmax: &[u32],
    out_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    let mut grad = g.zeroed_input_grad(argmax, out_grad)?;
    for plane in 0..g.planes() {
        for i in 0..g.out_plane() {
            let out = plane * g.out_plane() + i;
            grad[plane * g.in_plane() + argmax[out] as usize] += out_grad[out];
        }
    }
    Ok(grad)
}
