//! Quantized ops in QDQ form: every quantized op becomes `DequantizeLinear` on its inputs, the
//! float op, its activation and a `QuantizeLinear` of the output — the pattern ONNX Runtime's
//! QDQ optimizer fuses into `QLinearConv`, `QGemm`, `QLinearAdd`.
//!
//! - activations: u8/i8 codes with a scalar scale and zero point (per tensor);
//! - weights: int8 initializers dequantized per output channel (`axis`, zero points 0);
//! - biases: int32 initializers at scale `input_scale · weight_scale[c]`, zero point 0 —
//!   exactly keen-runtime's convention, so the ONNX graph computes what keen-runtime computes
//!   up to float rounding at requantization;
//! - every use of a quantized value gets its own `DequantizeLinear` (ONNX Runtime fuses a group
//!   only when its DQ nodes have a single consumer).

use keen_runtime::{Activation, DType, NodeDef, Op};

use super::float::matmul_bias_act;
use super::{graph_err, unsupported, window_attrs, Converter, QParams, ValueInfo};
use crate::error::Result;
use crate::graph::Attr;
use crate::stored::Stored;

/// Translates a quantized op; returns the info of its output `out`.
pub(super) fn translate(c: &mut Converter, node: &NodeDef, out: &str) -> Result<ValueInfo> {
    let n = node.name.as_str();
    match &node.op {
        Op::QuantizeLinear(a) => {
            let (x, rank) = c.float_input(node, 0)?;
            let q = QParams {
                scale: a.scale,
                zero_point: a.zero_point,
                dtype: a.dtype,
            };
            quantize(c, n, &x, q, out);
            Ok(ValueInfo {
                rank,
                quant: Some(q),
            })
        }
        Op::DequantizeLinear(a) => {
            let (x, info) = c.input(node, 0)?;
            let Some(q_in) = info.quant else {
                return Err(graph_err(node, "dequantizes a value that is not quantized"));
            };
            let q = QParams {
                scale: a.scale,
                zero_point: a.zero_point,
                dtype: q_in.dtype,
            };
            dequantize_into(c, n, &x, q, out);
            Ok(ValueInfo {
                rank: info.rank,
                quant: None,
            })
        }
        Op::QConv2d(a) => {
            let (x, info) = quant_input(c, node)?;
            let q_in = QParams {
                scale: a.input_scale,
                zero_point: a.input_zero_point,
                dtype: info.dtype,
            };
            let x_f = dequantize(c, n, &x, q_in, "x");
            let weight = c.stored_tensor(node, 1)?;
            let &[channels, _, kh, kw] = weight.shape else {
                return Err(graph_err(node, "weight must be [out, in/groups, kh, kw]"));
            };
            let (w_f, scales) = weight_dq(c, node, channels, None)?;
            let mut inputs = vec![x_f, w_f];
            if node.inputs.len() > 3 {
                inputs.push(bias_dq(c, node, a.input_scale, &scales)?);
            }
            let mut attrs = window_attrs([kh, kw], a.stride, a.padding);
            attrs.push(("group", Attr::Int(a.groups as i64)));
            attrs.push(("dilations", Attr::Ints(vec![1, 1])));
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let y = c.g.fresh(&format!("{n}/conv"));
            c.g.node("Conv", n, &refs, &y, attrs);
            let q_out = QParams {
                scale: a.output_scale,
                zero_point: a.output_zero_point,
                dtype: a.output_dtype,
            };
            activation_then_quantize(c, n, &y, a.activation, q_out, out);
            Ok(ValueInfo {
                rank: 4,
                quant: Some(q_out),
            })
        }
        Op::QLinear(a) => {
            let (x, info) = quant_input(c, node)?;
            let rank = c.info(&node.inputs[0]).map_or(2, |i| i.rank);
            let q_in = QParams {
                scale: a.input_scale,
                zero_point: a.input_zero_point,
                dtype: info.dtype,
            };
            let x_f = dequantize(c, n, &x, q_in, "x");
            let weight = c.stored_tensor(node, 1)?;
            let &[features_out, features_in] = weight.shape else {
                return Err(graph_err(node, "weight must be [out, in]"));
            };
            let transposed = (rank != 2).then_some(features_in);
            let (w_f, scales) = weight_dq(c, node, features_out, transposed)?;
            let bias = match node.inputs.len() > 3 {
                true => Some(bias_dq(c, node, a.input_scale, &scales)?),
                false => None,
            };
            let y = c.g.fresh(&format!("{n}/linear"));
            if rank == 2 {
                let mut inputs = vec![x_f.as_str(), w_f.as_str()];
                inputs.extend(bias.as_deref());
                c.g.node("Gemm", n, &inputs, &y, vec![("transB", Attr::Int(1))]);
            } else {
                matmul_bias_act(c, n, &x_f, &w_f, bias.as_deref(), Activation::None, &y);
            }
            let q_out = QParams {
                scale: a.output_scale,
                zero_point: a.output_zero_point,
                dtype: a.output_dtype,
            };
            activation_then_quantize(c, n, &y, a.activation, q_out, out);
            Ok(ValueInfo {
                rank,
                quant: Some(q_out),
            })
        }
        Op::QAdd(a) => {
            let (x, ix) = c.input(node, 0)?;
            let (y, iy) = c.input(node, 1)?;
            let (Some(qx), Some(qy)) = (ix.quant, iy.quant) else {
                return Err(graph_err(node, "both inputs of QAdd must be quantized"));
            };
            let a_q = QParams {
                scale: a.a_scale,
                zero_point: a.a_zero_point,
                dtype: qx.dtype,
            };
            let b_q = QParams {
                scale: a.b_scale,
                zero_point: a.b_zero_point,
                dtype: qy.dtype,
            };
            let x_f = dequantize(c, n, &x, a_q, "a");
            let y_f = dequantize(c, n, &y, b_q, "b");
            let sum = c.g.fresh(&format!("{n}/add"));
            c.g.node("Add", n, &[&x_f, &y_f], &sum, vec![]);
            let q_out = QParams {
                scale: a.output_scale,
                zero_point: a.output_zero_point,
                dtype: a.output_dtype,
            };
            activation_then_quantize(c, n, &sum, a.activation, q_out, out);
            Ok(ValueInfo {
                rank: ix.rank.max(iy.rank),
                quant: Some(q_out),
            })
        }
        other => Err(unsupported(
            node,
            &format!("{} is not a quantized op", other.type_name()),
        )),
    }
}

