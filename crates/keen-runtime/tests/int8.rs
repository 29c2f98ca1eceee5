//! INT8 graphs against the fp32 graphs they were quantized from: a small post-training
//! quantization (per-channel symmetric weights, per-tensor affine u8 activations calibrated on
//! the fp32 model's own intermediate values) of a network with dense, pointwise, depthwise and
//! residual layers, and agreement within quantization error.

mod common;

use common::{weights, Rng};
use keen_runtime::*;

const C: usize = 8;
const HW: usize = 8;
const CLASSES: usize = 4;

/// Layer weights shared by the fp32 and INT8 graphs.
struct Params {
    stem: (Vec<f32>, Vec<f32>), // [C,1,3,3], [C]
    pw: (Vec<f32>, Vec<f32>),   // [C,C,1,1]
    dw: (Vec<f32>, Vec<f32>),   // [C,1,3,3] depthwise
    fc: (Vec<f32>, Vec<f32>),   // [CLASSES, C·(HW/2)²]
}

fn params(seed: u64) -> Params {
    let mut r = Rng::new(seed);
    Params {
        stem: (weights(&mut r, C * 9, 9), r.vec(C, 0.1)),
        pw: (weights(&mut r, C * C, C), r.vec(C, 0.1)),
        dw: (weights(&mut r, C * 9, 9), r.vec(C, 0.1)),
        fc: (
            weights(&mut r, CLASSES * C * 16, C * 16),
            r.vec(CLASSES, 0.1),
        ),
    }
}

fn conv(padding: usize, groups: usize, activation: Activation) -> Op {
    Op::Conv2d(Conv2dAttrs {
        padding: [padding; 4],
        groups,
        activation,
        ..Default::default()
    })
}

/// stem 3×3 ReLU → pointwise → add(stem, ·) ReLU → depthwise 3×3 ReLU6 → max-pool → flatten →
/// linear. Every intermediate is an output too, for calibration.
fn fp32_graph(p: &Params) -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[1, HW, HW]);
    let t = |g: &mut GraphBuilder, name: &str, shape: Vec<usize>, d: &[f32]| {
        g.tensor_f32(name, shape, d.to_vec()).unwrap()
    };
    let (sw, sb) = (
        t(&mut g, "stem.w", vec![C, 1, 3, 3], &p.stem.0),
        t(&mut g, "stem.b", vec![C], &p.stem.1),
    );
    let stem = g.op("stem", conv(1, 1, Activation::Relu), &[&x, &sw, &sb]);
    let (pw, pb) = (
        t(&mut g, "pw.w", vec![C, C, 1, 1], &p.pw.0),
        t(&mut g, "pw.b", vec![C], &p.pw.1),
    );
    let pwo = g.op("pw", conv(0, 1, Activation::None), &[&stem, &pw, &pb]);
    let add = g.op(
        "add",
        Op::Add(AddAttrs {
            activation: Activation::Relu,
        }),
        &[&stem, &pwo],
    );
    let (dw, db) = (
        t(&mut g, "dw.w", vec![C, 1, 3, 3], &p.dw.0),
        t(&mut g, "dw.b", vec![C], &p.dw.1),
    );
    let dwo = g.op("dw", conv(1, C, Activation::Relu6), &[&add, &dw, &db]);
    let pool = g.op(
        "pool",
        Op::MaxPool2d(MaxPool2dAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
        }),
        &[&dwo],
    );
    let flat = g.op("flat", Op::Flatten(FlattenAttrs::default()), &[&pool]);
    let (fw, fb) = (
        t(&mut g, "fc.w", vec![CLASSES, C * 16], &p.fc.0),
        t(&mut g, "fc.b", vec![CLASSES], &p.fc.1),
    );
    let y = g.op("fc", Op::Linear(LinearAttrs::default()), &[&flat, &fw, &fb]);
    for name in [&y, &stem, &pwo, &add, &dwo] {
        g.output(name);
    }
    g
}

/// Affine u8 parameters covering `values` and 0.
fn act_params(values: &[f32]) -> (f32, i32) {
    let lo = values.iter().cloned().fold(0.0f32, f32::min);
    let hi = values.iter().cloned().fold(0.0f32, f32::max);
    let scale = ((hi - lo) / 255.0).max(1e-8);
    (scale, (-lo / scale).round() as i32)
}

/// Symmetric per-output-channel i8 weights, and the i32 bias at scale `s_in · s_w[c]`.
fn quantize_weights(w: &[f32], b: &[f32], s_in: f32) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
    let per = w.len() / b.len();
    let mut q = Vec::new();
    let mut scales = Vec::new();
    for (c, row) in w.chunks(per).enumerate() {
        let s = row.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-8) / 127.0;
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(s);
        let _ = c;
    }
    let bias = b
        .iter()
        .zip(&scales)
        .map(|(b, s)| (b / (s_in * s)).round() as i32)
        .collect();
    (q, scales, bias)
}

