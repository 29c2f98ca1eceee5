//! Runtime selection of wider vector instructions for keen's own loops.
//!
//! The crate is built for the baseline x86-64 target (SSE2), so a release binary runs on any
//! x86-64 machine; GEMM picks its AVX kernels at run time, and [`with_avx2`] lets keen's own
//! element-wise loops do the same. The loops are written in fixed lanes and without fused
//! multiply-adds (Rust never contracts `a * b + c`), so both paths give the same bits.

/// Runs `work` compiled for AVX2 where the CPU has it, for baseline x86-64 otherwise. `work`
/// and what it calls with `#[inline(always)]` are inlined into the AVX2 copy, so its loops
/// vectorise 8 f32 wide instead of 4.
#[inline(always)]
pub(crate) fn with_avx2<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { avx2(work) };
        }
    }
    work()
}
