//! fp32 convolution as an implicit GEMM, the fp32 twin of [`super::qconv`]: the same padded,
//! stride-phase-split copy of the image ([`ImplicitIm2col`]), in which every row of the virtual
//! im2col matrix is a contiguous run. For fp32 no activation packing is needed at all: the 16
//! columns a zmm register holds for depth index `k` are 16 consecutive floats at
//! `offset[k] + column`, so the tile loads them straight from the image copy.
//!
//! Tile: [`MR`] output channels × 32 wide columns in 16 zmm accumulators; per depth index two
//! loads of activations, [`MR`] weight broadcasts and 16 FMAs. Weights are packed once, at load,
//! as `[m / MR][k][MR]`. Only AVX-512 has a fast tile; elsewhere the convolution keeps the
//! im2col + `gemm` path, and [`SconvKernel::Portable`] (plain loops, same layout) exists for the
//! tests and as the definition of what the SIMD tile computes.

use std::cell::Cell;

use rayon::prelude::*;

use super::implicit::ImplicitIm2col;

/// Output channels per tile.
pub const MR: usize = 8;
/// Wide columns per tile.
const TILE_N: usize = 32;
/// Below this many multiply-adds the convolution stays on one thread (an AVX-512 core does
/// ~2²⁰ fp32 multiply-adds in 25–40 µs, several rayon wake-ups' worth).
const PARALLEL_MIN_MACS: usize = 1 << 20;

thread_local! {
    /// The padded, phase-split copy of the image, reused call after call.
    static PHASES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Which tile implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SconvKernel {
    /// Plain loops.
    Portable,
    /// AVX-512 F: 16 zmm accumulators, `vfmadd231ps` with broadcast weights.
    Avx512,
}

impl SconvKernel {
    /// The fast tile if this CPU has one (AVX-512 F), detected once.
    pub fn fast() -> Option<SconvKernel> {
        static FAST: std::sync::OnceLock<Option<SconvKernel>> = std::sync::OnceLock::new();
        *FAST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") {
                return Some(SconvKernel::Avx512);
            }
            None
        })
    }
}

/// fp32 weights `[m, k]` packed as `[m / MR][k][MR]` (rows past `m` are zero).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    /// Rows (output channels).
    pub m: usize,
    /// Depth.
    pub k: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// Packs row-major `m×k` weights.
    pub fn pack(m: usize, k: usize, w: &[f32]) -> Self {
        let mut data = vec![0f32; m.div_ceil(MR) * k * MR];
        for (i, row) in w.chunks_exact(k.max(1)).take(m).enumerate() {
            let (panel, r) = (i / MR, i % MR);
            for (p, &v) in row.iter().enumerate() {
                data[(panel * k + p) * MR + r] = v;
            }
        }
        Self { m, k, data }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * MR..(p + 1) * self.k * MR]
    }
}

/// `out[m][oh·ow] = Σ_k w[m][k] · im2col(input)[k][·]` for one image's channel group
/// (`input`: `channels × h × w`, padding 0), no bias. Returns `false` (computing nothing) when
/// the shapes disagree. Splits column tiles across threads when the product is large.
pub fn sconv_implicit(
    kernel: SconvKernel,
    layout: &ImplicitIm2col,
    w: &PackedWeights,
    input: &[f32],
    out: &mut [f32],
) -> bool {
    let [oh, ow] = layout.out_hw();
    let (m, n) = (w.m, oh * ow);
    if w.k != layout.depth()
        || input.len() < layout.channels() * layout.in_hw()[0] * layout.in_hw()[1]
        || out.len() != m * n
    {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let mut buf = PHASES.with(Cell::take);
    if buf.len() < layout.len() {
        buf.resize(layout.len(), 0.0);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == SconvKernel::Avx512 && layout.stride[1] <= 2 && avx512vl() {
        // SAFETY: AVX-512 F and VL were detected; `buf` holds `layout.len()` floats.
        unsafe { fill_avx512(layout, input, &mut buf) };
    } else {
        layout.fill_plain(input, 0.0, &mut buf);
    }
    #[cfg(not(target_arch = "x86_64"))]
    layout.fill_plain(input, 0.0, &mut buf);
    let tiles = layout.wide().div_ceil(TILE_N);
    let macs = m * tiles * TILE_N * w.k;
    let dst = Out(out.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        let mut c = [0f32; MR * TILE_N];
        let mut runs = [(0, 0, 0); TILE_N];
        for t in range {
            let count = layout.runs(t, &mut runs);
            for p in 0..m.div_ceil(MR) {
                tile(
                    kernel,
                    layout.offsets(w.k),
                    t * TILE_N,
                    &buf,
                    w.panel(p),
                    &mut c,
                );
                for r in 0..MR.min(m - p * MR) {
                    let row = (p * MR + r) * n;
                    for &(col, at, len) in &runs[..count] {
                        // SAFETY: `col + len <= TILE_N`, `at + len <= n` and `row < m·n`, so
                        // both ranges lie inside their buffers; tasks own disjoint tiles.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                c.as_ptr().add(r * TILE_N + col),
                                dst.ptr().add(row + at),
                                len,
                            )
                        };
                    }
                }
            }
        }
    };
    if macs >= PARALLEL_MIN_MACS && super::should_parallelize(macs) {
        let chunks = (4 * rayon::current_num_threads()).min(tiles);
        (0..chunks)
            .into_par_iter()
            .for_each(|i| run(i * tiles / chunks..(i + 1) * tiles / chunks));
    } else {
        run(0..tiles);
    }
    PHASES.with(|cell| cell.set(buf));
    true
}

