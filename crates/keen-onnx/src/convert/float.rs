//! fp32 ops (and the data-movement ops that also carry u8/i8 codes) as plain ONNX ops.

use keen_runtime::{Activation, NodeDef, Op};

use super::{graph_err, unsupported, window_attrs, Converter, ValueInfo};
use crate::error::Result;
use crate::graph::Attr;

/// Translates a non-quantized op; returns the info of its output `out`.
pub(super) fn translate(c: &mut Converter, node: &NodeDef, out: &str) -> Result<ValueInfo> {
    let n = node.name.as_str();
    let float = |rank| ValueInfo { rank, quant: None };
    match &node.op {
        Op::Conv2d(a) => {
            let (x, _) = c.float_input(node, 0)?;
            let (w, stored) = c.stored_init(node, 1)?;
            let &[_, _, kh, kw] = stored.shape else {
                return Err(graph_err(node, "weight must be [out, in/groups, kh, kw]"));
            };
            let mut inputs = vec![x, w];
            if node.inputs.len() > 2 {
                inputs.push(c.stored_init(node, 2)?.0);
            }
            let mut attrs = window_attrs([kh, kw], a.stride, a.padding);
            attrs.push(("group", Attr::Int(a.groups as i64)));
            attrs.push(("dilations", Attr::Ints(vec![1, 1])));
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            c.op_then_activation("Conv", n, &refs, attrs, a.activation, out);
            Ok(float(4))
        }
        Op::Linear(a) => {
            let (x, rank) = c.float_input(node, 0)?;
            let stored = c.stored_tensor(node, 1)?;
            let &[features_out, features_in] = stored.shape else {
                return Err(graph_err(node, "weight must be [out, in]"));
            };
            let bias = match node.inputs.len() > 2 {
                true => Some(c.stored_init(node, 2)?.0),
                false => None,
            };
            if rank == 2 {
                let w = c.stored_init(node, 1)?.0;
                let mut inputs = vec![x.as_str(), w.as_str()];
                inputs.extend(bias.as_deref());
                let attrs = vec![("transB", Attr::Int(1))];
                c.op_then_activation("Gemm", n, &inputs, attrs, a.activation, out);
            } else {
                // MatMul wants [in, out]: store the transposed weight.
                let w = stored.f32s(&node.inputs[1])?;
                let mut wt = vec![0.0f32; w.len()];
                for o in 0..features_out {
                    for i in 0..features_in {
                        wt[i * features_out + o] = w[o * features_in + i];
                    }
                }
                let wt = c.g.init_f32(
                    &format!("{}_t", node.inputs[1]),
                    &[features_in, features_out],
                    &wt,
                );
                matmul_bias_act(c, n, &x, &wt, bias.as_deref(), a.activation, out);
            }
            Ok(float(rank))
        }
        Op::MaxPool2d(a) => {
            // Max commutes with a monotonic quantization: u8/i8 codes pool directly (ONNX
            // MaxPool accepts them since opset 12), keeping their scale and zero point.
            let (x, info) = c.input(node, 0)?;
            let attrs = window_attrs(a.kernel, a.stride, a.padding);
            c.g.node("MaxPool", n, &[&x], out, attrs);
            Ok(info)
        }
        Op::AvgPool2d(a) => {
            let (x, _) = c.float_input(node, 0)?;
            let mut attrs = window_attrs(a.kernel, a.stride, a.padding);
            attrs.push(("count_include_pad", Attr::Int(a.count_include_pad as i64)));
            c.g.node("AveragePool", n, &[&x], out, attrs);
            Ok(float(4))
        }
        Op::GlobalAvgPool(a) => {
            let (x, _) = c.float_input(node, 0)?;
            if a.keep_dims {
                c.g.node("GlobalAveragePool", n, &[&x], out, vec![]);
                return Ok(float(4));
            }
            let pooled = c.g.fresh(&format!("{n}/pooled"));
            c.g.node("GlobalAveragePool", n, &[&x], &pooled, vec![]);
            c.g.node(
                "Flatten",
                &format!("{n}/flatten"),
                &[&pooled],
                out,
                vec![("axis", Attr::Int(1))],
            );
            Ok(float(2))
        }
        Op::Add(a) => {
            let (x, rx) = c.float_input(node, 0)?;
            let (y, ry) = c.float_input(node, 1)?;
            c.op_then_activation("Add", n, &[&x, &y], vec![], a.activation, out);
            Ok(float(rx.max(ry)))
        }
        Op::Relu => {
            let (x, rank) = c.float_input(node, 0)?;
            c.g.node("Relu", n, &[&x], out, vec![]);
            Ok(float(rank))
        }
        Op::Relu6 => {
            let (x, rank) = c.float_input(node, 0)?;
            c.relu6(&x, out, n);
            Ok(float(rank))
        }
        Op::Gelu => {
            let (x, rank) = c.float_input(node, 0)?;
            gelu(c, n, &x, out);
            Ok(float(rank))
        }
        Op::Softmax(a) => {
            let (x, rank) = c.float_input(node, 0)?;
            c.g.node("Softmax", n, &[&x], out, vec![("axis", Attr::Int(a.axis))]);
            Ok(float(rank))
        }
        Op::LayerNorm(a) => {
            let (x, rank) = c.float_input(node, 0)?;
            let gamma = c.stored_init(node, 1)?.0;
            let beta = c.stored_init(node, 2)?.0;
            let attrs = vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(a.epsilon))];
            c.g.node("LayerNormalization", n, &[&x, &gamma, &beta], out, attrs);
            Ok(float(rank))
        }
        Op::BatchNorm(a) => {
            let (x, rank) = c.float_input(node, 0)?;
            let mut inputs = vec![x];
            for i in 1..5 {
                inputs.push(c.stored_init(node, i)?.0);
            }
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let attrs = vec![("epsilon", Attr::Float(a.epsilon))];
            c.g.node("BatchNormalization", n, &refs, out, attrs);
            Ok(float(rank))
        }
        Op::Flatten(a) => {
            let (x, info) = c.input(node, 0)?;
            let rank = info.rank as i64;
            let resolve = |d: i64| if d < 0 { d + rank } else { d };
            let (start, end) = (resolve(a.start_dim), resolve(a.end_dim));
            if end != rank - 1 || start < 0 || start > end {
                return Err(unsupported(
                    node,
                    &format!(
                        "only trailing axes can be flattened (start_dim {}, end_dim {} of rank {rank})",
                        a.start_dim, a.end_dim
                    ),
                ));
            }
            if start == 1 {
                c.g.node("Flatten", n, &[&x], out, vec![("axis", Attr::Int(1))]);
            } else {
                let mut shape = vec![0i64; start as usize];
                shape.push(-1);
                let shape = c.g.init_i64(&format!("{n}/shape"), &shape);
                c.g.node("Reshape", n, &[&x, &shape], out, vec![]);
            }
            Ok(ValueInfo {
                rank: start as usize + 1,
                quant: info.quant,
            })
        }
        Op::Reshape(a) => {
            let (x, info) = c.input(node, 0)?;
            let shape = c.g.init_i64(&format!("{n}/shape"), &a.shape);
            c.g.node("Reshape", n, &[&x, &shape], out, vec![]);
            Ok(ValueInfo {
                rank: a.shape.len(),
                quant: info.quant,
            })
        }
        Op::Transpose(a) => {
            let (x, info) = c.input(node, 0)?;
            let perm = a.perm.iter().map(|&p| p as i64).collect();
            c.g.node("Transpose", n, &[&x], out, vec![("perm", Attr::Ints(perm))]);
            Ok(info)
        }
        Op::Slice(a) => {
            let (x, info) = c.input(node, 0)?;
            let starts = c.g.init_i64(&format!("{n}/starts"), &[a.start as i64]);
            let ends = c.g.init_i64(&format!("{n}/ends"), &[a.end as i64]);
            let axes = c.g.init_i64(&format!("{n}/axes"), &[a.axis]);
            c.g.node("Slice", n, &[&x, &starts, &ends, &axes], out, vec![]);
            Ok(info)
        }
        Op::Concat(a) => {
            let mut inputs = Vec::new();
            let mut first: Option<ValueInfo> = None;
            for (i, name) in node.inputs.iter().enumerate() {
                if c.info(name).is_none() {
                    return Err(unsupported(
                        node,
                        &format!(
                            "input '{name}' is a stored tensor, which keen repeats along the \
                             batch; only computed values can be concatenated in ONNX so far"
                        ),
                    ));
                }
                let (x, info) = c.input(node, i)?;
                match first {
                    None => first = Some(info),
                    Some(f) if f.quant != info.quant => {
                        return Err(graph_err(
                            node,
                            "concatenates values with different quantization parameters",
                        ))
                    }
                    Some(_) => {}
                }
                inputs.push(x);
            }
            let info = first.ok_or_else(|| graph_err(node, "has no inputs"))?;
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            c.g.node("Concat", n, &refs, out, vec![("axis", Attr::Int(a.axis))]);
            Ok(info)
        }
        Op::MatMul(a) => {
            let (x, ra) = c.float_input(node, 0)?;
            let (mut y, rb) = c.float_input(node, 1)?;
            if a.transpose_b {
                if rb < 2 {
                    return Err(graph_err(node, "transpose_b needs a matrix"));
                }
                let mut perm: Vec<i64> = (0..rb as i64).collect();
                perm.swap(rb - 1, rb - 2);
                y = c.g.node_fresh(
                    "Transpose",
                    &format!("{n}/b_t"),
                    &[&y],
                    vec![("perm", Attr::Ints(perm))],
                );
            }
            c.g.node("MatMul", n, &[&x, &y], out, vec![]);
            Ok(float(ra.max(rb)))
        }
        Op::Attention(_) => Err(unsupported(
            node,
            "multi-head attention has no ONNX translation yet (export the model in fp32 to \
             keen-runtime instead)",
        )),
        other => Err(unsupported(
            node,
            &format!("{} is not a float op", other.type_name()),
        )),
    }
}

