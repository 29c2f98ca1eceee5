//! Sparse × dense fp32 product for pruned weights: a weight matrix stored as CSR (only the
//! non-zeros) times a dense row-major matrix. Each non-zero `w[i][p]` adds `w · b[p][..]` to
//! output row `i`, a contiguous axpy the compiler vectorises, so the work is
//! `nnz · n` instead of `m · k · n`. It beats the dense GEMM only at high sparsity (see
//! [`SPARSE_MAX_DENSITY`]); convolutions pick it per layer at load time.

use super::sgemm::MatRef;

/// Weight density (non-zeros / size) at or below which the sparse path is used. Measured on
/// cnn-small's second convolution (64×288 weights × 196 columns, one core): 10% dense runs in
/// 45% of the dense GEMM's time, 20% dense breaks even, so the switch sits a little below.
pub const SPARSE_MAX_DENSITY: f32 = 0.15;

/// A row-major sparse matrix in compressed sparse row form.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` indexes row `i`'s entries.
    row_ptr: Vec<usize>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// The non-zeros of row-major `rows × cols` `dense`.
    pub fn from_dense(rows: usize, cols: usize, dense: &[f32]) -> Self {
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let (mut col_idx, mut values) = (Vec::new(), Vec::new());
        row_ptr.push(0);
        for row in dense.chunks_exact(cols.max(1)).take(rows) {
            for (p, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    col_idx.push(p as u32);
                    values.push(v);
                }
            }
            row_ptr.push(values.len());
        }
        row_ptr.resize(rows + 1, values.len());
        Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        }
    }

    /// Fraction of entries that are non-zero.
    pub fn density(&self) -> f32 {
        self.values.len() as f32 / (self.rows * self.cols).max(1) as f32
    }

    /// `c = self · b`, `b` row-major `cols × n`, `c` row-major `rows × n`. Returns `false`
    /// (computing nothing) when the shapes disagree.
    pub fn matmul(&self, b: MatRef, c: &mut [f32]) -> bool {
        let n = b.cols;
        if b.rows != self.cols
            || b.col_stride != 1
            || c.len() < self.rows * n
            || (self.cols > 0 && b.data.len() < (self.cols - 1) * b.row_stride + n)
        {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F was detected just above.
            unsafe { self.rows_avx512(b, c) };
            return true;
        }
        self.rows(b, c);
        true
    }

    /// [`CsrMatrix::rows`] compiled for AVX-512 (the crate's baseline is SSE2).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_avx512(&self, b: MatRef, c: &mut [f32]) {
        self.rows(b, c);
    }

    /// Output rows in strips of [`STRIP`] columns kept in registers across all of the row's
    /// non-zeros, so each non-zero costs one load of `b` per vector, not a load and a store of
    /// the output too.
    #[inline(always)]
    fn rows(&self, b: MatRef, c: &mut [f32]) {
        let n = b.cols;
        for (i, out) in c.chunks_exact_mut(n.max(1)).take(self.rows).enumerate() {
            let entries = self.row_ptr[i]..self.row_ptr[i + 1];
            let (idx, vals) = (&self.col_idx[entries.clone()], &self.values[entries]);
            let mut j = 0;
            while j < n {
                let width = STRIP.min(n - j);
                let mut acc = [0f32; STRIP];
                for (&p, &w) in idx.iter().zip(vals) {
                    let src = &b.data[p as usize * b.row_stride + j..][..width];
                    if width == STRIP {
                        let src: &[f32; STRIP] = src.try_into().unwrap_or(&[0.0; STRIP]);
                        acc.iter_mut().zip(src).for_each(|(a, &x)| *a += w * x);
                    } else {
                        acc.iter_mut().zip(src).for_each(|(a, &x)| *a += w * x);
                    }
                }
                out[j..j + width].copy_from_slice(&acc[..width]);
                j += width;
            }
        }
    }
}

/// Output columns per register strip: four 16-lane AVX-512 vectors.
const STRIP: usize = 64;
