//! Plain convolution loops: the definition the fast kernels are tested against.
//!
//! One multiply-add per loop iteration, sums in f64, no blocking and no threads. Slow on
//! purpose: nothing here should be clever enough to share a bug with [`super::im2col_gemm`].

use super::Conv2dGeometry;
use crate::error::check_len;
use crate::KernelError;

/// The input coordinate that output coordinate `out` reads at kernel tap `tap` along one axis,
/// or `None` where it falls in the zero padding.
fn input_index(
    out: usize,
    tap: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    size: usize,
) -> Option<usize> {
    (out * stride + tap * dilation)
        .checked_sub(pad_begin)
        .filter(|&i| i < size)
}

/// Calls `visit(input_index, weight_index, output_index)` for every multiply-add of the
/// convolution (flat indices into the NCHW input, the weight and the NCHW output).
fn for_each_tap(geometry: &Conv2dGeometry, mut visit: impl FnMut(usize, usize, usize)) {
    let g = geometry;
    let [kh, kw] = g.kernel;
    for n in 0..g.batch {
        for co in 0..g.out_channels {
            for oy in 0..g.out_height {
                for ox in 0..g.out_width {
                    let out_index =
                        ((n * g.out_channels + co) * g.out_height + oy) * g.out_width + ox;
                    for ci in 0..g.in_channels {
                        for ky in 0..kh {
                            let Some(iy) = input_index(
                                oy,
                                ky,
                                g.stride[0],
                                g.dilation[0],
                                g.padding[0].0,
                                g.in_height,
                            ) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = input_index(
                                    ox,
                                    kx,
                                    g.stride[1],
                                    g.dilation[1],
                                    g.padding[1].0,
                                    g.in_width,
                                ) else {
                                    continue;
                                };
                                let in_index =
                                    ((n * g.in_channels + ci) * g.in_height + iy) * g.in_width + ix;
                                let weight_index = ((co * g.in_channels + ci) * kh + ky) * kw + kx;
                                visit(in_index, weight_index, out_index);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_input_weight(
    geometry: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
) -> Result<(), KernelError> {
    check_len("input", input.len(), geometry.batch * geometry.image_len())?;
    check_len("weight", weight.len(), geometry.weight_len())
}

fn check_out_grad(geometry: &Conv2dGeometry, out_grad: &[f32]) -> Result<(), KernelError> {
    check_len(
        "output gradient",
        out_grad.len(),
        geometry.batch * geometry.out_image_len(),
    )
}

fn to_f32(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

/// `y[n, co, oy, ox] = b[co] + Σ w[co, ci, ky, kx] · x[n, ci, iy, ix]`.
pub fn conv2d_forward(
    geometry: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, KernelError> {
    check_input_weight(geometry, input, weight)?;
    let mut out = vec![0f64; geometry.batch * geometry.out_image_len()];
    if let Some(bias) = bias {
        check_len("bias", bias.len(), geometry.out_channels)?;
        for (i, value) in out.iter_mut().enumerate() {
            *value = f64::from(bias[(i / geometry.out_pixels()) % geometry.out_channels]);
        }
    }
    for_each_tap(geometry, |i, w, o| {
        out[o] += f64::from(weight[w]) * f64::from(input[i]);
    });
    Ok(to_f32(out))
}

/// `dx[n, ci, iy, ix] = Σ w[co, ci, ky, kx] · dy[n, co, oy, ox]` over the taps that read it.
pub fn conv2d_input_grad(
    geometry: &Conv2dGeometry,
    weight: &[f32],
    out_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    check_len("weight", weight.len(), geometry.weight_len())?;
    check_out_grad(geometry, out_grad)?;
    let mut grad = vec![0f64; geometry.batch * geometry.image_len()];
    for_each_tap(geometry, |i, w, o| {
        grad[i] += f64::from(weight[w]) * f64::from(out_grad[o]);
    });
    Ok(to_f32(grad))
}

/// `dw[co, ci, ky, kx] = Σ x[n, ci, iy, ix] · dy[n, co, oy, ox]` over images and output pixels.
pub fn conv2d_weight_grad(
    geometry: &Conv2dGeometry,
    input: &[f32],
    out_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    check_len("input", input.len(), geometry.batch * geometry.image_len())?;
    check_out_grad(geometry, out_grad)?;
    let mut grad = vec![0f64; geometry.weight_len()];
    for_each_tap(geometry, |i, w, o| {
        grad[w] += f64::from(input[i]) * f64::from(out_grad[o]);
    });
    Ok(to_f32(grad))
}

/// `db[co] = Σ dy[n, co, oy, ox]`.
pub fn conv2d_bias_grad(
    geometry: &Conv2dGeometry,
    out_grad: &[f32],
) -> Result<Vec<f32>, KernelError> {
    check_out_grad(geometry, out_grad)?;
    let mut grad = vec![0f64; geometry.out_channels];
    for (i, value) in out_grad.iter().enumerate() {
        grad[(i / geometry.out_pixels()) % geometry.out_channels] += f64::from(*value);
    }
    Ok(to_f32(grad))
}
