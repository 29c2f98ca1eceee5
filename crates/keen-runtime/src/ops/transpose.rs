//! Transpose: permutes axes (any dtype), `out.shape[i] = in.shape[perm[i]]`.

use serde::{Deserialize, Serialize};

use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::tensor::{Value, ValueInfo};

/// Attributes of [`crate::Op::Transpose`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransposeAttrs {
    /// A permutation of `0..rank`.
    pub perm: Vec<usize>,
}

#[derive(Debug)]
struct TransposeKernel(Vec<usize>);

impl TransposeAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        let mut seen = vec![false; self.perm.len()];
        for &p in &self.perm {
            match seen.get_mut(p) {
                Some(s) if !*s => *s = true,
                _ => op_bail!("perm {:?} is not a permutation", self.perm),
            }
        }
        Ok(Box::new(TransposeKernel(self.perm.clone())))
    }
}

impl Kernel for TransposeKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = &inputs[0].shape;
        if s.len() != self.0.len() {
            op_bail!(
                "perm {:?} does not match the input's rank {}",
                self.0,
                s.len()
            );
        }
        Ok(ValueInfo::new(
            inputs[0].dtype,
            self.0.iter().map(|&p| s[p]).collect(),
        ))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let out = self.infer(&[&x.info()])?.shape;
        let rank = out.len();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * x.shape[i + 1];
        }
        // Stride in the input of each output axis.
        let strides: Vec<usize> = self.0.iter().map(|&p| in_strides[p]).collect();
        let n: usize = out.iter().product();
        let mut indices = Vec::with_capacity(n);
        let mut index = vec![0usize; rank];
        let mut offset = 0usize;
        for _ in 0..n {
            indices.push(offset);
            for d in (0..rank).rev() {
                index[d] += 1;
                offset += strides[d];
                if index[d] < out[d] {
                    break;
                }
                offset -= strides[d] * out[d];
                index[d] = 0;
            }
        }
        Ok(Value {
            shape: out,
            data: x.data.gather(&indices),
        })
    }
}
