//! INT8 convolution as an implicit GEMM: the activation panels of [`super::qgemm`] are packed
//! straight from the image, without materialising the `[C·kh·kw, oh·ow]` im2col matrix.
//!
//! The image is first copied into the padded, stride-phase-split layout of
//! [`super::implicit`], where every row of the virtual im2col matrix is a contiguous run, so a
//! 4-deep × 32-column block of packed activations is four 32-byte loads and an interleave.
//!
//! The GEMM walks column tiles (32 wide columns): it packs the tile's two activation panels
//! into a small L1-resident buffer, runs every weight row panel over them and scatters the valid
//! columns into the compact `[out, oh·ow]` accumulators. Packed activations are thus written
//! and read once, while hot, instead of going through two image-sized intermediate matrices.
//!
//! Reading garbage is harmless by construction: the wide columns past `ow` and past the end only
//! feed dropped outputs, and the depth padding (K rounded up to 4) multiplies zero weights.
//! [`super::reference::qconv2d`] is the definition; `tests/kernels.rs` compares them bit for bit.

use std::cell::Cell;

use rayon::prelude::*;

use super::implicit::{ImplicitIm2col, TILE_N};
use super::qgemm::{interleave_4x16, tile, PackedA, QgemmKernel, MR, NR, QGEMM_PARALLEL_MIN_MACS};

// A tile covers two activation panels.
const _: () = assert!(TILE_N == 2 * NR);

