//! keen-runtime: the deployable inference engine.
//!
//! Owns: keen's model file format, its validation, and the fp32 and INT8 kernels that run it.
//! Must not touch: burn, training, datasets. A program that links only this crate stays small.
//!
//! - [`Model`] loads a file ([`Model::load`], [`Model::from_bytes`]), checks everything (framing,
//!   JSON header, tensor bounds, op attributes, shapes through the whole graph) and runs it
//!   ([`Model::run`]) on a [`Tensor`].
//! - [`GraphBuilder`] is what exporters use to write files.
//! - [`Op`] lists the ops and their attributes; the module docs of [`ops`] give the layout
//!   conventions, [`format`](mod@format) the file layout, and `INT8_GEMM.md` the INT8 design.
//! - [`kernels`] holds the math, each fast kernel beside a scalar reference.

#![warn(missing_docs)]

mod builder;
mod error;
pub mod format;
mod graph;
pub mod kernels;
mod model;
pub mod ops;
mod tensor;

pub use builder::GraphBuilder;
pub use error::{Result, RuntimeError};
pub use format::{Header, InputDef, Metadata, NodeDef, Normalization, TensorDef};
pub use graph::MAX_ELEMENTS;
pub use model::Model;
pub use ops::{
    Activation, AddAttrs, AttentionAttrs, AvgPool2dAttrs, BatchNormAttrs, ConcatAttrs, Conv2dAttrs,
    DequantizeAttrs, FlattenAttrs, GlobalAvgPoolAttrs, LayerNormAttrs, LinearAttrs, MatMulAttrs,
    MaxPool2dAttrs, Op, QAddAttrs, QConv2dAttrs, QLinearAttrs, QuantizeAttrs, ReshapeAttrs,
    SliceAttrs, SoftmaxAttrs, TransposeAttrs,
};
pub use tensor::{DType, Tensor};
