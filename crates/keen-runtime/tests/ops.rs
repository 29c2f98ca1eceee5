//! Ops against hand-computed values, each run through a one-op graph built with the builder.

use keen_runtime::*;

/// Builds `input → op(input, consts...) → output` and runs it on `x`.
fn run_op(op: Op, x: Tensor, consts: &[(&str, Vec<usize>, Vec<f32>)]) -> Result<Tensor> {
    let mut g = GraphBuilder::new();
    let shape: Vec<Option<usize>> = x.shape().iter().map(|&d| Some(d)).collect();
    let input = g.input("x", &shape);
    let mut names = vec![input];
    for (name, shape, data) in consts {
        names.push(g.tensor_f32(name, shape.clone(), data.clone())?);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let y = g.op("op", op, &refs);
    g.output(&y);
    g.build()?.run(&x)
}

fn t(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
    Tensor::new(shape, data).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn conv2d_with_known_weights() {
    // 1×1×3×3 input 1..9, a 2×2 kernel of ones, stride 1, no padding: window sums.
    let x = t(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
    let op = Op::Conv2d(Conv2dAttrs::default());
    let y = run_op(
        op,
        x.clone(),
        &[
            ("w", vec![1, 1, 2, 2], vec![1.0; 4]),
            ("b", vec![1], vec![0.5]),
        ],
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_close(y.data(), &[12.5, 16.5, 24.5, 28.5], 1e-5);
    // Padding 1, stride 2, fused ReLU with a negative kernel: everything clamps to 0.
    let op = Op::Conv2d(Conv2dAttrs {
        stride: [2, 2],
        padding: [1; 4],
        groups: 1,
        activation: Activation::Relu,
    });
    let y = run_op(op, x, &[("w", vec![1, 1, 3, 3], vec![-1.0; 9])]).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_close(y.data(), &[0.0; 4], 0.0);
}

#[test]
fn depthwise_conv_uses_one_filter_per_channel() {
    let x = t(
        vec![1, 2, 2, 2],
        vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
    );
    let op = Op::Conv2d(Conv2dAttrs {
        groups: 2,
        activation: Activation::Relu6,
        ..Default::default()
    });
    let y = run_op(op, x, &[("w", vec![2, 1, 1, 1], vec![2.0, -1.0])]).unwrap();
    assert_close(y.data(), &[2.0, 4.0, 6.0, 6.0, 0.0, 0.0, 0.0, 0.0], 0.0);
}

#[test]
fn linear_is_x_times_w_transposed_plus_bias() {
    let x = t(vec![2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0]);
    let w = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // [2 out, 3 in]
    let y = run_op(
        Op::Linear(LinearAttrs::default()),
        x,
        &[("w", vec![2, 3], w), ("b", vec![2], vec![0.0, 1.0])],
    )
    .unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    assert_close(y.data(), &[1.0, 7.0, -1.0, 1.0], 1e-6);
}

#[test]
fn softmax_of_known_values() {
    let y = run_op(
        Op::Softmax(SoftmaxAttrs::default()),
        t(vec![1, 3], vec![1.0, 2.0, 3.0]),
        &[],
    )
    .unwrap();
    // e^[1,2,3] / Σ = [0.09003057, 0.24472847, 0.66524096].
    assert_close(y.data(), &[0.090_030_57, 0.244_728_47, 0.665_240_96], 1e-6);
    // Along axis 0 of a 2×2: each column sums to one; large values do not overflow.
    let y = run_op(
        Op::Softmax(SoftmaxAttrs { axis: 0 }),
        t(vec![2, 2], vec![1000.0, 0.0, 1000.0, 0.0]),
        &[],
    )
    .unwrap();
    assert_close(y.data(), &[0.5; 4], 1e-6);
}

#[test]
fn layer_norm_of_known_values() {
    // [1, 2, 3, 4]: mean 2.5, biased variance 1.25.
    let x = t(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]);
    let y = run_op(
        Op::LayerNorm(LayerNormAttrs { epsilon: 1e-5 }),
        x,
        &[
            ("g", vec![4], vec![1.0, 1.0, 2.0, 1.0]),
            ("b", vec![4], vec![0.0, 0.0, 0.0, 1.0]),
        ],
    )
    .unwrap();
    let s = 1.0 / (1.25f32 + 1e-5).sqrt();
    assert_close(
        y.data(),
        &[-1.5 * s, -0.5 * s, 2.0 * 0.5 * s, 1.5 * s + 1.0],
        1e-5,
    );
}

#[test]
fn gelu_relu_relu6_of_known_values() {
    let x = t(vec![1, 4], vec![-1.0, 0.0, 1.0, 7.0]);
    let y = run_op(Op::Gelu, x.clone(), &[]).unwrap();
    assert_close(y.data(), &[-0.158_655_25, 0.0, 0.841_344_7, 7.0], 1e-6);
    assert_close(
        run_op(Op::Relu, x.clone(), &[]).unwrap().data(),
        &[0.0, 0.0, 1.0, 7.0],
        0.0,
    );
    assert_close(
        run_op(Op::Relu6, x, &[]).unwrap().data(),
        &[0.0, 0.0, 1.0, 6.0],
        0.0,
    );
}

#[test]
fn pools_of_known_values() {
    let x = t(
        vec![1, 1, 2, 4],
        vec![1.0, 5.0, 2.0, 0.0, -3.0, 4.0, 8.0, 1.0],
    );
    let max = run_op(
        Op::MaxPool2d(MaxPool2dAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
        }),
        x.clone(),
        &[],
    )
    .unwrap();
    assert_close(max.data(), &[5.0, 8.0], 0.0);
    let avg = run_op(
        Op::AvgPool2d(AvgPool2dAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
            count_include_pad: true,
        }),
        x.clone(),
        &[],
    )
    .unwrap();
    assert_close(avg.data(), &[1.75, 2.75], 1e-6);
    let gap = run_op(Op::GlobalAvgPool(GlobalAvgPoolAttrs::default()), x, &[]).unwrap();
    assert_eq!(gap.shape(), &[1, 1]);
    assert_close(gap.data(), &[2.25], 1e-6);
}

#[test]
fn batch_norm_folds_to_scale_and_shift() {
    let x = t(vec![1, 2, 1, 1], vec![3.0, 3.0]);
    let y = run_op(
        Op::BatchNorm(BatchNormAttrs { epsilon: 0.0001 }),
        x,
        &[
            ("g", vec![2], vec![2.0, 1.0]),
            ("b", vec![2], vec![1.0, 0.0]),
            ("m", vec![2], vec![1.0, 3.0]),
            ("v", vec![2], vec![3.9999, 1.0]),
        ],
    )
    .unwrap();
    // (3-1)/2·2+1 = 3 and (3-3)/1 = 0.
    assert_close(y.data(), &[3.0, 0.0], 1e-4);
}

#[test]
fn add_broadcasts_and_fuses_relu() {
    let x = t(
        vec![2, 2, 2],
        vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0],
    );
    let y = run_op(
        Op::Add(AddAttrs {
            activation: Activation::Relu,
        }),
        x,
        &[("p", vec![1, 2, 2], vec![1.0, 1.0, -10.0, 10.0])],
    )
    .unwrap();
    assert_close(y.data(), &[2.0, 0.0, 0.0, 6.0, 6.0, 0.0, 0.0, 2.0], 0.0);
}

