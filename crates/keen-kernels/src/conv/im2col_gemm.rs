//! Convolution forward and backward as one GEMM per image over its im2col matrix.
//!
//! For image `n`, `col(x_n)` is the `[C_in·kh·kw, OH·OW]` matrix whose column `p` holds the
//! input patch output pixel `p` reads. Then, with `W` the weight as a `[C_out, C_in·kh·kw]`
//! matrix and `dY_n` the output gradient as `[C_out, OH·OW]`:
//!
//! - forward: `Y_n = W · col(x_n)`;
//! - weight gradient: `dW = Σ_n dY_n · col(x_n)ᵀ` (burn computes it as a convolution of `x`
//!   with `dY` used as a kernel the size of the image, which its im2col handles badly);
//! - input gradient: `dx_n = col2im(Wᵀ · dY_n)` (burn uses a transposed convolution).
//!
//! Images run in parallel on rayon's pool; each GEMM is single-threaded (one image is
//! 0.1–2 M multiply-adds at keen's sizes, too small to split further on two cores). The im2col
//! buffer is per thread and reused across calls, so a training step allocates only its outputs.

use std::cell::RefCell;

use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::error::check_len;
use crate::simd::with_avx2;
use crate::KernelError;

thread_local! {
    /// One im2col matrix per thread, grown to the largest layer seen and kept.
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` with this thread's im2col scratch of at least `len` floats.
fn with_columns<R>(len: usize, work: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|cell| {
        let mut columns = cell.borrow_mut();
        if columns.len() < len {
            columns.resize(len, 0.0);
        }
        work(&mut columns[..len])
    })
}

impl Conv2dGeometry {
    /// True when the im2col matrix of an image is the image itself (1×1 kernel, stride 1, no
    /// padding), so the copy can be skipped.
    fn columns_are_image(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [(0, 0), (0, 0)]
    }

    /// The output positions `lo..hi` along one axis whose input coordinate
    /// `o·stride + tap·dilation − pad_begin` lies inside `0..size`.
    fn valid_outputs(&self, axis: usize, tap: usize) -> (usize, usize) {
        let geometry = self;
        let (stride, dilation, pad_begin, size, out_size) = if axis == 0 {
            (
                geometry.stride[0],
                geometry.dilation[0],
                geometry.padding[0].0,
                geometry.in_height,
                geometry.out_height,
            )
        } else {
            (
                geometry.stride[1],
                geometry.dilation[1],
                geometry.padding[1].0,
                geometry.in_width,
                geometry.out_width,
            )
        };
        let offset = tap * dilation;
        // First output whose coordinate is ≥ 0: o·stride ≥ pad_begin − offset.
        let lo = pad_begin.saturating_sub(offset).div_ceil(stride);
        // One past the last output whose coordinate is < size: o·stride < size + pad_begin − offset.
        let hi = (size + pad_begin)
            .saturating_sub(offset)
            .div_ceil(stride)
            .min(out_size);
        (lo.min(hi), hi)
    }
}

impl Conv2dGeometry {
    /// True when an im2col row is the input plane shifted by a constant offset (stride 1 and
    /// output rows as wide as input rows, as in a "same" convolution), so it can be filled with
    /// one contiguous copy instead of one short copy per output row.
    fn rows_are_shifted_planes(&self) -> bool {
        self.stride == [1, 1] && self.out_width == self.in_width
    }

    /// For a [`Self::rows_are_shifted_planes`] geometry: the flat offset from an output pixel to
    /// the input pixel it reads at tap `(ky, kx)` (negative above or left of the image).
    fn plane_shift(&self, ky: usize, kx: usize) -> isize {
        let dy = (ky * self.dilation[0]) as isize - self.padding[0].0 as isize;
        let dx = (kx * self.dilation[1]) as isize - self.padding[1].0 as isize;
        dy * self.in_width as isize + dx
    }

    /// For a [`Self::rows_are_shifted_planes`] geometry: the output pixels `lo..hi` of valid rows
    /// whose shifted index lands inside the input plane. Inside it, only the border columns
    /// outside `valid_outputs(1, kx)` read a wrapped-around pixel.
    fn shifted_range(&self, ky: usize, kx: usize) -> (usize, usize) {
        let (oy_lo, oy_hi) = self.valid_outputs(0, ky);
        let shift = self.plane_shift(ky, kx);
        let plane = (self.in_height * self.in_width) as isize;
        let (rows_lo, rows_hi) = (
            (oy_lo * self.out_width) as isize,
            (oy_hi * self.out_width) as isize,
        );
        // Both ends stay inside the valid rows, so `lo..hi` is inside the row buffer even when
        // the shift points far outside the plane.
        let lo = rows_lo.max(-shift).min(rows_hi);
        let hi = rows_hi.min(plane - shift).max(lo);
        (lo as usize, hi as usize)
    }
}

/// [`im2col`] for [`Conv2dGeometry::rows_are_shifted_planes`]: one copy per row, then the
/// wrapped border columns and the rows in the padding set to zero.
#[inline(always)]
fn im2col_shifted(g: &Conv2dGeometry, image: &[f32], columns: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let ow = g.out_width;
    let plane = g.in_height * g.in_width;
    let mut rows = columns.chunks_exact_mut(g.out_pixels());
    for channel in image.chunks_exact(plane) {
        for ky in 0..kh {
            let (oy_lo, oy_hi) = g.valid_outputs(0, ky);
            for kx in 0..kw {
                let (ox_lo, ox_hi) = g.valid_outputs(1, kx);
                let Some(row) = rows.next() else { return };
                let (lo, hi) = g.shifted_range(ky, kx);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if lo < hi {
                    let src_lo = (lo as isize + g.plane_shift(ky, kx)) as usize;
                    row[lo..hi].copy_from_slice(&channel[src_lo..src_lo + (hi - lo)]);
                }
                zero_border_columns(row, ow, oy_lo..oy_hi, ox_lo, ox_hi);
            }
        }
    }
}

/// [`col2im`] for [`Conv2dGeometry::rows_are_shifted_planes`]: the wrapped border entries of
/// each row are zeroed (they belong to no input pixel), then the row is added in one pass.
#[inline(always)]
fn col2im_shifted(g: &Conv2dGeometry, columns: &mut [f32], image_grad: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let ow = g.out_width;
    let plane = g.in_height * g.in_width;
    let mut rows = columns.chunks_exact_mut(g.out_pixels());
    for channel in image_grad.chunks_exact_mut(plane) {
        for ky in 0..kh {
            let (oy_lo, oy_hi) = g.valid_outputs(0, ky);
            for kx in 0..kw {
                let (ox_lo, ox_hi) = g.valid_outputs(1, kx);
                let Some(row) = rows.next() else { return };
                zero_border_columns(row, ow, oy_lo..oy_hi, ox_lo, ox_hi);
                let (lo, hi) = g.shifted_range(ky, kx);
                if lo == hi {
                    continue;
                }
                let dst_lo = (lo as isize + g.plane_shift(ky, kx)) as usize;
                for (d, s) in channel[dst_lo..dst_lo + (hi - lo)]
                    .iter_mut()
                    .zip(&row[lo..hi])
                {
                    *d += *s;
                }
            }
        }
    }
}

/// Zeroes, in the rows `oy` of a shifted-plane im2col row (`OH × OW` values), the columns left
/// of `ox_lo` and from `ox_hi` on: the entries that wrapped around from a neighbouring row.
/// Written as strided stores, since each run is only a pixel or two wide and a `fill` per run
/// costs a `memset` call.
#[inline(always)]
fn zero_border_columns(
    row: &mut [f32],
    ow: usize,
    rows: std::ops::Range<usize>,
    ox_lo: usize,
    ox_hi: usize,
) {
    for col in (0..ox_lo).chain(ox_hi..ow) {
        for oy in rows.clone() {
            row[oy * ow + col] = 0.0;
        }
    }
}

/// Fills `columns` (`[C_in·kh·kw, OH·OW]`) with the patches of one image `[C_in, H, W]`.
fn im2col(g: &Conv2dGeometry, image: &[f32], columns: &mut [f32]) {
    with_avx2(|| im2col_any(g, image, columns))
}

#[inline(always)]
fn im2col_any(g: &Conv2dGeometry, image: &[f32], columns: &mut [f32]) {
    if g.rows_are_shifted_planes() {
        return im2col_shifted(g, image, columns);
    }
    let [kh, kw] = g.kernel;
    let (ow, sw, dw, pad_left) = (g.out_width, g.stride[1], g.dilation[1], g.padding[1].0);
    let plane = g.in_height * g.in_width;
    let mut rows = columns.chunks_exact_mut(g.out_pixels());
    for channel in image.chunks_exact(plane) {
        for ky in 0..kh {
            let (oy_lo, oy_hi) = g.valid_outputs(0, ky);
            for kx in 0..kw {
                let (ox_lo, ox_hi) = g.valid_outputs(1, kx);
                let Some(row) = rows.next() else { return };
                row[..oy_lo * ow].fill(0.0);
                row[oy_hi * ow..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride[0] + ky * g.dilation[0] - g.padding[0].0;
                    let src = &channel[iy * g.in_width..(iy + 1) * g.in_width];
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    dst[..ox_lo].fill(0.0);
                    dst[ox_hi..].fill(0.0);
                    if ox_lo == ox_hi {
                        continue;
                    }
                    let first = ox_lo * sw + kx * dw - pad_left;
                    if sw == 1 {
                        dst[ox_lo..ox_hi].copy_from_slice(&src[first..first + (ox_hi - ox_lo)]);
                    } else {
                        for (d, s) in dst[ox_lo..ox_hi]
                            .iter_mut()
                            .zip(src[first..].iter().step_by(sw))
                        {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds every entry of `columns` (`[C_in·kh·kw, OH·OW]`) into the input pixel it was read from:
/// the adjoint of [`im2col`]. `image_grad` must start zeroed; `columns` is scratch and may be
/// changed.
fn col2im(g: &Conv2dGeometry, columns: &mut [f32], image_grad: &mut [f32]) {
    with_avx2(|| col2im_any(g, columns, image_grad))
}

#[inline(always)]
fn col2im_any(g: &Conv2dGeometry, columns: &mut [f32], image_grad: &mut [f32]) {
    if g.rows_are_shifted_planes() {
        return col2im_shifted(g, columns, image_grad);
    }
    let [kh, kw] = g.kernel;
    let (ow, sw, dw, pad_left) = (g.out_width, g.stride[1], g.dilation[1], g.padding[1].0);
    let plane = g.in_height * g.in_width;
    let mut rows = columns.chunks_exact(g.out_pixels());
    for channel in image_grad.chunks_exact_mut(plane) {
        for ky in 0..kh {
            let (oy_lo, oy_hi) = g.valid_outputs(0, ky);
            for kx in 0..kw {
                let (ox_lo, ox_hi) = g.valid_outputs(1, kx);
                let Some(row) = rows.next() else { return };
                if ox_lo == ox_hi {
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride[0] + ky * g.dilation[0] - g.padding[0].0;
                    let dst = &mut channel[iy * g.in_width..(iy + 1) * g.in_width];
                    let src = &row[oy * ow + ox_lo..oy * ow + ox_hi];
                    let first = ox_lo * sw + kx * dw - pad_left;
                    if sw == 1 {
                        for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[first..].iter_mut().step_by(sw).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// A row-major matrix view for [`matmul`]: `rows × cols`, element `(i, j)` at
/// `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
struct MatrixView<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatrixView<'a> {
    fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major `[rows, cols]` matrix `data`.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Whether `(rows-1, cols-1)` is inside the slice, the condition for reading it safely.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` on this thread; `accumulate` keeps `dst`'s contents.
fn matmul(
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    lhs: MatrixView<'_>,
    rhs: MatrixView<'_>,
    accumulate: bool,
) {
    // The bounds are what makes the raw-pointer call below sound; every caller derives its
    // sizes from one checked geometry, so a failure here is a bug in this file.
    assert!(
        dst.len() >= m * n && lhs.covers(m, k) && rhs.covers(k, n),
        "matmul operands do not cover a {m}×{k} · {k}×{n} product"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the assertion above keeps every element gemm touches inside the three slices;
    // `dst` is exclusively borrowed and does not alias the shared `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn check_forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<(), KernelError> {
    check_len("input", input.len(), g.batch * g.image_len())?;
    check_len("weight", weight.len(), g.weight_len())?;
    if let Some(bias) = bias {
        check_len("bias", bias.len(), g.out_channels)?;
    }
    Ok(())
}

/// The convolution `[N, C_out, OH, OW]` of `input` `[N, C_in, H, W]` with `weight`
/// `[C_out, C_in, kh, kw]`, plus `bias` `[C_out]` where given.
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, KernelError> {
    check_forward(g, input, weight, bias)?;
    let (pixels, patch) = (g.out_pixels(), g.patch_len());
    let mut out = vec![0f32; g.batch * g.out_image_len()];
    let weight_matrix = MatrixView::row_major(weight, patch);
    out.par_chunks_mut(g.out_image_len())
        .zip(input.par_chunks(g.image_len()))
        .for_each(|(out_image, image)| {
            let gemm_shape = [g.out_channels, pixels, patch];
            if g.columns_are_image() {
                let columns = MatrixView::row_major(image, pixels);
                matmul(out_image, gemm_shape, weight_matrix, columns, false);
            } else {
                with_columns(patch * pixels, |columns| {
                    im2col(g, image, columns);
                    let columns = MatrixView::row_major(columns, pixels);
                    matmul(out_image, gemm_shape, weight_matrix, columns, false);
                });
            }
            if let Some(bias) = bias {
                for (channel, b) in out_image.chunks_exact_mut(pixels).zip(bias) {
                    channel.iter_mut().for_each(|v| *v += *b);
                }
            }
        });
    Ok(out)
}

/// Which gradients [`conv2d_backward`] should compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedGrads {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

/// The gradients of a convolution with respect to its input, weight and bias; `None` for the
/// ones not asked for.
#[derive(Debug, Clone, Default)]
pub struct Conv2dGrads {
    pub input: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// Groups of images whose weight and bias gradients are summed separately, then added in order.
const GRADIENT_GROUPS: usize = 8;

/// Partial sums of the weight and bias gradients over one group of images.
struct PartialSums {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl PartialSums {
    fn add(mut self, other: Self) -> Self {
        for (a, b) in self.weight.iter_mut().zip(&other.weight) {
            *a += *b;
        }
        for (a, b) in self.bias.iter_mut().zip(&other.bias) {
            *a += *b;
        }
        self
    }
}

/// One image's share of the backward pass: its weight- and bias-gradient terms added into
/// `sums`, and its input gradient written into `image_grad` (zeroed on entry) where given.
/// Both GEMMs reuse the thread's im2col buffer while `dy` is still in cache.
fn backward_image(
    g: &Conv2dGeometry,
    image: &[f32],
    weight: &[f32],
    dy: &[f32],
    image_grad: Option<&mut [f32]>,
    wanted: WantedGrads,
    sums: &mut PartialSums,
) {
    let (pixels, patch) = (g.out_pixels(), g.patch_len());
    let dy_matrix = MatrixView::row_major(dy, pixels);
    if wanted.bias {
        for (b, channel) in sums.bias.iter_mut().zip(dy.chunks_exact(pixels)) {
            *b += channel.iter().sum::<f32>();
        }
    }
    let weight_shape = [g.out_channels, patch, pixels];
    let input_shape = [patch, pixels, g.out_channels];
    let weight_t = MatrixView::transposed(weight, patch);
    if g.columns_are_image() {
        if wanted.weight {
            let columns_t = MatrixView::transposed(image, pixels);
            matmul(&mut sums.weight, weight_shape, dy_matrix, columns_t, true);
        }
        if let Some(image_grad) = image_grad {
            matmul(image_grad, input_shape, weight_t, dy_matrix, false);
        }
        return;
    }
    with_columns(patch * pixels, |columns| {
        if wanted.weight {
            im2col(g, image, columns);
            let columns_t = MatrixView::transposed(columns, pixels);
            matmul(&mut sums.weight, weight_shape, dy_matrix, columns_t, true);
        }
        if let Some(image_grad) = image_grad {
            matmul(columns, input_shape, weight_t, dy_matrix, false);
            col2im(g, columns, image_grad);
        }
    });
}

/// The gradients of the convolution of `input` with `weight` (and a bias, whose gradient needs
/// neither) given the output gradient `out_grad` `[N, C_out, OH, OW]`.
pub fn conv2d_backward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    out_grad: &[f32],
    wanted: WantedGrads,
) -> Result<Conv2dGrads, KernelError> {
    check_forward(g, input, weight, None)?;
    check_len(
        "output gradient",
        out_grad.len(),
        g.batch * g.out_image_len(),
    )?;
    let empty = || PartialSums {
        weight: vec![0.0; if wanted.weight { g.weight_len() } else { 0 }],
        bias: vec![0.0; if wanted.bias { g.out_channels } else { 0 }],
    };
    // Images are summed in fixed, contiguous groups, each in order, then the groups in order:
    // a float sum that does not depend on how rayon schedules the work (its fold/reduce does),
    // so training is bit-reproducible and `--resume` ends where an uninterrupted run does.
    let per_group = g.batch.div_ceil(GRADIENT_GROUPS).max(1);
    let (image_len, out_len) = (g.image_len(), g.out_image_len());
    let mut input_grad = wanted.input.then(|| vec![0f32; g.batch * image_len]);
    let group_images: Vec<(&[f32], &[f32])> = input
        .chunks(per_group * image_len)
        .zip(out_grad.chunks(per_group * out_len))
        .collect();
    let group_grads: Vec<Option<&mut [f32]>> = match input_grad.as_mut() {
        Some(grad) => grad.chunks_mut(per_group * image_len).map(Some).collect(),
        None => group_images.iter().map(|_| None).collect(),
    };
    let partials: Vec<PartialSums> = group_images
        .into_par_iter()
        .zip(group_grads)
        .map(|((images, dys), mut grads)| {
            let mut sums = empty();
            for (i, (image, dy)) in images
                .chunks_exact(image_len)
                .zip(dys.chunks_exact(out_len))
                .enumerate()
            {
                let image_grad = grads
                    .as_deref_mut()
                    .map(|grad| &mut grad[i * image_len..(i + 1) * image_len]);
                backward_image(g, image, weight, dy, image_grad, wanted, &mut sums);
            }
            sums
        })
        .collect();
    let sums = partials
        .into_iter()
        .reduce(PartialSums::add)
        .unwrap_or_else(empty);
    Ok(Conv2dGrads {
        input: input_grad,
        weight: wanted.weight.then_some(sums.weight),
        bias: wanted.bias.then_some(sums.bias),
    })
}
