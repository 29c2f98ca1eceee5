//! fp32 graphs exported to ONNX and run by tract: the outputs match keen-runtime's within 1e-4.

mod common;

use common::{max_abs_diff, run_tract, Rng};
use keen_onnx::{OnnxModel, Precision};
use keen_runtime::*;

fn conv(padding: usize, stride: usize, groups: usize, activation: Activation) -> Op {
    Op::Conv2d(Conv2dAttrs {
        stride: [stride, stride],
        padding: [padding; 4],
        groups,
        activation,
    })
}

fn tensor(g: &mut GraphBuilder, name: &str, shape: Vec<usize>, data: Vec<f32>) -> String {
    g.tensor_f32(name, shape, data).unwrap()
}

/// conv 3×3 ReLU → depthwise stride-2 ReLU6 → pointwise → add ReLU → batch norm → max-pool
/// (padded) → average pool → global average pool → linear ReLU → linear → softmax, on
/// `[N, 3, 10, 10]`.
fn cnn(seed: u64) -> GraphBuilder {
    let mut r = Rng::new(seed);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("image", &[3, 10, 10]);
    let w = tensor(&mut g, "stem.w", vec![8, 3, 3, 3], r.weights(216, 27));
    let b = tensor(&mut g, "stem.b", vec![8], r.vec(8, 0.1));
    let stem = g.op("stem", conv(1, 1, 1, Activation::Relu), &[&x, &w, &b]);
    let w = tensor(&mut g, "dw.w", vec![8, 1, 3, 3], r.weights(72, 9));
    let b = tensor(&mut g, "dw.b", vec![8], r.vec(8, 0.1));
    let dw = g.op("dw", conv(1, 2, 8, Activation::Relu6), &[&stem, &w, &b]);
    let w = tensor(&mut g, "pw.w", vec![8, 8, 1, 1], r.weights(64, 8));
    let pw = g.op("pw", conv(0, 1, 1, Activation::None), &[&dw, &w]);
    let add = g.op(
        "add",
        Op::Add(AddAttrs {
            activation: Activation::Relu,
        }),
        &[&dw, &pw],
    );
    let mut bn = vec![add];
    for (name, data) in [
        ("bn.gamma", r.vec(8, 1.0)),
        ("bn.beta", r.vec(8, 0.5)),
        ("bn.mean", r.vec(8, 0.5)),
        ("bn.var", r.vec(8, 0.5).iter().map(|v| v + 1.0).collect()),
    ] {
        bn.push(tensor(&mut g, name, vec![8], data));
    }
    let refs: Vec<&str> = bn.iter().map(String::as_str).collect();
    let bn = g.op("bn", Op::BatchNorm(BatchNormAttrs { epsilon: 1e-5 }), &refs);
    let pool = g.op(
        "pool",
        Op::MaxPool2d(MaxPool2dAttrs {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1; 4],
        }),
        &[&bn],
    );
    let avg = g.op(
        "avg",
        Op::AvgPool2d(AvgPool2dAttrs {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [0; 4],
            count_include_pad: true,
        }),
        &[&pool],
    );
    let gap = g.op(
        "gap",
        Op::GlobalAvgPool(GlobalAvgPoolAttrs { keep_dims: false }),
        &[&avg],
    );
    let w = tensor(&mut g, "fc1.w", vec![6, 8], r.weights(48, 8));
    let b = tensor(&mut g, "fc1.b", vec![6], r.vec(6, 0.1));
    let fc1 = g.op(
        "fc1",
        Op::Linear(LinearAttrs {
            activation: Activation::Relu,
        }),
        &[&gap, &w, &b],
    );
    let w = tensor(&mut g, "fc2.w", vec![5, 6], r.weights(30, 6));
    let b = tensor(&mut g, "fc2.b", vec![5], r.vec(5, 0.1));
    let fc2 = g.op("fc2", Op::Linear(LinearAttrs::default()), &[&fc1, &w, &b]);
    let y = g.op("probs", Op::Softmax(SoftmaxAttrs { axis: -1 }), &[&fc2]);
    g.output(&y);
    g.class_names((0..5).map(|i| format!("class {i}")).collect());
    g.normalization(vec![0.5, 0.4, 0.3], vec![0.2, 0.25, 0.3]);
    g
}

