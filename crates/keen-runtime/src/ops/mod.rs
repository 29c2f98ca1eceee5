//! Ops: one file per op (the three unary activations share one). Each op is an attribute struct
//! that serialises into the model file and a compiled `Kernel` built from it at load time,
//! once its inputs' shapes are known and its constant weights are prepared (packed, folded).
//!
//! Conventions every exporter must follow:
//! - activations are NCHW; convolution weights `[out, in/groups, kh, kw]`; linear weights
//!   `[out, in]` (PyTorch's layout: burn's `Linear` stores `[in, out]`, so transpose it);
//! - weights, biases, norms' parameters and quantization scales are stored tensors
//!   (initializers), never computed values;
//! - every op has exactly one output.

mod activation;
mod add;
mod attention;
mod avg_pool;
mod batch_norm;
mod concat;
mod conv2d;
mod dequantize;
mod flatten;
mod global_avg_pool;
mod layer_norm;
mod layout_cache;
mod linear;
mod matmul;
mod max_pool;
mod qadd;
mod qconv2d;
mod qlinear;
mod quantize;
mod requant;
mod reshape;
mod slice;
mod softmax;
mod transpose;

use serde::{Deserialize, Serialize};

pub use activation::Activation;
pub use add::AddAttrs;
pub use attention::AttentionAttrs;
pub use avg_pool::AvgPool2dAttrs;
pub use batch_norm::BatchNormAttrs;
pub use concat::ConcatAttrs;
pub use conv2d::Conv2dAttrs;
pub use dequantize::DequantizeAttrs;
pub use flatten::FlattenAttrs;
pub use global_avg_pool::GlobalAvgPoolAttrs;
pub use layer_norm::LayerNormAttrs;
pub use linear::LinearAttrs;
pub use matmul::MatMulAttrs;
pub use max_pool::MaxPool2dAttrs;
pub use qadd::QAddAttrs;
pub use qconv2d::QConv2dAttrs;
pub use qlinear::QLinearAttrs;
pub use quantize::QuantizeAttrs;
pub use reshape::ReshapeAttrs;
pub use slice::SliceAttrs;
pub use softmax::SoftmaxAttrs;
pub use transpose::TransposeAttrs;

use crate::error::{op_bail, OpResult};
use crate::tensor::{DType, Value, ValueInfo};

