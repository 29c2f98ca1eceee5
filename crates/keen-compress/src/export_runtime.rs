//! Export of a graph to keen-runtime's model format, in fp32 or INT8.
//!
//! fp32: batch norms folded, activations fused into the convolution, linear layer or addition
//! before them. INT8 (a graph with fake quantization on): the input is quantized once; every
//! convolution becomes a `QConv2d` (INT8 weights per output channel, i32 bias at scale
//! `s_in·s_w`, requantized to the next quantization point's UINT8 range with the activation
//! fused), residual additions `QAdd`, max pooling and flattening run on the UINT8 codes, global
//! average pooling dequantizes and requantizes, and the classifier runs in float on dequantized
//! features with its weights rounded to their INT8 values — exactly what the fake-quantized graph
//! computes.

use std::collections::BTreeMap;

use burn::prelude::*;
use keen_models::graph::quant::{affine_qparams, WEIGHT_QMAX};
use keen_models::graph::{layer_slots, quant_points, GraphNet, OpDef, ValueId};
use keen_runtime::{
    Activation, AddAttrs, Conv2dAttrs, DType as RtType, DequantizeAttrs, FlattenAttrs,
    GlobalAvgPoolAttrs, GraphBuilder, LinearAttrs, MaxPool2dAttrs, Op, QAddAttrs, QConv2dAttrs,
    QuantizeAttrs,
};

use crate::fold::fold_batch_norms;
use crate::CompressError;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

fn rt(e: keen_runtime::RuntimeError) -> CompressError {
    CompressError::BadConfig(format!("runtime export: {e}"))
}

/// The activation fused into node `i`, and the value that carries its (activated) output.
fn fused(graph: &GraphNet, i: usize) -> (Activation, ValueId) {
    let def = graph.graph();
    let consumers = def.consumers(i + 1);
    if consumers.len() == 1 && def.output != i + 1 {
        match def.nodes[consumers[0]].op {
            OpDef::Relu => return (Activation::Relu, consumers[0] + 1),
            OpDef::Relu6 => return (Activation::Relu6, consumers[0] + 1),
            _ => {}
        }
    }
    (Activation::None, i + 1)
}

/// Symmetric INT8 weights per output channel (dimension 0 of `[out, rest]`) and their scales.
fn quantize_weights(weights: &[f32], out: usize) -> (Vec<i8>, Vec<f32>) {
    let per = weights.len() / out.max(1);
    let mut q = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(out);
    for row in weights.chunks(per.max(1)) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = (max / WEIGHT_QMAX).max(1e-12);
        scales.push(scale);
        q.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-WEIGHT_QMAX, WEIGHT_QMAX) as i8),
        );
    }
    (q, scales)
}