thread_local! {
    /// The padded, phase-split copy of the image, reused call after call.
    static PHASES: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// One column tile of packed activations.
    static TILE_B: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// One padded input row (strided convolutions).
    static ROW: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl ImplicitIm2col {
    /// Writes the padded, phase-split image into `buf` (at least `self.len` bytes): `input` is
    /// `channels × h × w`, every byte XOR-ed with `flip`, padding is `pad` (already in the u8
    /// domain). Phases no kernel offset reads (a 1×1 kernel with stride 2 reads one of four) are
    /// skipped, as are the bytes past the planes: both only reach dropped columns. `row` is
    /// scratch for one padded input row.
    #[inline(always)]
    fn fill(&self, input: &[u8], pad: u8, flip: u8, buf: &mut [u8], row: &mut Vec<u8>, simd: Simd) {
        let [h, w] = self.in_hw;
        let [sh, sw] = self.stride;
        let [pt, pl] = self.pad_tl;
        let (hq, wq, plane) = (self.hq, self.wq, self.hq * self.wq);
        let [kh, kw] = self.kernel;
        // A padded input row covering every phase's columns, readable in 64-byte blocks.
        row.clear();
        row.resize((wq * sw).div_ceil(64) * 64, pad);
        for c in 0..self.channels {
            let image = &input[c * h * w..(c + 1) * h * w];
            for py in 0..sh.min(kh) {
                let phases = (c * sh + py) * sw;
                for y in 0..hq {
                    let iy = (y * sh + py).wrapping_sub(pt);
                    let at = |px: usize| (phases + px) * plane + y * wq;
                    let (start, len) = if iy < h { (iy * w, w) } else { (0, 0) };
                    let src = &image[start..start + len];
                    #[cfg(target_arch = "x86_64")]
                    if simd.avx512 && sw <= 2 {
                        let (a0, a1) = (at(0), at(sw.min(kw) - 1));
                        debug_assert!(a1 == a0 || a0 + wq <= a1);
                        let dst = buf[a0..a1 + wq].as_mut_ptr();
                        let odd = (a1 != a0).then(|| dst.wrapping_add(a1 - a0));
                        // SAFETY: AVX-512 F, BW and VL were detected; `dst` (and `odd`) start
                        // `wq` writable bytes of `buf`, checked by the slice above.
                        unsafe {
                            super::x86::pad_split_row(
                                input,
                                c * h * w + start,
                                len,
                                pl,
                                flip,
                                pad,
                                sw,
                                wq,
                                dst,
                                odd,
                            )
                        };
                        continue;
                    }
                    if src.is_empty() {
                        for px in 0..sw.min(kw) {
                            buf[at(px)..at(px) + wq].fill(pad);
                        }
                        continue;
                    }
                    if sw == 1 {
                        // wq = pl + w + pr: the phase row is the padded row itself.
                        let dst = &mut buf[at(0)..at(0) + wq];
                        fill_small(&mut dst[..pl], pad);
                        copy_xor(&mut dst[pl..pl + w], src, flip, simd);
                        fill_small(&mut dst[pl + w..], pad);
                        continue;
                    }
                    // Columns pl..pl + w of `row` are the image row; the rest stays `pad`.
                    copy_xor(&mut row[pl..pl + w], src, flip, simd);
                    split_phases(row, sw, kw, wq, at, buf, simd);
                }
            }
        }
    }

    /// Packs column tile `t` (wide columns `32·t ..`) of the virtual im2col matrix as two
    /// [`NR`]-column panels, `[panel][k / 4][NR][4]`, into `dst` (`2 · depth/4 · 64` bytes).
    #[inline(always)]
    fn pack_tile(&self, buf: &[u8], t: usize, dst: &mut [u8], simd: Simd) {
        let j0 = t * TILE_N;
        let half = self.offsets.len() * NR;
        let (p0, p1) = dst.split_at_mut(half);
        #[cfg(target_arch = "x86_64")]
        if simd.avx2 && self.offsets.iter().all(|&o| o + j0 + TILE_N <= buf.len()) {
            // SAFETY: AVX2 is present; every 32-byte read was checked to lie inside `buf`, and
            // `p0`, `p1` hold `offsets.len() / 4` groups of 64 bytes each.
            unsafe {
                super::x86::pack_tile_avx2(
                    buf.as_ptr(),
                    &self.offsets,
                    j0,
                    p0.as_mut_ptr(),
                    p1.as_mut_ptr(),
                )
            };
            return;
        }
        let _ = simd;
        for ((o, d0), d1) in self
            .offsets
            .chunks_exact(4)
            .zip(p0.chunks_exact_mut(4 * NR))
            .zip(p1.chunks_exact_mut(4 * NR))
        {
            let row = |q: usize| &buf[o[q] + j0..o[q] + j0 + TILE_N];
            let rows = [row(0), row(1), row(2), row(3)];
            interleave_4x16([rows[0], rows[1], rows[2], rows[3]], 0, d0);
            interleave_4x16(
                [
                    &rows[0][NR..],
                    &rows[1][NR..],
                    &rows[2][NR..],
                    &rows[3][NR..],
                ],
                0,
                d1,
            );
        }
    }
}

/// `acc[m][oh·ow] = Σ_k a[m][k] · im2col(input)[k][·]` for one image's channel group, with the
/// activation panels packed straight from `input` (`channels × h × w` bytes, XOR-ed with `flip`,
/// padding `pad` in the u8 domain). Returns `false` (computing nothing) when the shapes
/// disagree. Splits column tiles across threads when the product is large.
pub fn qconv_implicit(
    kernel: QgemmKernel,
    layout: &ImplicitIm2col,
    a: &PackedA,
    input: &[u8],
    pad: u8,
    flip: u8,
    acc: &mut [i32],
) -> bool {
    let [oh, ow] = layout.out_hw;
    let [h, w] = layout.in_hw;
    let (m, n) = (a.m, oh * ow);
    if a.k != layout.depth || input.len() < layout.channels * h * w || acc.len() != m * n {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let simd = Simd::for_kernel(kernel);
    let mut buf = PHASES.with(Cell::take);
    if buf.len() < layout.len {
        buf.resize(layout.len, 0);
    }
    let mut row = ROW.with(Cell::take);
    #[cfg(target_arch = "x86_64")]
    if simd.avx512 {
        // SAFETY: `Simd::for_kernel` detected AVX-512 F, BW, VL and AVX2.
        unsafe { fill_avx512(layout, input, pad, flip, &mut buf, &mut row, simd) };
    } else {
        layout.fill(input, pad, flip, &mut buf, &mut row, simd);
    }
    #[cfg(not(target_arch = "x86_64"))]
    layout.fill(input, pad, flip, &mut buf, &mut row, simd);
    ROW.with(|cell| cell.set(row));
    let tiles = layout.wide().div_ceil(TILE_N);
    let macs = m * tiles * TILE_N * a.k;
    let out = Out(acc.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        let mut packed = TILE_B.with(Cell::take);
        packed.resize(2 * layout.offsets.len() * NR, 0);
        #[cfg(target_arch = "x86_64")]
        if simd.avx512 {
            // SAFETY: as above; `out` covers `m × n` and the tiles of `range` are this task's.
            unsafe { run_tiles_avx512(kernel, layout, a, &buf, &mut packed, range, out, simd) };
            TILE_B.with(|cell| cell.set(packed));
            return;
        }
        // SAFETY: `out` covers `m × n` and the tiles of `range` are this task's.
        unsafe { run_tiles(kernel, layout, a, &buf, &mut packed, range, out, simd) };
        TILE_B.with(|cell| cell.set(packed));
    };
    if macs >= QGEMM_PARALLEL_MIN_MACS && super::should_parallelize(macs) {
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

/// Computes column tiles `range` into `out` (`a.m × oh·ow`): packs each tile's activations,
/// runs every row panel over them and scatters the valid columns.
///
/// # Safety
/// `out` must point to `a.m × oh·ow` writable accumulators that no other task writes in the
/// columns of these tiles.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn run_tiles(
    kernel: QgemmKernel,
    layout: &ImplicitIm2col,
    a: &PackedA,
    buf: &[u8],
    packed: &mut [u8],
    range: std::ops::Range<usize>,
    out: Out,
    simd: Simd,
) {
    let (m, n) = (a.m, layout.out_hw[0] * layout.out_hw[1]);
    let mut c = [0i32; MR * TILE_N];
    let mut runs = [(0, 0, 0); TILE_N];
    let half = layout.offsets.len() * NR;
    for t in range {
        layout.pack_tile(buf, t, packed, simd);
        let count = layout.runs(t, &mut runs);
        let (b0, b1) = packed.split_at(half);
        for p in 0..m.div_ceil(MR) {
            tile(kernel, a.groups(), a.panel(p), b0, b1, &mut c);
            for r in 0..MR.min(m - p * MR) {
                let row = (p * MR + r) * n;
                for &(col, at, len) in &runs[..count] {
                    // SAFETY: `col + len <= TILE_N` and `at + len <= n` (a run of valid
                    // outputs), `row < m·n`, so both ranges lie inside their buffers; the caller
                    // owns these columns.
                    unsafe {
                        copy_run(
                            c.as_ptr().add(r * TILE_N + col),
                            out.ptr().add(row + at),
                            len,
                            simd,
                        )
                    };
                }
            }
        }
    }
}

/// [`run_tiles`] compiled for AVX-512, so the SIMD helpers inline into its loops.
///
/// # Safety
/// As [`run_tiles`]; the CPU must have AVX-512 F, BW, VL and AVX2.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn run_tiles_avx512(
    kernel: QgemmKernel,
    layout: &ImplicitIm2col,
    a: &PackedA,
    buf: &[u8],
    packed: &mut [u8],
    range: std::ops::Range<usize>,
    out: Out,
    simd: Simd,
) {
    // SAFETY: forwarded from the caller.
    unsafe { run_tiles(kernel, layout, a, buf, packed, range, out, simd) }
}

/// [`ImplicitIm2col::fill`] compiled for AVX-512, so the row copies inline.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn fill_avx512(
    layout: &ImplicitIm2col,
    input: &[u8],
    pad: u8,
    flip: u8,
    buf: &mut [u8],
    row: &mut Vec<u8>,
    simd: Simd,
) {
    layout.fill(input, pad, flip, buf, row, simd);
}

/// Which SIMD helpers the data movement around the tiles uses: the same ISA level as the tile
/// (so the scalar kernel runs the portable code, and the tests cover both).
#[derive(Debug, Clone, Copy)]
struct Simd {
    avx2: bool,
    avx512: bool,
}

impl Simd {
    fn for_kernel(kernel: QgemmKernel) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = kernel == QgemmKernel::Avx512Vnni && super::x86::has_avx512bw_vl();
            let avx2 = kernel != QgemmKernel::Scalar && super::x86::has_avx2();
            Simd { avx2, avx512 }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = kernel;
            Simd {
                avx2: false,
                avx512: false,
            }
        }
    }
}