/// Input 0 of a quantized op: a value holding u8/i8 codes.
fn quant_input(c: &mut Converter, node: &NodeDef) -> Result<(String, QParams)> {
    let (x, info) = c.input(node, 0)?;
    match info.quant {
        Some(q) => Ok((x, q)),
        None => Err(graph_err(
            node,
            &format!("input '{x}' must hold quantized codes, but it is f32"),
        )),
    }
}

/// Scalar scale and zero point initializers of `q`.
fn qparam_inits(c: &mut Converter, base: &str, q: QParams) -> (String, String) {
    let scale = c.g.init_f32(&format!("{base}_scale"), &[], &[q.scale]);
    let zp =
        c.g.init_zero_points(&format!("{base}_zero_point"), q.dtype, &[], &[q.zero_point]);
    (scale, zp)
}

/// `QuantizeLinear(x)` writing `out`.
fn quantize(c: &mut Converter, n: &str, x: &str, q: QParams, out: &str) {
    let (scale, zp) = qparam_inits(c, out, q);
    c.g.node("QuantizeLinear", n, &[x, &scale, &zp], out, vec![]);
}

/// `DequantizeLinear(x)` writing `out`.
fn dequantize_into(c: &mut Converter, n: &str, x: &str, q: QParams, out: &str) {
    let (scale, zp) = qparam_inits(c, x, q);
    c.g.node("DequantizeLinear", n, &[x, &scale, &zp], out, vec![]);
}

/// A fresh `DequantizeLinear` of `x` for node `n`'s input `what`; returns the float value.
fn dequantize(c: &mut Converter, n: &str, x: &str, q: QParams, what: &str) -> String {
    let out = c.g.fresh(&format!("{n}/{what}_dq"));
    dequantize_into(c, &format!("{n}/{what}_dq"), x, q, &out);
    out
}