/// Every op keen-runtime runs, with its attributes. In a model file a node reads
/// `{"name": ..., "op": "Conv2d", "attrs": {...}, "inputs": [...], "outputs": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "attrs")]
pub enum Op {
    /// 2-D convolution; inputs `[x, weight, bias?]`.
    Conv2d(Conv2dAttrs),
    /// `y = x·Wᵀ + b` over the last axis; inputs `[x, weight [out, in], bias?]`.
    Linear(LinearAttrs),
    /// Max pooling; input `[N, C, H, W]` of f32, u8 or i8.
    MaxPool2d(MaxPool2dAttrs),
    /// Average pooling; input `[N, C, H, W]` f32.
    AvgPool2d(AvgPool2dAttrs),
    /// Mean over H and W: `[N, C, H, W]` → `[N, C]` (or `[N, C, 1, 1]` with `keep_dims`).
    GlobalAvgPool(GlobalAvgPoolAttrs),
    /// Elementwise sum with NumPy broadcasting and an optional fused activation.
    Add(AddAttrs),
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x·Φ(x)` with the exact erf form (burn's and PyTorch's default).
    Gelu,
    /// Softmax along one axis.
    Softmax(SoftmaxAttrs),
    /// Layer normalisation over the last axis; inputs `[x, gamma, beta]`.
    LayerNorm(LayerNormAttrs),
    /// Inference batch norm over axis 1; inputs `[x, gamma, beta, running_mean, running_var]`.
    BatchNorm(BatchNormAttrs),
    /// Merges the axes `start_dim..=end_dim` into one.
    Flatten(FlattenAttrs),
    /// Reshape to a target shape (`0` copies an input axis, `-1` is inferred).
    Reshape(ReshapeAttrs),
    /// Permutes the axes.
    Transpose(TransposeAttrs),
    /// Concatenation along an axis; an input whose leading axis is 1 is repeated to the batch.
    Concat(ConcatAttrs),
    /// `x[.., start..end, ..]` along one axis.
    Slice(SliceAttrs),
    /// Batched matrix product `[.., m, k] × [.., k, n]`.
    MatMul(MatMulAttrs),
    /// Multi-head self-attention core: `qkv [N, T, 3·D]` → `[N, T, D]`.
    Attention(AttentionAttrs),
    /// f32 → u8/i8: `q = clamp(round_half_even(x / scale) + zero_point)`.
    QuantizeLinear(QuantizeAttrs),
    /// u8/i8 → f32: `x = (q - zero_point) · scale`.
    DequantizeLinear(DequantizeAttrs),
    /// INT8 convolution; inputs `[x_q, weight_i8, weight_scales_f32, bias_i32?]`.
    QConv2d(QConv2dAttrs),
    /// INT8 linear layer; inputs `[x_q, weight_i8 [out, in], weight_scales_f32, bias_i32?]`.
    QLinear(QLinearAttrs),
    /// Quantized residual sum; inputs `[a_q, b_q]` of the same shape.
    QAdd(QAddAttrs),
}

impl Op {
    /// The op's type name as written in files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "Conv2d",
            Op::Linear(_) => "Linear",
            Op::MaxPool2d(_) => "MaxPool2d",
            Op::AvgPool2d(_) => "AvgPool2d",
            Op::GlobalAvgPool(_) => "GlobalAvgPool",
            Op::Add(_) => "Add",
            Op::Relu => "Relu",
            Op::Relu6 => "Relu6",
            Op::Gelu => "Gelu",
            Op::Softmax(_) => "Softmax",
            Op::LayerNorm(_) => "LayerNorm",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Flatten(_) => "Flatten",
            Op::Reshape(_) => "Reshape",
            Op::Transpose(_) => "Transpose",
            Op::Concat(_) => "Concat",
            Op::Slice(_) => "Slice",
            Op::MatMul(_) => "MatMul",
            Op::Attention(_) => "Attention",
            Op::QuantizeLinear(_) => "QuantizeLinear",
            Op::DequantizeLinear(_) => "DequantizeLinear",
            Op::QConv2d(_) => "QConv2d",
            Op::QLinear(_) => "QLinear",
            Op::QAdd(_) => "QAdd",
        }
    }

    /// Checks the attributes against the inputs and prepares the kernel (packing weights).
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        match self {
            Op::Conv2d(a) => a.build(inputs),
            Op::Linear(a) => a.build(inputs),
            Op::MaxPool2d(a) => a.build(inputs),
            Op::AvgPool2d(a) => a.build(inputs),
            Op::GlobalAvgPool(a) => a.build(inputs),
            Op::Add(a) => a.build(inputs),
            Op::Relu => activation::build(inputs, activation::Unary::Relu),
            Op::Relu6 => activation::build(inputs, activation::Unary::Relu6),
            Op::Gelu => activation::build(inputs, activation::Unary::Gelu),
            Op::Softmax(a) => a.build(inputs),
            Op::LayerNorm(a) => a.build(inputs),
            Op::BatchNorm(a) => a.build(inputs),
            Op::Flatten(a) => a.build(inputs),
            Op::Reshape(a) => a.build(inputs),
            Op::Transpose(a) => a.build(inputs),
            Op::Concat(a) => a.build(inputs),
            Op::Slice(a) => a.build(inputs),
            Op::MatMul(a) => a.build(inputs),
            Op::Attention(a) => a.build(inputs),
            Op::QuantizeLinear(a) => a.build(inputs),
            Op::DequantizeLinear(a) => a.build(inputs),
            Op::QConv2d(a) => a.build(inputs),
            Op::QLinear(a) => a.build(inputs),
            Op::QAdd(a) => a.build(inputs),
        }
    }
}

/// A compiled op, ready to run.
pub(crate) trait Kernel: Send + Sync + std::fmt::Debug {
    /// The output's dtype and shape for these inputs (all of the node's inputs, constants
    /// included); errors when they do not fit the op.
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo>;
    /// Computes the output. `infer` has accepted these inputs' shapes.
    fn run(&self, inputs: &[&Value]) -> OpResult<Value>;
}

/// What an op sees of its inputs while it is built: their dtypes and shapes, and the stored
/// value of those that are constants.
pub(crate) struct NodeInputs<'a> {
    pub infos: Vec<&'a ValueInfo>,
    pub consts: Vec<Option<&'a Value>>,
}

impl<'a> NodeInputs<'a> {
    /// Fails unless the node has between `min` and `max` inputs.
    pub fn expect_count(&self, min: usize, max: usize) -> OpResult<()> {
        let n = self.infos.len();
        if n < min || n > max {
            if min == max {
                op_bail!("expects {min} inputs, got {n}");
            }
            op_bail!("expects {min} to {max} inputs, got {n}");
        }
        Ok(())
    }

    /// The stored value of input `i`, which must be a constant of `dtype`.
    pub fn constant(&self, i: usize, what: &str, dtype: DType) -> OpResult<&'a Value> {
        match self.consts.get(i).copied().flatten() {
            Some(v) if v.dtype() == dtype => Ok(v),
            Some(v) => op_bail!("{what} (input {i}) must be {dtype}, got {}", v.dtype()),
            None => op_bail!("{what} (input {i}) must be a stored tensor"),
        }
    }

    /// Input `i`'s dtype and shape.
    pub fn info(&self, i: usize) -> OpResult<&'a ValueInfo> {
        match self.infos.get(i) {
            Some(info) => Ok(info),
            None => op_bail!("missing input {i}"),
        }
    }
}

/// Fails unless `v` has `len` elements and its shape is `[len]`.
pub(crate) fn expect_vector(v: &Value, what: &str, len: usize) -> OpResult<()> {
    if v.shape != [len] {
        op_bail!("{what} must have shape [{len}], got {:?}", v.shape);
    }
    Ok(())
}

/// Resolves a possibly negative axis against `rank`.
pub(crate) fn resolve_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        op_bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}

/// Runs `f` over the images of a batch in parallel when there are several, sequentially (with
/// the kernels free to split each image) when there is one.
pub(crate) fn for_each_image<T: Send, U: Sync>(
    out: &mut [T],
    out_per_image: usize,
    input: &[U],
    in_per_image: usize,
    f: impl Fn(&mut [T], &[U]) + Send + Sync,
) {
    use rayon::prelude::*;
    if out_per_image == 0 || in_per_image == 0 {
        return;
    }
    let batch = out.len() / out_per_image;
    if batch > 1 && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(out_per_image)
            .zip(input.par_chunks(in_per_image))
            .for_each(|(o, i)| f(o, i));
    } else {
        out.chunks_mut(out_per_image)
            .zip(input.chunks(in_per_image))
            .for_each(|(o, i)| f(o, i));
    }
}

thread_local! {
    static SCRATCH_F32: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static SCRATCH_I32: std::cell::Cell<Vec<i32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Lends `f` a per-thread buffer of `len` elements, reused across calls so that large im2col
/// buffers are not freshly mapped (and page-faulted) for every image. Contents are unspecified.
macro_rules! scratch_fn {
    ($name:ident, $cell:ident, $t:ty) => {
        pub(crate) fn $name<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
            // Taking the buffer out (not borrowing it) keeps a nested call safe: it just gets
            // a fresh buffer.
            let mut buf = $cell.with(|c| c.take());
            if buf.len() < len {
                buf.resize(len, Default::default());
            }
            let result = f(&mut buf[..len]);
            $cell.with(|c| c.set(buf));
            result
        }
    };
}
scratch_fn!(with_scratch_f32, SCRATCH_F32, f32);
scratch_fn!(with_scratch_i32, SCRATCH_I32, i32);
