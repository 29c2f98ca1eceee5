//! The core of multi-head self-attention, fused: from the output of the QKV projection
//! `[N, T, 3·D]` (queries, keys, values side by side, heads contiguous within each, as burn's and
//! timm's fused `qkv` linear lays them out) to the per-head context `[N, T, D]` with heads
//! concatenated, ready for the output projection:
//! `context_h = softmax(Q_h·K_hᵀ / sqrt(D/heads)) · V_h`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::softmax::softmax_row;
use super::{Kernel, NodeInputs};
use crate::error::{op_bail, OpResult};
use crate::kernels::sgemm::{sgemm, MatRef};
use crate::tensor::{DType, Value, ValueInfo};

/// Attributes of [`crate::Op::Attention`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionAttrs {
    /// Number of heads; must divide the width D.
    pub heads: usize,
}

#[derive(Debug)]
struct AttentionKernel(usize);

impl AttentionAttrs {
    pub(crate) fn build(&self, inputs: &NodeInputs) -> OpResult<Box<dyn Kernel>> {
        inputs.expect_count(1, 1)?;
        if self.heads == 0 {
            op_bail!("heads must be at least 1");
        }
        Ok(Box::new(AttentionKernel(self.heads)))
    }
}

impl Kernel for AttentionKernel {
    fn infer(&self, inputs: &[&ValueInfo]) -> OpResult<ValueInfo> {
        let s = inputs[0].expect("qkv", DType::F32, 3)?;
        if !s[2].is_multiple_of(3 * self.0) || s[2] == 0 {
            op_bail!(
                "qkv width {} must be 3 × a multiple of the {} heads",
                s[2],
                self.0
            );
        }
        Ok(ValueInfo::new(DType::F32, vec![s[0], s[1], s[2] / 3]))
    }

    fn run(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs[0];
        let shape = self.infer(&[&x.info()])?.shape;
        let (t, d) = (shape[1], shape[2]);
        let heads = self.0;
        let hd = d / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let qkv = x.as_f32()?;
        let mut out = vec![0f32; shape.iter().product()];
        if t == 0 {
            return Ok(Value::f32(shape, out));
        }
        let failed = std::sync::atomic::AtomicBool::new(false);
        // One task per image: heads write disjoint columns of that image's output.
        let per_image = |(o, q): (&mut [f32], &[f32])| {
            let mut scores = vec![0f32; t * t];
            for h in 0..heads {
                // Q, K and V of head h are strided views into the qkv rows (row stride 3·D).
                let view = |part: usize| MatRef {
                    data: &q[part * d + h * hd..],
                    rows: t,
                    cols: hd,
                    row_stride: 3 * d,
                    col_stride: 1,
                };
                let ok = sgemm(view(0), view(1).t(), &mut scores, t, false);
                for row in 0..t {
                    let r = &mut scores[row * t..(row + 1) * t];
                    r.iter_mut().for_each(|v| *v *= scale);
                    softmax_row(r);
                }
                let ok = ok
                    && sgemm(
                        MatRef::row_major(&scores, t, t),
                        view(2),
                        &mut o[h * hd..],
                        d,
                        false,
                    );
                if !ok {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        };
        if shape[0] > 1 {
            out.par_chunks_mut(t * d)
                .zip(qkv.par_chunks(t * 3 * d))
                .for_each(per_image);
        } else {
            out.chunks_mut(t * d)
                .zip(qkv.chunks(t * 3 * d))
                .for_each(per_image);
        }
        if failed.into_inner() {
            op_bail!("internal error: GEMM shapes disagree");
        }
        Ok(Value::f32(shape, out))
    }
}
