//! INT8 GEMM: `c[m][n] = Σ_k a[m][k] · b[k][n]` with i8 weights `a`, u8 activations `b` and
//! exact i32 accumulation, on packed panels. See `INT8_GEMM.md` for the design.
//!
//! Weights are packed once at load time into panels of [`MR`] rows, activations per call into
//! panels of [`NR`] columns; in both, K is grouped by 4 (the width of one `vpdpbusd` lane) and
//! zero-padded to a multiple of 4:
//!
//! ```text
//! PackedA: [m / MR][k / 4][MR rows][4 k-bytes]   i8
//! PackedB: [n / NR][k / 4][NR cols][4 k-bytes]   u8
//! ```
//!
//! A tile computes `MR × 2·NR` outputs (8 rows × 32 columns); the three implementations
//! (scalar, AVX2, AVX-512 VNNI) share the packing and are bit-identical.

use std::sync::OnceLock;

use rayon::prelude::*;

/// Rows of a weight panel (output channels per tile).
pub const MR: usize = 8;
/// Columns of an activation panel; a tile covers two panels.
pub const NR: usize = 16;
/// Columns of one tile.
const TILE_N: usize = 2 * NR;

/// i8 weights packed into [`MR`]-row panels.
#[derive(Debug, Clone)]
pub struct PackedA {
    /// Rows (output channels).
    pub m: usize,
    /// Depth.
    pub k: usize,
    groups: usize,
    data: Vec<i8>,
}

/// u8 activations packed into [`NR`]-column panels.
#[derive(Debug, Clone, Default)]
pub struct PackedB {
    /// Columns (output positions or tokens).
    pub n: usize,
    /// Depth.
    pub k: usize,
    groups: usize,
    data: Vec<u8>,
}

impl PackedA {
    /// Packs row-major `m×k` weights.
    pub fn pack(m: usize, k: usize, a: &[i8]) -> Self {
        let groups = k.div_ceil(4);
        let panels = m.div_ceil(MR);
        let mut data = vec![0i8; panels * groups * MR * 4];
        for (i, row) in a.chunks_exact(k.max(1)).take(m).enumerate() {
            let (panel, r) = (i / MR, i % MR);
            for (p, &v) in row.iter().enumerate() {
                data[((panel * groups + p / 4) * MR + r) * 4 + p % 4] = v;
            }
        }
        Self { m, k, groups, data }
    }

    /// Groups of 4 along the depth (`k` rounded up to 4, divided by 4).
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// Row panel `p`: `[k / 4][MR][4]`.
    pub(crate) fn panel(&self, p: usize) -> &[i8] {
        let len = self.groups * MR * 4;
        &self.data[p * len..(p + 1) * len]
    }
}

impl PackedB {
    /// Packs `b` given as row-major `k×n` (im2col layout), XOR-ing every byte with `flip`
    /// (0x80 turns i8 activations into u8 ones offset by 128; 0 leaves u8 alone).
    pub fn pack_kn(k: usize, n: usize, b: &[u8], flip: u8) -> Self {
        let mut packed = Self::default();
        packed.repack_kn(k, n, b, flip);
        packed
    }

    /// [`PackedB::pack_kn`] into this buffer, reusing its allocation (convolutions pack once
    /// per image; a fresh zeroed buffer each time cost more than the GEMM's inner loop).
    pub fn repack_kn(&mut self, k: usize, n: usize, b: &[u8], flip: u8) {
        let groups = k.div_ceil(4);
        let len = (n.div_ceil(NR) + 1) * groups * NR * 4;
        // Every byte of the real panels is written below; the spare panel's contents only
        // reach tile columns that are discarded, so old bytes there are harmless.
        self.data.resize(len, 0);
        (self.k, self.n, self.groups) = (k, n, groups);
        if b.len() < k * n {
            self.data.fill(0);
            return;
        }
        // Loop order follows the destination, which is written sequentially: for each panel
        // and group of 4 rows, 16 columns × 4 bytes interleaved from 4 source rows.
        for panel in 0..n.div_ceil(NR) {
            let j0 = panel * NR;
            let width = NR.min(n - j0);
            for g in 0..groups {
                let dst = &mut self.data[(panel * groups + g) * NR * 4..][..NR * 4];
                if width == NR && 4 * g + 4 <= k {
                    let row = |q: usize| -> &[u8] { &b[(4 * g + q) * n + j0..][..NR] };
                    interleave_4x16([row(0), row(1), row(2), row(3)], flip, dst);
                    continue;
                }
                // A ragged edge: zero the padding (k beyond the end must multiply as 0).
                dst.fill(0);
                for q in 0..4.min(k - 4 * g) {
                    let src = &b[(4 * g + q) * n + j0..][..width];
                    for (c, &v) in src.iter().enumerate() {
                        dst[c * 4 + q] = v ^ flip;
                    }
                }
            }
        }
    }