/// `dst[i] = src[i] ^ flip` over the shorter of the two.
#[inline(always)]
fn copy_xor(dst: &mut [u8], src: &[u8], flip: u8, simd: Simd) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx512 {
        // SAFETY: AVX-512 F and BW were detected (`Simd::for_kernel`).
        unsafe { super::x86::copy_xor_bytes(dst, src, flip) };
        return;
    }
    let _ = simd;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v ^ flip;
    }
}

/// Writes phase `px` of the padded row `row` (`row[x·sw + px]`, `x < wq`) at `buf[at(px)..]`
/// for each phase a kernel column reads (`px < min(sw, kw)`).
#[inline(always)]
fn split_phases(
    row: &[u8],
    sw: usize,
    kw: usize,
    wq: usize,
    at: impl Fn(usize) -> usize,
    buf: &mut [u8],
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx512 && sw == 2 && kw >= 2 {
        let (a0, a1) = (at(0), at(1));
        debug_assert!(a0 + wq <= a1);
        let (lo, hi) = buf.split_at_mut(a1);
        // SAFETY: AVX-512 F and BW were detected; `row` is padded to a multiple of 64 bytes.
        unsafe { super::x86::deinterleave2_bytes(row, &mut lo[a0..a0 + wq], &mut hi[..wq]) };
        return;
    }
    let _ = simd;
    for px in 0..sw.min(kw) {
        let dst = &mut buf[at(px)..at(px) + wq];
        for (d, &v) in dst.iter_mut().zip(row[px..].iter().step_by(sw)) {
            *d = v;
        }
    }
}

