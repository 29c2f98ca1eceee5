//! The layout behind implicit-GEMM convolutions ([`super::qconv`] for INT8, [`super::sconv`]
//! for fp32): where every GEMM depth index reads in a padded, stride-phase-split copy of the image,
//! so that the `[C·kh·kw, oh·ow]` im2col matrix never has to be materialised.
//!
//! The image (one channel group) is copied once into a buffer where every channel becomes
//! `sh·sw` planes of `hq × wq` pixels, plane `(py, px)` holding the padded pixels
//! `(y·sh + py, x·sw + px)`. In it, the input that output `(oy, ox)` reads for kernel offset
//! `(ky, kx)` sits at `offset(c, ky, kx) + oy·wq + ox`: one constant offset per GEMM depth
//! index, whatever the stride and padding. So if the output is computed on a *wide* grid of
//! `oh × wq` columns (the `wq - ow` extra columns per row are computed and dropped), every row of
//! the virtual im2col matrix is a contiguous run of that buffer.

use super::reference::ConvGeometry;

/// Columns of one tile of an implicit-GEMM convolution (both element types).
pub(crate) const TILE_N: usize = 32;

/// Where every GEMM depth index reads in the padded, phase-split image of one channel group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplicitIm2col {
    pub(super) channels: usize,
    pub(super) in_hw: [usize; 2],
    pub(super) out_hw: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) kernel: [usize; 2],
    /// Top and left padding.
    pub(super) pad_tl: [usize; 2],
    /// Rows and columns of one phase plane.
    pub(super) hq: usize,
    pub(super) wq: usize,
    /// GEMM depth, `channels · kh · kw`.
    pub(super) depth: usize,
    /// Offset of each depth index's run, the depth rounded up to 4 (padding entries read 0).
    pub(super) offsets: Vec<usize>,
    /// Buffer length: every tile's reads stay inside.
    pub(super) len: usize,
}

impl ImplicitIm2col {
    /// The layout for `channels` input channels of geometry `g` (one group of it); `None` when
    /// the kernel does not fit the padded input or a stride is zero.
    pub fn new(g: &ConvGeometry, channels: usize) -> Option<Self> {
        let [oh, ow] = g.out_hw()?;
        let [h, w] = g.in_hw;
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.stride;
        let hp = h + g.padding[0] + g.padding[2];
        let wp = w + g.padding[1] + g.padding[3];
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let plane = hq * wq;
        let depth = channels * kh * kw;
        let mut offsets = Vec::with_capacity(depth.div_ceil(4) * 4);
        for c in 0..channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let phase = (c * sh + ky % sh) * sw + kx % sw;
                    offsets.push(phase * plane + (ky / sh) * wq + kx / sw);
                }
            }
        }
        offsets.resize(depth.div_ceil(4) * 4, 0);
        let data = channels * sh * sw * plane;
        let wide = oh * wq;
        let reach = offsets.iter().max().copied().unwrap_or(0) + wide.div_ceil(TILE_N) * TILE_N;
        Some(Self {
            channels,
            in_hw: [h, w],
            out_hw: [oh, ow],
            stride: [sh, sw],
            kernel: [kh, kw],
            pad_tl: [g.padding[0], g.padding[1]],
            hq,
            wq,
            depth,
            offsets,
            len: data.max(reach),
        })
    }

    /// Input height and width the layout was built for.
    pub fn in_hw(&self) -> [usize; 2] {
        self.in_hw
    }

    /// GEMM depth (`channels · kh · kw`).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Input channels (of one group).
    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Output height and width.
    pub(crate) fn out_hw(&self) -> [usize; 2] {
        self.out_hw
    }

    /// Elements the phase buffer needs: every tile's reads stay inside.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first `depth` run offsets (without the rounding up to 4).
    pub(crate) fn offsets(&self, depth: usize) -> &[usize] {
        &self.offsets[..depth.min(self.offsets.len())]
    }

    /// [`Self::fill`] for any element type, without SIMD: the padded, phase-split image of
    /// `input` (`channels × h × w`) into `buf` (at least [`Self::len`] elements).
    pub(crate) fn fill_plain<T: Copy>(&self, input: &[T], pad: T, buf: &mut [T]) {
        let [h, w] = self.in_hw;
        let [sh, sw] = self.stride;
        let [pt, pl] = self.pad_tl;
        let (wq, plane) = (self.wq, self.hq * self.wq);
        let [kh, kw] = self.kernel;
        for c in 0..self.channels {
            let image = &input[c * h * w..(c + 1) * h * w];
            for py in 0..sh.min(kh) {
                for px in 0..sw.min(kw) {
                    let dst = &mut buf[((c * sh + py) * sw + px) * plane..][..plane];
                    // Phase columns x whose input column x·sw + px - pl lies inside the image.
                    let lo = pl.saturating_sub(px).div_ceil(sw).min(wq);
                    let hi = (pl + w).saturating_sub(px).div_ceil(sw).clamp(lo, wq);
                    for (y, row) in dst.chunks_exact_mut(wq).enumerate() {
                        let iy = (y * sh + py).wrapping_sub(pt);
                        if iy >= h || lo == hi {
                            row.fill(pad);
                            continue;
                        }
                        let src = &image[iy * w + lo * sw + px - pl..(iy + 1) * w];
                        row[..lo].fill(pad);
                        if sw == 1 {
                            row[lo..hi].copy_from_slice(&src[..hi - lo]);
                        } else {
                            for (d, &v) in row[lo..hi].iter_mut().zip(src.iter().step_by(sw)) {
                                *d = v;
                            }
                        }
                        row[hi..].fill(pad);
                    }
                }
            }
        }
    }

    /// Columns of the wide output grid (`oh · wq`).
    pub(crate) fn wide(&self) -> usize {
        self.out_hw[0] * self.wq
    }

    /// The runs of valid outputs among tile `t`'s columns: `(tile column, output index, len)`.
    #[inline(always)]
    pub(crate) fn runs(&self, t: usize, out: &mut [(usize, usize, usize); TILE_N]) -> usize {
        let [_, ow] = self.out_hw;
        let (wq, end) = (self.wq, self.wide().min((t + 1) * TILE_N));
        let (mut j, mut count) = (t * TILE_N, 0);
        while j < end {
            let (oy, ox) = (j / wq, j % wq);
            if ox >= ow {
                j = (oy + 1) * wq;
                continue;
            }
            let stop = end.min(oy * wq + ow);
            out[count] = (j - t * TILE_N, oy * ow + ox, stop - j);
            count += 1;
            j = stop;
        }
        count
    }
}
