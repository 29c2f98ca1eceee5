//! im2col: unfolds the patches of one image (one channel group) into a `[C·kh·kw, oh·ow]`
//! matrix, so a convolution becomes one GEMM with the `[out, C·kh·kw]` weight matrix.

use super::reference::ConvGeometry;

/// Unfolds `input` (`channels × h × w`, one image's channels of one group) into `out`
/// (`channels·kh·kw × oh·ow`, row-major), writing `pad` where the patch leaves the image.
/// Returns `false` if a slice is too short for the geometry.
pub fn im2col<T: Copy>(
    g: &ConvGeometry,
    channels: usize,
    input: &[T],
    pad: T,
    out: &mut [T],
) -> bool {
    let Some([oh, ow]) = g.out_hw() else {
        return false;
    };
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let (pt, pl) = (g.padding[0] as isize, g.padding[1] as isize);
    if input.len() < channels * h * w || out.len() < channels * kh * kw * oh * ow {
        return false;
    }
    let mut rows = out.chunks_exact_mut((oh * ow).max(1));
    for c in 0..channels {
        let plane = &input[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let Some(row) = rows.next() else {
                    return false;
                };
                for oy in 0..oh {
                    let iy = (oy * sh + ky) as isize - pt;
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(pad);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    if sw == 1 {
                        // Stride 1: the in-image part of the row is one contiguous copy.
                        let lo = ((pl - kx as isize).max(0) as usize).min(ow);
                        let hi = ((w as isize + pl - kx as isize).max(0) as usize).clamp(lo, ow);
                        dst[..lo].fill(pad);
                        let ix0 = (lo + kx) as isize - pl;
                        dst[lo..hi].copy_from_slice(&src[ix0 as usize..ix0 as usize + hi - lo]);
                        dst[hi..].fill(pad);
                        continue;
                    }
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * sw + kx) as isize - pl;
                        *d = if ix < 0 || ix >= w as isize {
                            pad
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
    true
}