fn int8_graph(p: &Params, calib: &[Tensor]) -> GraphBuilder {
    let (s_x, z_x) = act_params(calib[5].data());
    let (s_stem, z_stem) = act_params(calib[1].data());
    let (s_pw, z_pw) = act_params(calib[2].data());
    let (s_add, z_add) = act_params(calib[3].data());
    let (s_dw, z_dw) = act_params(calib[4].data());
    let (s_y, z_y) = act_params(calib[0].data());
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[1, HW, HW]);
    let xq = g.op(
        "xq",
        Op::QuantizeLinear(QuantizeAttrs {
            scale: s_x,
            zero_point: z_x,
            dtype: DType::U8,
        }),
        &[&x],
    );
    let qconv = |g: &mut GraphBuilder,
                 name: &str,
                 input: &str,
                 (w, b): &(Vec<f32>, Vec<f32>),
                 shape: Vec<usize>,
                 s_in: f32,
                 z_in: i32,
                 s_out: f32,
                 z_out: i32,
                 padding: usize,
                 groups: usize,
                 activation: Activation| {
        let (wq, ws, bq) = quantize_weights(w, b, s_in);
        let wn = g.tensor_i8(&format!("{name}.w"), shape, wq).unwrap();
        let sn = g
            .tensor_f32(&format!("{name}.s"), vec![b.len()], ws)
            .unwrap();
        let bn = g
            .tensor_i32(&format!("{name}.b"), vec![b.len()], bq)
            .unwrap();
        let attrs = QConv2dAttrs {
            stride: [1, 1],
            padding: [padding; 4],
            groups,
            activation,
            input_scale: s_in,
            input_zero_point: z_in,
            output_scale: s_out,
            output_zero_point: z_out,
            output_dtype: DType::U8,
        };
        g.op(name, Op::QConv2d(attrs), &[input, &wn, &sn, &bn])
    };
    let stem = qconv(
        &mut g,
        "stem",
        &xq,
        &p.stem,
        vec![C, 1, 3, 3],
        s_x,
        z_x,
        s_stem,
        z_stem,
        1,
        1,
        Activation::Relu,
    );
    let pw = qconv(
        &mut g,
        "pw",
        &stem,
        &p.pw,
        vec![C, C, 1, 1],
        s_stem,
        z_stem,
        s_pw,
        z_pw,
        0,
        1,
        Activation::None,
    );
    let add = g.op(
        "add",
        Op::QAdd(QAddAttrs {
            a_scale: s_stem,
            a_zero_point: z_stem,
            b_scale: s_pw,
            b_zero_point: z_pw,
            output_scale: s_add,
            output_zero_point: z_add,
            output_dtype: DType::U8,
            activation: Activation::Relu,
        }),
        &[&stem, &pw],
    );
    let dw = qconv(
        &mut g,
        "dw",
        &add,
        &p.dw,
        vec![C, 1, 3, 3],
        s_add,
        z_add,
        s_dw,
        z_dw,
        1,
        C,
        Activation::Relu6,
    );
    let pool = g.op(
        "pool",
        Op::MaxPool2d(MaxPool2dAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
        }),
        &[&dw],
    );
    let flat = g.op("flat", Op::Flatten(FlattenAttrs::default()), &[&pool]);
    let (wq, ws, bq) = quantize_weights(&p.fc.0, &p.fc.1, s_dw);
    let wn = g.tensor_i8("fc.w", vec![CLASSES, C * 16], wq).unwrap();
    let sn = g.tensor_f32("fc.s", vec![CLASSES], ws).unwrap();
    let bn = g.tensor_i32("fc.b", vec![CLASSES], bq).unwrap();
    // The head writes i8 (zero point shifted by 128) to exercise signed outputs too.
    let fc = g.op(
        "fc",
        Op::QLinear(QLinearAttrs {
            activation: Activation::None,
            input_scale: s_dw,
            input_zero_point: z_dw,
            output_scale: s_y,
            output_zero_point: z_y - 128,
            output_dtype: DType::I8,
        }),
        &[&flat, &wn, &sn, &bn],
    );
    let y = g.op(
        "y",
        Op::DequantizeLinear(DequantizeAttrs {
            scale: s_y,
            zero_point: z_y - 128,
        }),
        &[&fc],
    );
    g.output(&y);
    g
}