/// Writes `graph` (folded first) as a keen-runtime model: INT8 when its fake quantization is
/// on, fp32 otherwise. `class_names` and the normalisation go into the file's metadata.
pub fn to_runtime(
    graph: &GraphNet,
    class_names: Vec<String>,
    normalization: Option<(Vec<f32>, Vec<f32>)>,
) -> Result<GraphBuilder, CompressError> {
    let int8 = graph.quant_state().config.enabled;
    if int8 && !graph.quant_state().config.float_nodes.is_empty() {
        return Err(CompressError::BadConfig(
            "layers kept in float by a sensitivity scan cannot be exported to the runtime yet"
                .into(),
        ));
    }
    let (graph, _) = fold_batch_norms(graph.valid());
    let def = graph.graph().clone();
    let slots = layer_slots(&def);
    let points = quant_points(&def);
    let ranges = graph.quant_state().ranges();
    let qparams = |value: ValueId| -> Result<(f32, i32), CompressError> {
        let range = ranges.get(value).copied().flatten().ok_or_else(|| {
            CompressError::BadConfig(format!("value {value} has no calibrated range"))
        })?;
        let (scale, zp) = affine_qparams(range);
        Ok((scale, zp as i32))
    };
    let mut b = GraphBuilder::new();
    b.class_names(class_names);
    if let Some((mean, std)) = normalization {
        b.normalization(mean, std);
    }
    let input = b.input_batched("input", &def.input);
    // Runtime name of each value; for INT8, which quant point's codes it holds (None = f32).
    let mut names: BTreeMap<ValueId, String> = BTreeMap::new();
    let mut codes: BTreeMap<ValueId, Option<ValueId>> = BTreeMap::new();
    if int8 {
        let (scale, zero_point) = qparams(0)?;
        let q = b.op(
            "input_q",
            Op::QuantizeLinear(QuantizeAttrs {
                scale,
                zero_point,
                dtype: RtType::U8,
            }),
            &[&input],
        );
        names.insert(0, q);
        codes.insert(0, Some(0));
    } else {
        names.insert(0, input);
        codes.insert(0, None);
    }
    // A float result that is a quantization point goes back to UINT8 codes.
    let requantize = |b: &mut GraphBuilder,
                      out: String,
                      value: ValueId|
     -> Result<(String, Option<ValueId>), CompressError> {
        if !(int8 && points[value]) {
            return Ok((out, None));
        }
        let (scale, zero_point) = qparams(value)?;
        let q = b.op(
            &format!("{out}_q"),
            Op::QuantizeLinear(QuantizeAttrs {
                scale,
                zero_point,
                dtype: RtType::U8,
            }),
            &[&out],
        );
        Ok((q, Some(value)))
    };
    let mut skip = vec![false; def.nodes.len()];
    for (i, node) in def.nodes.iter().enumerate() {
        if skip[i] {
            continue;
        }
        let name = node.name.clone();
        let x = node.inputs[0];
        let x_name = names
            .get(&x)
            .cloned()
            .ok_or_else(|| CompressError::BadConfig(format!("value {x} not exported")))?;
        let x_code = codes.get(&x).copied().flatten();
        // Float view of the input (dequantizing codes when needed).
        let float_input = |b: &mut GraphBuilder,
                           value: ValueId,
                           n: &str,
                           code: Option<ValueId>|
         -> Result<String, CompressError> {
            match code {
                None => Ok(n.to_string()),
                Some(point) => {
                    let (scale, zero_point) = qparams(point)?;
                    Ok(b.op(
                        &format!("{}_dq{value}", node.name),
                        Op::DequantizeLinear(DequantizeAttrs { scale, zero_point }),
                        &[n],
                    ))
                }
            }
        };
        match &node.op {
            OpDef::Conv2d {
                stride,
                padding,
                groups,
                ..
            } => {
                let conv = &graph.convs[slots[i]];
                let w = values(conv.weight.val());
                let dims = conv.weight.dims();
                let bias = conv.bias.as_ref().map(|p| values(p.val()));
                let (activation, out_value) = fused(&graph, i);
                if out_value != i + 1 {
                    skip[out_value - 1] = true;
                }
                let pad = [padding[0], padding[1], padding[0], padding[1]];
                if int8 {
                    let in_point = x_code.ok_or_else(|| {
                        CompressError::BadConfig(format!("'{name}' reads a float value"))
                    })?;
                    let (in_scale, in_zp) = qparams(in_point)?;
                    let (out_scale, out_zp) = qparams(out_value)?;
                    let (wq, scales) = quantize_weights(&w, dims[0]);
                    let wn = b
                        .tensor_i8(&format!("{name}.weight"), dims.to_vec(), wq)
                        .map_err(rt)?;
                    let sn = b
                        .tensor_f32(&format!("{name}.scales"), vec![dims[0]], scales.clone())
                        .map_err(rt)?;
                    let mut inputs = vec![x_name.clone(), wn, sn];
                    if let Some(bias) = bias {
                        let bq: Vec<i32> = bias
                            .iter()
                            .zip(&scales)
                            .map(|(b, s)| (b / (in_scale * s)).round() as i32)
                            .collect();
                        inputs.push(
                            b.tensor_i32(&format!("{name}.bias"), vec![dims[0]], bq)
                                .map_err(rt)?,
                        );
                    }
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    let out = b.op(
                        &name,
                        Op::QConv2d(QConv2dAttrs {
                            stride: *stride,
                            padding: pad,
                            groups: *groups,
                            activation,
                            input_scale: in_scale,
                            input_zero_point: in_zp,
                            output_scale: out_scale,
                            output_zero_point: out_zp,
                            output_dtype: RtType::U8,
                        }),
                        &refs,
                    );
                    names.insert(out_value, out);
                    codes.insert(out_value, Some(out_value));
                } else {
                    let wn = b
                        .tensor_f32(&format!("{name}.weight"), dims.to_vec(), w)
                        .map_err(rt)?;
                    let mut inputs = vec![x_name.clone(), wn];
                    if let Some(bias) = bias {
                        inputs.push(
                            b.tensor_f32(&format!("{name}.bias"), vec![dims[0]], bias)
                                .map_err(rt)?,
                        );
                    }
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    let out = b.op(
                        &name,
                        Op::Conv2d(Conv2dAttrs {
                            stride: *stride,
                            padding: pad,
                            groups: *groups,
                            activation,
                        }),
                        &refs,
                    );
                    names.insert(out_value, out);
                    codes.insert(out_value, None);
                }
            }
            OpDef::Linear { .. } => {
                let linear = &graph.linears[slots[i]];
                let [inn, out] = linear.weight.dims();
                // burn stores [in, out]; the runtime wants [out, in].
                let mut w = values(linear.weight.val().transpose());
                if int8 {
                    let (wq, scales) = quantize_weights(&w, out);
                    w = wq
                        .iter()
                        .enumerate()
                        .map(|(k, &q)| q as f32 * scales[k / inn])
                        .collect();
                }
                let (activation, out_value) = fused(&graph, i);
                if out_value != i + 1 {
                    skip[out_value - 1] = true;
                }
                let xf = float_input(&mut b, x, &x_name, x_code)?;
                let wn = b
                    .tensor_f32(&format!("{name}.weight"), vec![out, inn], w)
                    .map_err(rt)?;
                let mut inputs = vec![xf, wn];
                if let Some(bias) = &linear.bias {
                    inputs.push(
                        b.tensor_f32(&format!("{name}.bias"), vec![out], values(bias.val()))
                            .map_err(rt)?,
                    );
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let out_name = b.op(&name, Op::Linear(LinearAttrs { activation }), &refs);
                let (out_name, code) = requantize(&mut b, out_name, out_value)?;
                names.insert(out_value, out_name);
                codes.insert(out_value, code);
            }
            OpDef::Add => {
                let y = node.inputs[1];
                let y_name = names.get(&y).cloned().unwrap_or_default();
                let y_code = codes.get(&y).copied().flatten();
                let (activation, out_value) = fused(&graph, i);
                if out_value != i + 1 {
                    skip[out_value - 1] = true;
                }
                if let (true, Some(a), Some(c)) = (int8, x_code, y_code) {
                    let (a_scale, a_zero_point) = qparams(a)?;
                    let (b_scale, b_zero_point) = qparams(c)?;
                    let (output_scale, output_zero_point) = qparams(out_value)?;
                    let out = b.op(
                        &name,
                        Op::QAdd(QAddAttrs {
                            a_scale,
                            a_zero_point,
                            b_scale,
                            b_zero_point,
                            output_scale,
                            output_zero_point,
                            output_dtype: RtType::U8,
                            activation,
                        }),
                        &[&x_name, &y_name],
                    );
                    names.insert(out_value, out);
                    codes.insert(out_value, Some(out_value));
                } else {
                    let out = b.op(&name, Op::Add(AddAttrs { activation }), &[&x_name, &y_name]);
                    names.insert(out_value, out);
                    codes.insert(out_value, None);
                }
            }
            OpDef::Relu | OpDef::Relu6 => {
                let xf = float_input(&mut b, x, &x_name, x_code)?;
                let op = if node.op == OpDef::Relu {
                    Op::Relu
                } else {
                    Op::Relu6
                };
                let out = b.op(&name, op, &[&xf]);
                let (out, code) = requantize(&mut b, out, i + 1)?;
                names.insert(i + 1, out);
                codes.insert(i + 1, code);
            }
            OpDef::MaxPool2d { kernel, stride } => {
                let out = b.op(
                    &name,
                    Op::MaxPool2d(MaxPool2dAttrs {
                        kernel: [*kernel, *kernel],
                        stride: [*stride, *stride],
                        padding: [0; 4],
                    }),
                    &[&x_name],
                );
                names.insert(i + 1, out);
                codes.insert(i + 1, x_code);
            }
            OpDef::Flatten => {
                let out = b.op(
                    &name,
                    Op::Flatten(FlattenAttrs {
                        start_dim: 1,
                        end_dim: -1,
                    }),
                    &[&x_name],
                );
                names.insert(i + 1, out);
                codes.insert(i + 1, x_code);
            }
            OpDef::GlobalAvgPool => {
                let xf = float_input(&mut b, x, &x_name, x_code)?;
                let out = b.op(
                    &name,
                    Op::GlobalAvgPool(GlobalAvgPoolAttrs { keep_dims: false }),
                    &[&xf],
                );
                let (out, code) = requantize(&mut b, out, i + 1)?;
                names.insert(i + 1, out);
                codes.insert(i + 1, code);
            }
            OpDef::BatchNorm { .. } => {
                return Err(CompressError::BadConfig(format!(
                    "'{name}': a batch norm that does not follow a convolution cannot be exported yet"
                )));
            }
        }
    }
    let out = names
        .get(&def.output)
        .cloned()
        .ok_or_else(|| CompressError::BadConfig("the logits were not exported".into()))?;
    let out = match codes.get(&def.output).copied().flatten() {
        Some(point) => {
            let (scale, zero_point) = qparams(point)?;
            b.op(
                "logits",
                Op::DequantizeLinear(DequantizeAttrs { scale, zero_point }),
                &[&out],
            )
        }
        None => out,
    };
    b.output(&out);
    Ok(b)
}

/// Top-1 predictions of a keen-runtime model on every image of `dataset`, normalised with the
/// model file's own statistics (or `fallback`).
pub fn runtime_predictions(
    model: &keen_runtime::Model,
    dataset: &keen_data::dataset::ImageDataset,
    fallback: &keen_data::loader::Normalization,
    batch_size: usize,
) -> Result<Vec<usize>, CompressError> {
    let normalization = match model.normalization() {
        Some(n) => keen_data::loader::Normalization {
            mean: n.mean.clone(),
            std: n.std.clone(),
        },
        None => fallback.clone(),
    };
    let shared = std::sync::Arc::new(dataset.clone());
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let loader = keen_data::loader::LoaderConfig::eval(batch_size.max(1), normalization);
    let mut predictions = Vec::with_capacity(dataset.len());
    for batch in keen_data::loader::epoch_batches(&shared, &indices, &loader, 0) {
        let input = keen_runtime::Tensor::new(batch.shape.to_vec(), batch.images).map_err(rt)?;
        let out = model.run(&input).map_err(rt)?;
        let classes = out.shape().last().copied().unwrap_or(1).max(1);
        predictions.extend(out.data().chunks(classes).map(keen_train::evaluate::argmax));
    }
    Ok(predictions)
}
