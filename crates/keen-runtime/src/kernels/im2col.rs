//! im2col: unfolds the patches of one image (one channel group) into a `[C·kh·kw, oh·ow]`
//! matrix, so a convolution becomes one GEMM with the `[out, C·kh·kw]` weight matrix.

use super::reference::ConvGeometry;

/// Unfolds `input` (`channels × h × w`, one image's channels of one group) into `out`
/// (`channels·kh·kw × oh·ow`, row-major), writing `pad` where the patch leaves the image.
/// Returns `false` if a slice is too short for the geometry.
///
/// Stride-1 "same" convolutions (`ow == w`, the common 3×3 padding-1 case) take a fast path:
/// for a kernel offset `(ky, kx)`, the unfolded row is the input plane shifted by one constant
/// offset, so it is one contiguous copy followed by writing `pad` into the one or two border
/// columns the shift wrapped around; the general path copies each output row separately, and
/// on small images (28×28: 28-byte rows) the per-copy overhead dominated the INT8 convolutions.
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
    if g.stride != [1, 1] || ow != w || oh == 0 || ow == 0 {
        return im2col_rows(g, channels, input, pad, out);
    }
    let [kh, kw] = g.kernel;
    let (pt, pl) = (g.padding[0] as isize, g.padding[1] as isize);
    let n = oh * ow;
    if input.len() < channels * h * w || out.len() < channels * kh * kw * n {
        return false;
    }
    let mut rows = out.chunks_exact_mut(n);
    for c in 0..channels {
        let plane = &input[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let Some(row) = rows.next() else {
                    return false;
                };
                let dy = ky as isize - pt;
                let dx = kx as isize - pl;
                // Output rows whose input row lies inside the image.
                let oy_lo = (-dy).clamp(0, oh as isize) as usize;
                let oy_hi = (h as isize - dy).clamp(oy_lo as isize, oh as isize) as usize;
                row[..oy_lo * ow].fill(pad);
                row[oy_hi * ow..].fill(pad);
                if oy_lo == oy_hi {
                    continue;
                }
                // row[i] = plane[i + shift] for the flat range of those rows, where in range.
                let shift = dy * w as isize + dx;
                let (start, end) = ((oy_lo * ow) as isize, (oy_hi * ow) as isize);
                let lo = start.max(-shift).min(end);
                let hi = end.min(plane.len() as isize - shift).max(lo);
                fill_small(&mut row[start as usize..lo as usize], pad);
                if hi > lo {
                    row[lo as usize..hi as usize]
                        .copy_from_slice(&plane[(lo + shift) as usize..(hi + shift) as usize]);
                }
                fill_small(&mut row[hi as usize..end as usize], pad);
                // Columns whose input column lies outside the image wrapped to a neighbour row.
                let left = (-dx).clamp(0, ow as isize) as usize;
                let right = (w as isize - dx).clamp(left as isize, ow as isize) as usize;
                // One strided pass per border column (usually one, at most kw - 1).
                let block = &mut row[start as usize..end as usize];
                for col in (0..left).chain(right..ow) {
                    for v in block[col..].iter_mut().step_by(ow) {
                        *v = pad;
                    }
                }
            }
        }
    }
    true
}