#[test]
fn int8_graph_agrees_with_its_fp32_source() {
    let p = params(42);
    let fp32 = fp32_graph(&p).build().unwrap();
    let mut rng = Rng::new(9);
    let n = 16;
    let x: Vec<f32> = (0..n * HW * HW).map(|_| rng.uniform()).collect();
    let x = Tensor::new(vec![n, 1, HW, HW], x).unwrap();
    let mut calib = fp32.run_many(std::slice::from_ref(&x)).unwrap();
    calib.push(x.clone());
    let int8_builder = int8_graph(&p, &calib);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int8.keenrt");
    int8_builder.save(&path).unwrap();
    let int8 = Model::load(&path).unwrap();
    let got = int8.run(&x).unwrap();
    let want = &calib[0];
    assert_eq!(got.shape(), want.shape());
    let range = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_err = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    eprintln!("int8 vs fp32: max error {max_err}, logit range {range}");
    // Five layers of 8-bit rounding: a few percent of the logit range.
    assert!(
        max_err < 0.05 * range,
        "max error {max_err} vs logit range {range}"
    );
    let agree = got
        .argmax_rows()
        .iter()
        .zip(want.argmax_rows())
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(agree >= n - 2, "argmax agrees on {agree} of {n}");
}

/// i8 activations with zero point z and u8 activations `x + 128` with zero point `z + 128` are
/// the same real numbers: QConv2d (dense, depthwise) and QLinear must give identical outputs.
#[test]
fn i8_and_u8_activations_agree() {
    let mut rng = Rng::new(4);
    let x: Vec<f32> = rng.vec(2 * C * HW * HW, 2.0);
    let x = Tensor::new(vec![2, C, HW, HW], x).unwrap();
    let wq: Vec<i8> = rng.vec(C * C * 9, 127.0).iter().map(|v| *v as i8).collect();
    let dwq: Vec<i8> = rng.vec(C * 9, 127.0).iter().map(|v| *v as i8).collect();
    let run = |dtype: DType, zero_point: i32| {
        let mut g = GraphBuilder::new();
        let i = g.input_batched("x", &[C, HW, HW]);
        let q = g.op(
            "q",
            Op::QuantizeLinear(QuantizeAttrs {
                scale: 0.02,
                zero_point,
                dtype,
            }),
            &[&i],
        );
        let w = g.tensor_i8("w", vec![C, C, 3, 3], wq.clone()).unwrap();
        let dw = g.tensor_i8("dw", vec![C, 1, 3, 3], dwq.clone()).unwrap();
        let s = g.tensor_f32("s", vec![C], vec![0.01; C]).unwrap();
        let attrs = |groups| QConv2dAttrs {
            stride: [1, 1],
            padding: [1; 4],
            groups,
            activation: Activation::None,
            input_scale: 0.02,
            input_zero_point: zero_point,
            output_scale: 0.05,
            output_zero_point: 0,
            output_dtype: DType::I8,
        };
        let a = g.op("conv", Op::QConv2d(attrs(1)), &[&q, &w, &s]);
        let b = g.op("dwconv", Op::QConv2d(attrs(C)), &[&q, &dw, &s]);
        let flat = g.op("flat", Op::Flatten(FlattenAttrs::default()), &[&q]);
        let lw = g
            .tensor_i8("lw", vec![C, C * HW * HW], rng_bytes(C * C * HW * HW))
            .unwrap();
        let lin = g.op(
            "lin",
            Op::QLinear(QLinearAttrs {
                activation: Activation::Relu,
                input_scale: 0.02,
                input_zero_point: zero_point,
                output_scale: 0.5,
                output_zero_point: -100,
                output_dtype: DType::I8,
            }),
            &[&flat, &lw, &s],
        );
        let mut outs = Vec::new();
        for (name, v) in [("da", &a), ("db", &b), ("dl", &lin)] {
            let zp = if name == "dl" { -100 } else { 0 };
            outs.push(g.op(
                name,
                Op::DequantizeLinear(DequantizeAttrs {
                    scale: 1.0,
                    zero_point: zp,
                }),
                &[v],
            ));
        }
        for o in &outs {
            g.output(o);
        }
        g.build()
            .unwrap()
            .run_many(std::slice::from_ref(&x))
            .unwrap()
    };
    let signed = run(DType::I8, -3);
    let unsigned = run(DType::U8, 125);
    assert_eq!(signed, unsigned);
    assert!(signed[0].data().iter().any(|v| *v != 0.0));
}

fn rng_bytes(n: usize) -> Vec<i8> {
    let mut r = Rng::new(77);
    (0..n)
        .map(|_| (r.uniform() * 255.0 - 127.0) as i8)
        .collect()
}
