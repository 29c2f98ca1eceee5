//! Direct depthwise convolution (groups = channels, one filter per channel): too little work
//! per output for a GEMM to pay, so each output row is accumulated directly. Interior columns
//! skip the bounds checks that only border pixels need.

use super::reference::ConvGeometry;

/// Accumulates one channel plane: `out[oy][ox] = Σ x·w` over the kernel window, where `x`
/// outside the image contributes `pad` (0 for fp32, the zero point for u8 activations).
/// `T` is the activation type, `W` the weight type, `A` the accumulator.
#[allow(clippy::too_many_arguments)]
fn plane<T, W, A>(g: &ConvGeometry, input: &[T], weight: &[W], pad: T, out: &mut [A])
where
    T: Copy + Into<A>,
    W: Copy + Into<A>,
    A: Copy + Default + std::ops::Add<Output = A> + std::ops::Mul<Output = A>,
{
    let Some([oh, ow]) = g.out_hw() else { return };
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let (pt, pl) = (g.padding[0] as isize, g.padding[1] as isize);
    for oy in 0..oh {
        let row = &mut out[oy * ow..(oy + 1) * ow];
        row.fill(A::default());
        for ky in 0..kh {
            let iy = (oy * sh + ky) as isize - pt;
            let inside_y = iy >= 0 && iy < h as isize;
            for kx in 0..kw {
                let wv: A = weight[ky * kw + kx].into();
                if !inside_y {
                    let contribution = Into::<A>::into(pad) * wv;
                    row.iter_mut().for_each(|o| *o = *o + contribution);
                    continue;
                }
                let src = &input[iy as usize * w..(iy as usize + 1) * w];
                for (ox, o) in row.iter_mut().enumerate() {
                    let ix = (ox * sw + kx) as isize - pl;
                    let x = if ix < 0 || ix >= w as isize {
                        pad
                    } else {
                        src[ix as usize]
                    };
                    *o = *o + Into::<A>::into(x) * wv;
                }
            }
        }
    }
}

/// Depthwise fp32 convolution of one image: `input` `[C, h, w]`, `weight` `[C, 1, kh, kw]`,
/// `out` `[C, oh, ow]` (no bias).
pub fn depthwise_f32(g: &ConvGeometry, input: &[f32], weight: &[f32], out: &mut [f32]) {
    let Some([oh, ow]) = g.out_hw() else { return };
    let (plane_in, plane_out, taps) = (g.in_hw[0] * g.in_hw[1], oh * ow, g.kernel[0] * g.kernel[1]);
    for c in 0..g.in_channels {
        plane(
            g,
            &input[c * plane_in..(c + 1) * plane_in],
            &weight[c * taps..(c + 1) * taps],
            0.0f32,
            &mut out[c * plane_out..(c + 1) * plane_out],
        );
    }
}

/// Depthwise int8 convolution of one image: u8 activations (padding with `zero_point`), i8
/// weights, exact i32 sums in `out` `[C, oh, ow]`.
pub fn depthwise_u8(
    g: &ConvGeometry,
    input: &[u8],
    zero_point: u8,
    weight: &[i8],
    out: &mut [i32],
) {
    let Some([oh, ow]) = g.out_hw() else { return };
    let (plane_in, plane_out, taps) = (g.in_hw[0] * g.in_hw[1], oh * ow, g.kernel[0] * g.kernel[1]);
    for c in 0..g.in_channels {
        plane::<u8, i8, i32>(
            g,
            &input[c * plane_in..(c + 1) * plane_in],
            &weight[c * taps..(c + 1) * taps],
            zero_point,
            &mut out[c * plane_out..(c + 1) * plane_out],
        );
    }
}