/// `dst.fill(pad)` for the zero-to-two-byte borders of a padded row without a `memset` call.
#[inline(always)]
fn fill_small(dst: &mut [u8], pad: u8) {
    match dst {
        [] => {}
        [a] => *a = pad,
        [a, b] => (*a, *b) = (pad, pad),
        _ => dst.fill(pad),
    }
}

/// Copies a run of at most [`TILE_N`] accumulators.
///
/// # Safety
/// `src` and `dst` must be valid for `len` elements and must not overlap.
#[inline(always)]
unsafe fn copy_run(src: *const i32, dst: *mut i32, len: usize, simd: Simd) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx512 && len <= TILE_N {
        // SAFETY: AVX-512 F was detected; the caller vouches for the pointers.
        unsafe { super::x86::copy_i32_run(src, dst, len) };
        return;
    }
    let _ = simd;
    // SAFETY: as the caller guarantees.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

/// `acc`'s base pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut i32);
// SAFETY: every task writes a disjoint set of elements (its own columns) of one live slice.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    // A method (not the field) so that closures capture the whole `Send` wrapper.
    fn ptr(self) -> *mut i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::ConvGeometry;

    /// Products large enough to split column tiles across threads equal the reference, for a
    /// stride-1 "same" and a stride-2 layer, with ragged tile edges.
    #[test]
    fn parallel_split_equals_reference() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (c, co, hw, k, s, p) in [
            (16, 24, 57, 3, 1, 1),
            (12, 40, 61, 3, 2, 1),
            (128, 9, 45, 1, 1, 0),
        ] {
            let g = ConvGeometry {
                batch: 1,
                in_channels: c,
                in_hw: [hw, hw + 3],
                out_channels: co,
                kernel: [k, k],
                stride: [s, s],
                padding: [p, p, p, p],
                groups: 1,
            };
            let [oh, ow] = g.out_hw().unwrap();
            let layout = ImplicitIm2col::new(&g, c).unwrap();
            assert!(co * oh * layout.wq * c * k * k >= QGEMM_PARALLEL_MIN_MACS);
            let x: Vec<u8> = (0..c * hw * (hw + 3)).map(|_| next() as u8).collect();
            let w: Vec<i8> = (0..co * c * k * k).map(|_| next() as i8).collect();
            let want = super::super::reference::qconv2d(&g, &x, 3, &w);
            let mut got = vec![0i32; co * oh * ow];
            let packed = PackedA::pack(co, c * k * k, &w);
            // The test thread is not a rayon worker, so with 2+ cores the split path runs.
            assert!(qconv_implicit(
                QgemmKernel::best(),
                &layout,
                &packed,
                &x,
                3,
                0,
                &mut got
            ));
            assert_eq!(got, want, "{c}x{hw} -> {co}, k{k} s{s}");
        }
    }
}
