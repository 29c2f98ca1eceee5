//! keen-kernels: keen's own compute kernels for training on burn's Flex CPU backend.
//!
//! Owns: convolution as im2col + GEMM with its backward pass ([`conv`]); max pooling with its
//! backward pass ([`pool`]); training-mode batch norm, optionally fused with the ReLU after it,
//! with its backward pass ([`norm`]); each fast kernel beside a plain reference loop that tests
//! compare it with; and the burn backend extensions that route [`conv2d`], [`max_pool2d`] and
//! [`batch_norm`] / [`batch_norm_relu`] to them on Flex (with and without autodiff) while every
//! other device keeps burn's own ops.
//!
//! Must not touch: models, datasets or training loops; models call [`conv2d_layer`] in place of
//! `Conv2d::forward` (and [`conv2d`] in place of `burn::tensor::module::conv2d`),
//! [`max_pool2d_layer`] in place of `MaxPool2d::forward`, and
//! [`batch_norm`] / [`batch_norm_relu`] in place of `BatchNorm::forward` (then `relu`), and stay
//! written against burn's modules.

pub mod conv;
mod error;
mod flex;
pub mod norm;
pub mod pool;
mod simd;

pub use error::KernelError;
pub use flex::{
    batch_norm, batch_norm_relu, conv2d, conv2d_layer, conv2d_options, max_pool2d,
    max_pool2d_layer, uses_keen_batch_norm, uses_keen_conv, uses_keen_max_pool,
};