/// `QuantizeLinear(act(y))` writing `out`. A fused ReLU clamps at the output zero point and a
/// ReLU6 also at `zero_point + round(6 / scale)` in keen-runtime; `Relu`/`Clip` before the
/// quantization give the same codes (and ONNX Runtime folds them into the quantization).
fn activation_then_quantize(
    c: &mut Converter,
    n: &str,
    y: &str,
    act: Activation,
    q: QParams,
    out: &str,
) {
    let y = match act {
        Activation::None => y.to_string(),
        _ => {
            let activated = c.g.fresh(&format!("{n}/act"));
            c.activation(act, y, &activated, n)
        }
    };
    quantize(c, &format!("{n}/quantize"), &y, q, out);
}

/// The int8 weight (input 1) as an initializer, dequantized per output channel with the scales
/// of input 2; with `transposed = Some(in)` a `[out, in]` weight is stored as `[in, out]`
/// (axis 1) for MatMul. Returns the float weight's name and the scales.
fn weight_dq(
    c: &mut Converter,
    node: &NodeDef,
    channels: usize,
    transposed: Option<usize>,
) -> Result<(String, Vec<f32>)> {
    let n = node.name.as_str();
    let weight: Stored = c.stored_tensor(node, 1)?;
    if weight.dtype != DType::I8 {
        return Err(graph_err(node, "the weight must be i8"));
    }
    let scales_name = node.inputs[2].clone();
    let scales = c.stored_tensor(node, 2)?.f32s(&scales_name)?;
    if scales.len() != channels {
        return Err(graph_err(
            node,
            "one weight scale per output channel expected",
        ));
    }
    let (w, axis) = match transposed {
        None => (c.stored_init(node, 1)?.0, 0),
        Some(features_in) => {
            let mut t = vec![0u8; weight.raw.len()];
            for o in 0..channels {
                for i in 0..features_in {
                    t[i * channels + o] = weight.raw[o * features_in + i];
                }
            }
            let name = c.g.init_raw(
                &format!("{}_t", node.inputs[1]),
                DType::I8,
                &[features_in, channels],
                t,
            );
            (name, 1)
        }
    };
    let scale = c.stored_init(node, 2)?.0;
    let zp = c.g.init_zero_points(
        &format!("{}_zero_point", node.inputs[1]),
        DType::I8,
        &[channels],
        &vec![0; channels],
    );
    let w_f = c.g.fresh(&format!("{n}/w_dq"));
    c.g.node(
        "DequantizeLinear",
        &format!("{n}/w_dq"),
        &[&w, &scale, &zp],
        &w_f,
        vec![("axis", Attr::Int(axis))],
    );
    Ok((w_f, scales))
}

/// The int32 bias (input 3) dequantized at scale `input_scale · weight_scale[c]`.
fn bias_dq(
    c: &mut Converter,
    node: &NodeDef,
    input_scale: f32,
    weight_scales: &[f32],
) -> Result<String> {
    let n = node.name.as_str();
    let (b, stored) = c.stored_init(node, 3)?;
    if stored.dtype != DType::I32 || stored.shape != [weight_scales.len()] {
        return Err(graph_err(
            node,
            "the bias must be i32, one per output channel",
        ));
    }
    let scales: Vec<f32> = weight_scales.iter().map(|s| input_scale * s).collect();
    let channels = scales.len();
    let scale = c.g.init_f32(&format!("{b}_scale"), &[channels], &scales);
    let zp = c.g.init_zero_points(
        &format!("{b}_zero_point"),
        DType::I32,
        &[channels],
        &vec![0; channels],
    );
    let b_f = c.g.fresh(&format!("{n}/b_dq"));
    c.g.node(
        "DequantizeLinear",
        &format!("{n}/b_dq"),
        &[&b, &scale, &zp],
        &b_f,
        vec![("axis", Attr::Int(0))],
    );
    Ok(b_f)
}
