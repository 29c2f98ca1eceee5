//! Batched fp32 matrix product `[.., m, k] × [.., k, n]` (or `× [k, n]`, shared by the batch),
//! with `b` optionally transposed (`[.., n, k]`) as attention's `Q·Kᵀ` needs.

use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::sgemm::{sgemm, MatRef};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::MatMul`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatMulAttrs {
    /// Read `b` as `[.., n, k]`.
    #[serde(default)]
    pub transpose_b: bool,
}

#[derive(Debug)]
struct MatMulKernel(bool);

impl MatMulAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(2, 2)?;
        Ok(Box::new(MatMulKernel(self.transpose_b)))
    }
}

/// (batch, m, k, n, b is shared) for these shapes.
fn dims(
    a: &[usize],
    b: &[usize],
    transpose_b: bool,
) -> OpResult<(usize, usize, usize, usize, bool)> {
    if a.len() < 2 || b.len() < 2 {
        op_bail!("inputs must have rank >= 2, got {a:?} and {b:?}");
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (kb, n) = if transpose_b {
        (b[b.len() - 1], b[b.len() - 2])
    } else {
        (b[b.len() - 2], b[b.len() - 1])
    };
    let shared = b.len() == 2;
    if kb != k || (!shared && a[..a.len() - 2] != b[..b.len() - 2]) {
        op_bail!("cannot multiply {a:?} by {b:?} (transpose_b {transpose_b})");
    }
    Ok((a[..a.len() - 2].iter().product(), m, k, n, shared))
}

impl Kernel for MatMulKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let (a, b) = (inputs[0], inputs[1]);
        if a.dtype != DType::F32 || b.dtype != DType::F32 {
            op_bail!("inputs must be f32");
        }
        let (_, _, _, n, _) = dims(&a.shape, &b.shape, self.0)?;
        let mut shape = a.shape.clone();
        let last = shape.len() - 1;
        shape[last] = n;
        Ok(ValueInfo::new(DType::F32, shape))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = self.infer(&[&a.info(), &b.info()])?.shape;
        let (batch, m, k, n, shared) = dims(&a.shape, &b.shape, self.0)?;
        let (av, bv) = (a.as_f32()?, b.as_f32()?);
        let mut out = vec![0f32; batch * m * n];
        for i in 0..batch {
            let am = MatRef::row_major(&av[i * m * k..(i + 1) * m * k], m, k);
            let bi = if shared { 0 } else { i };
            let bs = &bv[bi * k * n..(bi + 1) * k * n];
            let bm = if self.0 {
                MatRef::row_major(bs, n, k).t()
            } else {
                MatRef::row_major(bs, k, n)
            };
            if !sgemm(am, bm, &mut out[i * m * n..(i + 1) * m * n], n, false) {
                op_bail!("internal error: GEMM shapes disagree");
            }
        }
        Ok(Value::f32(shape, out))
    }
}