/// The general path of [`im2col`]: output row by output row, one copy per row at stride 1 and
/// a bounds-free strided gather otherwise.
fn im2col_rows<T: Copy>(
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
    // With a horizontal stride, each channel's columns are first split into `sw` phases
    // (`phase p, column j` = input column `j·sw + p`), so that every kernel offset reads
    // contiguous runs instead of gathering with a stride: one pass over the input replaces
    // `kh·kw` strided gathers.
    let wp = w.div_ceil(sw);
    let mut phases: Vec<T> = Vec::new();
    let mut rows = out.chunks_exact_mut((oh * ow).max(1));
    for c in 0..channels {
        let plane = &input[c * h * w..(c + 1) * h * w];
        if sw > 1 {
            phases.clear();
            phases.resize(sw * h * wp, pad);
            for (i, dst) in phases.chunks_exact_mut(wp).enumerate() {
                let (p, y) = (i / h, i % h);
                let line = plane[y * w..(y + 1) * w].get(p..).unwrap_or(&[]);
                for (d, s) in dst.iter_mut().zip(line.iter().step_by(sw)) {
                    *d = *s;
                }
            }
        }
        for ky in 0..kh {
            for kx in 0..kw {
                let Some(row) = rows.next() else {
                    return false;
                };
                // The in-image outputs of every row are `lo..hi`, computed once per kernel
                // offset, so the copies need no per-element bounds test.
                let first = pl - kx as isize; // ix = ox·sw - first
                let lo = (first.max(0) as usize).div_ceil(sw).min(ow);
                let last = w as isize + first; // ix < w  <=>  ox·sw < last
                let hi = ((last.max(0) as usize).div_ceil(sw).min(ow)).max(lo);
                // Input column of output `lo`, as (phase, column within the phase).
                let ix_lo = ((lo * sw) as isize - first).max(0) as usize;
                let (phase, j_lo) = (ix_lo % sw, ix_lo / sw);
                for oy in 0..oh {
                    let iy = (oy * sh + ky) as isize - pt;
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h as isize || hi == lo {
                        dst.fill(pad);
                        continue;
                    }
                    let iy = iy as usize;
                    let src = match sw {
                        1 => &plane[iy * w + ix_lo..(iy + 1) * w],
                        _ => &phases[(phase * h + iy) * wp + j_lo..(phase * h + iy + 1) * wp],
                    };
                    fill_small(&mut dst[..lo], pad);
                    dst[lo..hi].copy_from_slice(&src[..hi - lo]);
                    fill_small(&mut dst[hi..], pad);
                }
            }
        }
    }
    true
}

/// `dst.fill(pad)` for the one- or two-element borders of a padded row without a `memset`
/// call each (thousands of them per image cost more than the copies they surround).
#[inline(always)]
fn fill_small<T: Copy>(dst: &mut [T], pad: T) {
    match dst {
        [] => {}
        [a] => *a = pad,
        [a, b] => (*a, *b) = (pad, pad),
        _ => dst.fill(pad),
    }
}

/// The plain definition of [`im2col`], element by element, which the tests compare it with.
pub fn im2col_reference<T: Copy>(
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
    if input.len() < channels * h * w || out.len() < channels * kh * kw * oh * ow {
        return false;
    }
    let mut i = 0;
    for c in 0..channels {
        for ky in 0..kh {
            for kx in 0..kw {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                        let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                        let inside = iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                        out[i] = match inside {
                            true => input[c * h * w + iy as usize * w + ix as usize],
                            false => pad,
                        };
                        i += 1;
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path equals the reference on every stride-1 "same" geometry up to 5×5 kernels
    /// with any split of the padding, and on the strided shapes that take the general path.
    #[test]
    fn fast_path_equals_reference() {
        for (h, w) in [(1, 1), (3, 5), (7, 7), (28, 28)] {
            for (kh, kw) in [(1, 1), (1, 3), (3, 3), (5, 5), (3, 1)] {
                for pt in 0..kh {
                    for pl in 0..kw {
                        for stride in [1, 2, 3] {
                            let g = ConvGeometry {
                                batch: 1,
                                in_channels: 2,
                                in_hw: [h, w],
                                out_channels: 1,
                                kernel: [kh, kw],
                                stride: [stride, stride],
                                padding: [pt, pl, kh - 1 - pt, kw - 1 - pl],
                                groups: 1,
                            };
                            let Some([oh, ow]) = g.out_hw() else { continue };
                            let input: Vec<u16> = (0..2 * h * w).map(|i| i as u16 + 1).collect();
                            let len = 2 * kh * kw * oh * ow;
                            let (mut fast, mut reference) = (vec![7u16; len], vec![9u16; len]);
                            assert!(im2col(&g, 2, &input, 0, &mut fast));
                            assert!(im2col_reference(&g, 2, &input, 0, &mut reference));
                            assert_eq!(
                                fast, reference,
                                "{h}x{w} k{kh}x{kw} pad {pt},{pl} s{stride}"
                            );
                        }
                    }
                }
            }
        }
    }
}