#[test]
fn layout_ops_move_values() {
    let x = t(vec![1, 2, 3], (0..6).map(|v| v as f32).collect());
    let y = run_op(
        Op::Transpose(TransposeAttrs {
            perm: vec![0, 2, 1],
        }),
        x.clone(),
        &[],
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 3, 2]);
    assert_close(y.data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], 0.0);
    let y = run_op(Op::Flatten(FlattenAttrs::default()), x.clone(), &[]).unwrap();
    assert_eq!(y.shape(), &[1, 6]);
    let y = run_op(
        Op::Reshape(ReshapeAttrs {
            shape: vec![0, -1, 2],
        }),
        x.clone(),
        &[],
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 3, 2]);
    let y = run_op(
        Op::Slice(SliceAttrs {
            axis: 2,
            start: 1,
            end: 3,
        }),
        x.clone(),
        &[],
    )
    .unwrap();
    assert_close(y.data(), &[1.0, 2.0, 4.0, 5.0], 0.0);
    // [1, 2, 3] tokens then a [1, 1, 3] token (run_op puts the graph input first).
    let y = run_op(
        Op::Concat(ConcatAttrs { axis: 1 }),
        x,
        &[("cls", vec![1, 1, 3], vec![9.0; 3])],
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 3, 3]);
    assert_close(
        y.data(),
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 9.0, 9.0],
        0.0,
    );
}