    /// Packs `b` given transposed, as row-major `n×k` (one token per row, as a linear layer's
    /// input); `flip` as in [`PackedB::pack_kn`].
    pub fn pack_nk(n: usize, k: usize, b: &[u8], flip: u8) -> Self {
        let mut packed = Self::zeroed(k, n);
        let groups = packed.groups;
        for (j, row) in b.chunks_exact(k.max(1)).take(n).enumerate() {
            let (panel, c) = (j / NR, j % NR);
            for (g, quad) in row.chunks(4).enumerate() {
                let at = ((panel * groups + g) * NR + c) * 4;
                for (q, &v) in quad.iter().enumerate() {
                    packed.data[at + q] = v ^ flip;
                }
            }
        }
        packed
    }

    fn zeroed(k: usize, n: usize) -> Self {
        let groups = k.div_ceil(4);
        // One spare panel lets a tile read a second panel past the end without a branch.
        let panels = n.div_ceil(NR) + 1;
        Self {
            n,
            k,
            groups,
            data: vec![0u8; panels * groups * NR * 4],
        }
    }

    fn panel(&self, p: usize) -> &[u8] {
        let len = self.groups * NR * 4;
        &self.data[p * len..(p + 1) * len]
    }
}

/// Interleaves 16 bytes from each of 4 rows into 16 columns × 4 bytes (XOR-ed with `flip`).
pub(crate) fn interleave_4x16(rows: [&[u8]; 4], flip: u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if rows.iter().all(|r| r.len() >= 16) && dst.len() >= 64 {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; every load and store stays inside the
        // slices, whose lengths were checked just above.
        unsafe {
            let f = _mm_set1_epi8(flip as i8);
            let load = |r: &[u8]| _mm_xor_si128(_mm_loadu_si128(r.as_ptr().cast()), f);
            let (a, b, c, d) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
            // a0 b0 a1 b1 ..., then (a0 b0 c0 d0) (a1 b1 c1 d1) ...: 4-byte groups per column.
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let out = dst.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(out, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
        return;
    }
    for (q, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().take(NR).enumerate() {
            dst[c * 4 + q] = v ^ flip;
        }
    }
}

/// Which tile implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QgemmKernel {
    /// Portable Rust loops.
    Scalar,
    /// AVX2: bytes widened to i16, `vpmaddwd` (exact; no `vpmaddubsw` saturation).
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`, 64 u8×i8 products per instruction.
    Avx512Vnni,
}

impl QgemmKernel {
    /// Every implementation this CPU can run, slowest first.
    pub fn available() -> Vec<QgemmKernel> {
        let mut v = vec![QgemmKernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if super::x86::has_avx2() {
                v.push(QgemmKernel::Avx2);
            }
            if super::x86::has_avx512_vnni() {
                v.push(QgemmKernel::Avx512Vnni);
            }
        }
        v
    }

    /// The fastest available implementation, detected once; `KEEN_RUNTIME_QGEMM=scalar|avx2`
    /// forces a slower one (for benchmarks and debugging).
    pub fn best() -> QgemmKernel {
        static BEST: OnceLock<QgemmKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Self::available();
            let forced = match std::env::var("KEEN_RUNTIME_QGEMM").as_deref() {
                Ok("scalar") => Some(QgemmKernel::Scalar),
                Ok("avx2") => Some(QgemmKernel::Avx2),
                _ => None,
            };
            match forced {
                Some(k) if available.contains(&k) => k,
                _ => *available.last().unwrap_or(&QgemmKernel::Scalar),
            }
        })
    }
}

/// Computes one `MR × TILE_N` tile into `out` (row-major, `TILE_N` wide).
pub(crate) fn tile(
    kernel: QgemmKernel,
    groups: usize,
    a: &[i8],
    b0: &[u8],
    b1: &[u8],
    out: &mut [i32],
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        QgemmKernel::Avx512Vnni => super::x86::tile_vnni(groups, a, b0, b1, out),
        #[cfg(target_arch = "x86_64")]
        QgemmKernel::Avx2 => super::x86::tile_avx2(groups, a, b0, b1, out),
        _ => tile_scalar(groups, a, b0, b1, out),
    }
}

/// The portable tile, on the same packed layout.
pub fn tile_scalar(groups: usize, a: &[i8], b0: &[u8], b1: &[u8], out: &mut [i32]) {
    out[..MR * TILE_N].fill(0);
    for g in 0..groups {
        let wa = &a[g * MR * 4..(g + 1) * MR * 4];
        for (half, b) in [b0, b1].into_iter().enumerate() {
            let bb = &b[g * NR * 4..(g + 1) * NR * 4];
            for r in 0..MR {
                let w = &wa[r * 4..r * 4 + 4];
                for c in 0..NR {
                    let x = &bb[c * 4..c * 4 + 4];
                    let dot: i32 = (0..4).map(|q| w[q] as i32 * x[q] as i32).sum();
                    out[r * TILE_N + half * NR + c] += dot;
                }
            }
        }
    }
}

/// Below this many multiply-adds the INT8 GEMM stays on one thread. Higher than the fp32
/// threshold ([`super::PARALLEL_MIN_MACS`]): VNNI does 2²¹ multiply-adds in ~25 µs, and waking
/// a rayon worker costs several µs (tens on a loaded machine), which made the 8–32-channel
/// layers of a batch-1 student slower on 2 threads than on 1.
pub(crate) const QGEMM_PARALLEL_MIN_MACS: usize = 1 << 21;

/// `c = a · b`, `c` row-major `a.m × b.n`. Returns `false` (computing nothing) when the depths
/// or `c`'s length disagree. Splits row panels across threads when the product is large.
pub fn qgemm(kernel: QgemmKernel, a: &PackedA, b: &PackedB, c: &mut [i32]) -> bool {
    let (m, n) = (a.m, b.n);
    if a.k != b.k || c.len() != m * n {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let groups = a.groups;
    let run_panel = |(p, rows): (usize, &mut [i32])| {
        let mut buf = [0i32; MR * TILE_N];
        let wa = a.panel(p);
        let valid_rows = rows.len() / n;
        for j in (0..n.div_ceil(NR)).step_by(2) {
            tile(kernel, groups, wa, b.panel(j), b.panel(j + 1), &mut buf);
            let col0 = j * NR;
            let width = TILE_N.min(n - col0);
            for r in 0..valid_rows {
                rows[r * n + col0..r * n + col0 + width]
                    .copy_from_slice(&buf[r * TILE_N..r * TILE_N + width]);
            }
        }
    };
    let (panels, tiles, macs) = (m.div_ceil(MR), n.div_ceil(TILE_N), m * n * a.k);
    let parallel = macs >= QGEMM_PARALLEL_MIN_MACS && super::should_parallelize(macs);
    if parallel && panels < rayon::current_num_threads() && tiles > 1 {
        // Too few row panels to keep every thread busy (8–16 output channels): split the
        // columns instead.
        qgemm_column_split(kernel, a, b, c);
    } else if parallel {
        c.par_chunks_mut(MR * n).enumerate().for_each(run_panel);
    } else {
        c.chunks_mut(MR * n).enumerate().for_each(run_panel);
    }
    true
}

/// [`qgemm`] with the tiles of `TILE_N` columns spread across threads, every thread computing
/// all the row panels of its columns. The caller has checked the shapes.
fn qgemm_column_split(kernel: QgemmKernel, a: &PackedA, b: &PackedB, c: &mut [i32]) {
    /// `c`'s base pointer, shared by tasks that write disjoint columns.
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
    let (m, n, groups) = (a.m, b.n, a.groups);
    let out = Out(c.as_mut_ptr());
    (0..n.div_ceil(TILE_N)).into_par_iter().for_each(|t| {
        let mut buf = [0i32; MR * TILE_N];
        let (j, col0) = (2 * t, t * TILE_N);
        let width = TILE_N.min(n - col0);
        for p in 0..m.div_ceil(MR) {
            tile(
                kernel,
                groups,
                a.panel(p),
                b.panel(j),
                b.panel(j + 1),
                &mut buf,
            );
            for r in 0..MR.min(m - p * MR) {
                let row = p * MR + r;
                // SAFETY: `row < m` and `col0 + width <= n`, so the range lies inside `c`
                // (`m × n`), and no other task writes columns `col0..col0 + width`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        buf.as_ptr().add(r * TILE_N),
                        out.ptr().add(row * n + col0),
                        width,
                    );
                }
            }
        }
    });
}

/// Row sums of row-major `m×k` weights: `Σ_k a[i][k]`, for the activation zero-point
/// correction `Σ (x - z)·w = Σ x·w - z·Σ w`.
pub fn row_sums(m: usize, k: usize, a: &[i8]) -> Vec<i32> {
    a.chunks_exact(k.max(1))
        .take(m)
        .map(|row| row.iter().map(|&v| v as i32).sum())
        .collect()
}

/// Views i8 activations as bytes (same size and alignment); the caller XORs them with 0x80.
pub fn i8_as_u8(v: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have identical size, alignment and validity (every bit pattern).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products large enough to run in parallel: the column split (few output channels) and
    /// the row-panel split both equal the reference, ragged edges included.
    #[test]
    fn parallel_splits_equal_reference() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (m, n, k) in [
            (8, 784 * 5 + 5, 72),
            (5, 5000, 90),
            (16, 196 * 8 + 3, 144),
            (40, 999, 77),
        ] {
            assert!(m * n * k >= QGEMM_PARALLEL_MIN_MACS);
            let a: Vec<i8> = (0..m * k).map(|_| next() as i8).collect();
            let b: Vec<u8> = (0..k * n).map(|_| next() as u8).collect();
            let want = super::super::reference::qgemm(m, n, k, &a, &b);
            let mut c = vec![0i32; m * n];
            // The test thread is not a rayon worker, so with 2+ cores the split paths run.
            let ok = qgemm(
                QgemmKernel::best(),
                &PackedA::pack(m, k, &a),
                &PackedB::pack_kn(k, n, &b, 0),
                &mut c,
            );
            assert!(ok);
            assert_eq!(c, want, "{m}x{n}x{k}");
        }
    }
}
