//! keen-kernels: keen's own compute kernels for training on burn's Flex CPU backend.
//!
//! Owns: convolution as im2col + GEMM with its backward pass ([`conv`]), each fast kernel beside
//! a plain reference loop that tests compare it with, and the burn backend extension that routes
//! [`conv2d`] to them on Flex (with and without autodiff) while every other device keeps burn's
//! own convolution.
//!
//! Must not touch: models, datasets or training loops; models call [`conv2d_layer`] in place of
//! `Conv2d::forward` (and [`conv2d`] in place of `burn::tensor::module::conv2d`) and stay written
//! against burn's modules.

pub mod conv;
mod error;
mod flex;

pub use error::KernelError;
pub use flex::{conv2d, conv2d_layer, conv2d_options, uses_keen_conv};