#[test]
fn matmul_and_attention_match_hand_computation() {
    // Two tokens, width 2, one head: q = k = v = x.
    let tokens = [[1.0f32, 0.0], [0.0, 2.0]];
    let qkv: Vec<f32> = tokens
        .iter()
        .flat_map(|t| [t[0], t[1], t[0], t[1], t[0], t[1]])
        .collect();
    let y = run_op(
        Op::Attention(AttentionAttrs { heads: 1 }),
        t(vec![1, 2, 6], qkv),
        &[],
    )
    .unwrap();
    // scores = x·xᵀ/√2 = [[1, 0], [0, 4]]/√2; context = softmax(scores)·x.
    let mut want = Vec::new();
    for i in 0..2 {
        let s: Vec<f32> = (0..2)
            .map(|j| (tokens[i][0] * tokens[j][0] + tokens[i][1] * tokens[j][1]) / 2f32.sqrt())
            .collect();
        let e: Vec<f32> = s.iter().map(|v| v.exp()).collect();
        let z: f32 = e.iter().sum();
        want.extend((0..2).map(|d| (0..2).map(|j| e[j] / z * tokens[j][d]).sum::<f32>()));
    }
    assert_close(y.data(), &want, 1e-5);
    let a = t(vec![1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let y = run_op(
        Op::MatMul(MatMulAttrs { transpose_b: true }),
        a,
        &[("b", vec![2, 2], vec![1.0, 0.0, 1.0, 1.0])],
    )
    .unwrap();
    assert_close(y.data(), &[1.0, 3.0, 3.0, 7.0], 1e-6);
}

#[test]
fn quantize_dequantize_round_trip_within_half_a_step() {
    let x = t(vec![1, 5], vec![-1.0, -0.26, 0.0, 0.26, 100.0]);
    let mut g = GraphBuilder::new();
    let i = g.input_batched("x", &[5]);
    let q = g.op(
        "q",
        Op::QuantizeLinear(QuantizeAttrs {
            scale: 0.1,
            zero_point: 10,
            dtype: DType::U8,
        }),
        &[&i],
    );
    let d = g.op(
        "d",
        Op::DequantizeLinear(DequantizeAttrs {
            scale: 0.1,
            zero_point: 10,
        }),
        &[&q],
    );
    g.output(&d);
    let y = g.build().unwrap().run(&x).unwrap();
    // -1.0 → 0 → -1.0; -0.26 → round(-2.6)+10 = 7 → -0.3; 100 saturates at 255 → 24.5.
    assert_close(y.data(), &[-1.0, -0.3, 0.0, 0.3, 24.5], 1e-6);
}

#[test]
fn pruned_conv_takes_the_sparse_path_and_matches_the_reference() {
    use keen_runtime::kernels::reference::{conv2d, ConvGeometry};
    // 90% of the weights zero: the op switches to CSR × dense; results must not change.
    let (c, co, hw) = (6, 8, 7);
    let w: Vec<f32> = (0..co * c * 9)
        .map(|i| {
            if i % 10 == 3 {
                (i % 7) as f32 - 3.0
            } else {
                0.0
            }
        })
        .collect();
    let x: Vec<f32> = (0..2 * c * hw * hw)
        .map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0)
        .collect();
    let op = Op::Conv2d(Conv2dAttrs {
        padding: [1; 4],
        ..Default::default()
    });
    let y = run_op(
        op,
        t(vec![2, c, hw, hw], x.clone()),
        &[("w", vec![co, c, 3, 3], w.clone())],
    )
    .unwrap();
    let g = ConvGeometry {
        batch: 2,
        in_channels: c,
        in_hw: [hw, hw],
        out_channels: co,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1; 4],
        groups: 1,
    };
    assert_close(y.data(), &conv2d(&g, &x, &w, None), 1e-4);
}

#[test]
fn max_pool_with_padding_and_overlap() {
    // 3×3 window, stride 1, padding 1 over a 2×2 plane: every window sees the whole plane.
    let x = t(vec![1, 1, 2, 2], vec![1.0, -2.0, 3.0, 0.5]);
    let op = Op::MaxPool2d(MaxPool2dAttrs {
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1; 4],
    });
    assert_close(run_op(op, x, &[]).unwrap().data(), &[3.0; 4], 0.0);
}
