//! 2-D convolution (groups = 1) on f32 NCHW buffers: the shape, the plain reference loops and
//! the im2col + GEMM kernels that training uses.

mod geometry;
pub mod im2col_gemm;
pub mod reference;

pub use geometry::Conv2dGeometry;