/// Token ops on `[N, 4, 6]`: linear over the last axis (MatMul form) → GELU → layer norm →
/// Q·Qᵀ (MatMul with transpose_b) → transpose → matmul by a stored matrix → reshape → slice
/// and concat → flatten → linear.
fn tokens(seed: u64) -> GraphBuilder {
    let mut r = Rng::new(seed);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("tokens", &[4, 6]);
    let w = tensor(&mut g, "proj.w", vec![8, 6], r.weights(48, 6));
    let b = tensor(&mut g, "proj.b", vec![8], r.vec(8, 0.1));
    let proj = g.op("proj", Op::Linear(LinearAttrs::default()), &[&x, &w, &b]);
    let gelu = g.op("gelu", Op::Gelu, &[&proj]);
    let gamma = tensor(&mut g, "ln.gamma", vec![8], r.vec(8, 1.0));
    let beta = tensor(&mut g, "ln.beta", vec![8], r.vec(8, 0.2));
    let ln = g.op(
        "ln",
        Op::LayerNorm(LayerNormAttrs { epsilon: 1e-6 }),
        &[&gelu, &gamma, &beta],
    );
    let scores = g.op(
        "scores",
        Op::MatMul(MatMulAttrs { transpose_b: true }),
        &[&ln, &ln],
    ); // [N, 4, 4]
    let t = g.op(
        "t",
        Op::Transpose(TransposeAttrs {
            perm: vec![0, 2, 1],
        }),
        &[&scores],
    );
    let m = tensor(&mut g, "mix", vec![4, 4], r.vec(16, 0.5));
    let mixed = g.op("mixed", Op::MatMul(MatMulAttrs::default()), &[&t, &m]);
    let relu = g.op("relu", Op::Relu, &[&mixed]);
    let flat = g.op(
        "reshape",
        Op::Reshape(ReshapeAttrs { shape: vec![0, -1] }),
        &[&relu],
    ); // [N, 16]
    let head = g.op(
        "head",
        Op::Slice(SliceAttrs {
            axis: 1,
            start: 0,
            end: 8,
        }),
        &[&flat],
    );
    let cat = g.op("cat", Op::Concat(ConcatAttrs { axis: 1 }), &[&flat, &head]); // [N, 24]
    let relu6 = g.op("relu6", Op::Relu6, &[&cat]);
    let r3 = g.op(
        "r3",
        Op::Reshape(ReshapeAttrs {
            shape: vec![0, 4, 6],
        }),
        &[&relu6],
    );
    let f = g.op(
        "flat",
        Op::Flatten(FlattenAttrs {
            start_dim: 1,
            end_dim: -1,
        }),
        &[&r3],
    );
    let w = tensor(&mut g, "out.w", vec![3, 24], r.weights(72, 24));
    let y = g.op("out", Op::Linear(LinearAttrs::default()), &[&f, &w]);
    g.output(&y);
    g
}

/// Exports `g`, runs it in keen-runtime and in tract at each batch size, and compares.
fn check(g: &GraphBuilder, dims: &[usize], seed: u64) {
    let keen_bytes = g.to_bytes().unwrap();
    let model = Model::from_bytes(&keen_bytes).unwrap();
    let onnx = OnnxModel::from_keenrt_bytes(&keen_bytes).unwrap();
    assert_eq!(onnx.precision(), Precision::Fp32);
    let bytes = onnx.to_bytes();
    let mut r = Rng::new(seed);
    for batch in [1, 3] {
        let mut shape = vec![batch];
        shape.extend_from_slice(dims);
        let data = r.vec(shape.iter().product(), 1.0);
        let expected = model
            .run(&Tensor::new(shape.clone(), data.clone()).unwrap())
            .unwrap();
        let (out_shape, got) = run_tract(&bytes, &shape, &data);
        assert_eq!(out_shape, expected.shape(), "batch {batch}: shapes differ");
        let diff = max_abs_diff(expected.data(), &got);
        assert!(diff <= 1e-4, "batch {batch}: max |keen - tract| = {diff}");
    }
}

#[test]
fn cnn_matches_tract() {
    check(&cnn(1), &[3, 10, 10], 11);
}

#[test]
fn token_ops_match_tract() {
    check(&tokens(2), &[4, 6], 12);
}

#[test]
fn cnn_maps_to_plain_onnx_ops() {
    let onnx = OnnxModel::from_keenrt_bytes(&cnn(3).to_bytes().unwrap()).unwrap();
    let ops = onnx.op_counts();
    for op in [
        "Conv",
        "Relu",
        "Clip",
        "Add",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Softmax",
    ] {
        assert!(ops.contains_key(op), "no {op} in {ops:?}");
    }
    assert_eq!(ops["Conv"], 3);
    let proto = onnx.proto();
    assert_eq!(proto.ir_version, keen_onnx::IR_VERSION);
    assert_eq!(proto.opset_import[0].version, keen_onnx::OPSET);
    let meta: Vec<&str> = proto
        .metadata_props
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(meta, ["class_names", "normalization"]);
    assert!(proto.metadata_props[0].value.contains("\"class 4\""));
}
