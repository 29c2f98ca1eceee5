//! Math kernels, kept apart from the graph: each fast kernel has a plain scalar reference in
//! [`reference`](mod@reference) and a property test comparing the two on random shapes and values.
//!
//! - [`sgemm`]: fp32 matrix multiply (the `gemm` crate's packed AVX-512/AVX2 kernels).
//! - [`qgemm`]: u8×i8→i32 matrix multiply on packed panels, with AVX-512 VNNI, AVX2 and scalar
//!   tiles chosen at run time ([`x86`] holds the SIMD tiles). See `INT8_GEMM.md`.
//! - [`implicit`]: the padded, stride-phase-split image layout of the implicit-GEMM convolutions.
//! - [`qconv`]: INT8 convolution as an implicit GEMM, packing activation panels straight from
//!   the image (no im2col matrix).
//! - [`sconv`]: the fp32 implicit-GEMM convolution (AVX-512), reading the im2col rows straight
//!   from the same padded image copy.
//! - [`im2col`]: unfolds convolution patches so convolutions run as GEMMs.
//! - [`depthwise`]: direct depthwise convolution (one filter per channel), fp32 and int8.
//! - [`sparse`]: CSR weights × dense activations, for convolutions pruned past 85% sparsity.

pub mod depthwise;
pub mod im2col;
pub mod implicit;
pub mod qconv;
pub mod qgemm;
pub mod reference;
pub mod sconv;
pub mod sgemm;
pub mod sparse;
#[cfg(target_arch = "x86_64")]
pub mod x86;

/// Below this many multiply-adds a GEMM runs on one thread: splitting costs more than it saves.
pub const PARALLEL_MIN_MACS: usize = 1 << 18;

/// True when a kernel of `macs` multiply-adds should split across threads: it is big enough,
/// there is more than one thread, and we are not already inside a parallel loop (batch
/// parallelism outside has then already used the cores).
pub fn should_parallelize(macs: usize) -> bool {
    macs >= PARALLEL_MIN_MACS
        && rayon::current_num_threads() > 1
        && rayon::current_thread_index().is_none()
}
