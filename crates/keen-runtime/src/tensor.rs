//! Tensors: the public f32 [`Tensor`] that callers pass in and get back, and the internal
//! [`Value`] that also holds the INT8/UINT8/INT32 tensors flowing through quantized graphs.

use serde::{Deserialize, Serialize};

use crate::error::{OpError, OpResult, Result, RuntimeError};

/// Element types a model file can store and a graph can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// Signed 8-bit integer (weights, and activations with a signed zero point).
    I8,
    /// Unsigned 8-bit integer (activations).
    U8,
    /// Signed 32-bit integer (quantized biases).
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I8 | DType::U8 => 1,
        }
    }

    /// Lower-case name as written in model files.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense row-major f32 tensor: what [`crate::Model::run`] takes and returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `shape` over `data`; fails if the element counts differ.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected = checked_numel(&shape).ok_or_else(|| RuntimeError::ShapeData {
            shape: shape.clone(),
            expected: usize::MAX,
            found: data.len(),
        })?;
        if expected != data.len() {
            return Err(RuntimeError::ShapeData {
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable access to the values (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Index of the largest value in each row of a `[batch, classes]` tensor (`argmax` over the
    /// last axis); convenient for classifiers.
    pub fn argmax_rows(&self) -> Vec<usize> {
        let width = self.shape.last().copied().unwrap_or(0).max(1);
        self.data
            .chunks(width)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 {
                            (i, v)
                        } else {
                            best
                        }
                    })
                    .0
            })
            .collect()
    }
}

/// Product of `shape`, or `None` on overflow: sizes come from files, so never trust them.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Storage of a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    F32(Vec<f32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
}

/// A tensor of any [`DType`] flowing through the graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Value {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: Data::F32(data),
        }
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) => DType::F32,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::I32(_) => DType::I32,
        }
    }

    pub fn info(&self) -> ValueInfo {
        ValueInfo {
            dtype: self.dtype(),
            shape: self.shape.clone(),
        }
    }

    pub fn as_f32(&self) -> OpResult<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            _ => Err(OpError::new(format!("expected f32, got {}", self.dtype()))),
        }
    }

    pub fn as_i8(&self) -> OpResult<&[i8]> {
        match &self.data {
            Data::I8(v) => Ok(v),
            _ => Err(OpError::new(format!("expected i8, got {}", self.dtype()))),
        }
    }

    pub fn as_i32(&self) -> OpResult<&[i32]> {
        match &self.data {
            Data::I32(v) => Ok(v),
            _ => Err(OpError::new(format!("expected i32, got {}", self.dtype()))),
        }
    }
}

/// Static description of a value: dtype and shape (with the batch size filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl ValueInfo {
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        Self { dtype, shape }
    }

    /// Fails unless the value is `dtype` with `rank` dimensions.
    pub fn expect(&self, what: &str, dtype: DType, rank: usize) -> OpResult<&[usize]> {
        if self.dtype != dtype || self.shape.len() != rank {
            return Err(OpError::new(format!(
                "{what} must be {dtype} of rank {rank}, got {} {:?}",
                self.dtype, self.shape
            )));
        }
        Ok(&self.shape)
    }
}

impl Data {
    /// `out[i] = self[indices[i]]`; indices come from validated shapes, so they are in bounds.
    pub fn gather(&self, indices: &[usize]) -> Data {
        fn g<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i]).collect()
        }
        match self {
            Data::F32(v) => Data::F32(g(v, indices)),
            Data::I8(v) => Data::I8(g(v, indices)),
            Data::U8(v) => Data::U8(g(v, indices)),
            Data::I32(v) => Data::I32(g(v, indices)),
        }
    }
}