/// True when the CPU has AVX-512 F and VL (masked 256-bit stores), detected once.
#[cfg(target_arch = "x86_64")]
fn avx512vl() -> bool {
    static VL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VL.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl"))
}

/// [`ImplicitIm2col::fill_plain`] with padding 0.0 for horizontal strides 1 and 2, one masked
/// 16-float load and one or two masked stores per chunk of a row instead of `memcpy` calls.
///
/// # Safety
/// The CPU must have AVX-512 F and VL; `buf` must hold `layout.len()` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn fill_avx512(layout: &ImplicitIm2col, input: &[f32], buf: &mut [f32]) {
    let [h, w] = layout.in_hw;
    let [sh, sw] = layout.stride;
    let [_, pl] = layout.pad_tl;
    let (hq, wq, plane) = (layout.hq, layout.wq, layout.hq * layout.wq);
    let [kh, kw] = layout.kernel;
    let pt = layout.pad_tl[0];
    for c in 0..layout.channels {
        for py in 0..sh.min(kh) {
            let phases = (c * sh + py) * sw;
            for y in 0..hq {
                let iy = (y * sh + py).wrapping_sub(pt);
                let (start, len) = if iy < h {
                    (c * h * w + iy * w, w)
                } else {
                    (0, 0)
                };
                let a0 = phases * plane + y * wq;
                let a1 = a0 + (sw.min(kw) - 1) * plane;
                let dst = buf[a0..a1 + wq].as_mut_ptr();
                let odd = (a1 != a0).then(|| dst.wrapping_add(a1 - a0));
                // SAFETY: the features are the caller's promise; `dst` (and `odd`) start `wq`
                // writable floats of `buf`, checked by the slice above.
                unsafe { super::x86::pad_split_row_f32(input, start, len, pl, sw, wq, dst, odd) };
            }
        }
    }
}

/// One `MR × TILE_N` tile into `c` (row-major, `TILE_N` wide): `c[r][j] = Σ_k a[k][r] ·
/// buf[offsets[k] + j0 + j]`. The caller guarantees every read lies inside `buf`
/// ([`ImplicitIm2col`]'s length covers every tile).
fn tile(kernel: SconvKernel, offsets: &[usize], j0: usize, buf: &[f32], a: &[f32], c: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if kernel == SconvKernel::Avx512
        && c.len() >= MR * TILE_N
        && a.len() >= offsets.len() * MR
        && offsets.iter().all(|&o| o + j0 + TILE_N <= buf.len())
    {
        // SAFETY: AVX-512 F was detected (`SconvKernel::fast`), and every read and write was
        // bounds-checked just above.
        unsafe { tile_avx512(offsets, j0, buf.as_ptr(), a.as_ptr(), c.as_mut_ptr()) };
        return;
    }
    let _ = kernel;
    c[..MR * TILE_N].fill(0.0);
    for (k, &o) in offsets.iter().enumerate() {
        let x = &buf[o + j0..o + j0 + TILE_N];
        for r in 0..MR {
            let wv = a[k * MR + r];
            for (acc, &v) in c[r * TILE_N..(r + 1) * TILE_N].iter_mut().zip(x) {
                *acc += wv * v;
            }
        }
    }
}

/// 8 rows × 32 columns in 16 zmm accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(offsets: &[usize], j0: usize, buf: *const f32, a: *const f32, c: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for (k, &o) in offsets.iter().enumerate() {
        let x0 = _mm512_loadu_ps(buf.add(o + j0));
        let x1 = _mm512_loadu_ps(buf.add(o + j0 + 16));
        let wk = a.add(k * MR);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let wv = _mm512_set1_ps(*wk.add(r));
            acc_r[0] = _mm512_fmadd_ps(wv, x0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(wv, x1, acc_r[1]);
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * TILE_N), acc_r[0]);
        _mm512_storeu_ps(c.add(r * TILE_N + 16), acc_r[1]);
    }
}

/// `out`'s base pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own columns) of one live slice.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    // A method (not the field) so that closures capture the whole `Send` wrapper.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}