/// `act(x · w + bias)` writing `out`, for inputs of rank above 2.
pub(super) fn matmul_bias_act(
    c: &mut Converter,
    n: &str,
    x: &str,
    w: &str,
    bias: Option<&str>,
    act: Activation,
    out: &str,
) {
    match bias {
        None => {
            c.op_then_activation("MatMul", n, &[x, w], vec![], act, out);
        }
        Some(b) => {
            let product =
                c.g.node_fresh("MatMul", &format!("{n}/matmul"), &[x, w], vec![]);
            c.op_then_activation("Add", n, &[&product, b], vec![], act, out);
        }
    }
}

/// GELU with the exact erf form: `0.5 · x · (1 + erf(x / √2))` (ONNX's own Gelu op needs
/// opset 20, which fewer runtimes read).
fn gelu(c: &mut Converter, n: &str, x: &str, out: &str) {
    let sqrt2 =
        c.g.init_f32(&format!("{n}/sqrt2"), &[], &[std::f32::consts::SQRT_2]);
    let one = c.g.init_f32(&format!("{n}/one"), &[], &[1.0]);
    let half = c.g.init_f32(&format!("{n}/half"), &[], &[0.5]);
    let scaled =
        c.g.node_fresh("Div", &format!("{n}/div"), &[x, &sqrt2], vec![]);
    let erf =
        c.g.node_fresh("Erf", &format!("{n}/erf"), &[&scaled], vec![]);
    let plus =
        c.g.node_fresh("Add", &format!("{n}/add"), &[&erf, &one], vec![]);
    let times =
        c.g.node_fresh("Mul", &format!("{n}/mul"), &[x, &plus], vec![]);
    c.g.node("Mul", n, &[&times, &half], out, vec![]);
}
