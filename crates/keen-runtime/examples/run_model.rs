//! Loads a keen-runtime model and runs it on a synthetic batch, printing the output and the
//! time per image. Links only keen-runtime, so its release size is the deployable footprint.
//!
//! ```sh
//! cargo run --release -p keen-runtime --example run_model -- model.keenrt [--batch 64]
//! cargo run --release -p keen-runtime --example run_model -- --write-demo demo.keenrt
//! cargo run --release -p keen-runtime --example run_model -- --write-demo-int8 demo-int8.keenrt
//! cargo run --release -p keen-runtime --example run_model -- --write-demo-vit demo-vit.keenrt
//! ```
//!
//! The demos have cnn-small's shape and fixed pseudo-random weights (the INT8 one fixed
//! activation scales too): they are for timing and size, not for accuracy.

use std::process::ExitCode;
use std::time::Instant;

use keen_runtime::*;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!(
                "usage: run_model MODEL [--batch N] | run_model --write-demo[-int8|-vit] PATH"
            );
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [flag, path] if flag == "--write-demo" => {
            demo().save(path).map_err(|e| e.to_string())?;
            println!("wrote {path}");
            Ok(())
        }
        [flag, path] if flag == "--write-demo-vit" => {
            demo_vit().save(path).map_err(|e| e.to_string())?;
            println!("wrote {path}");
            Ok(())
        }
        [flag, path] if flag == "--write-demo-int8" => {
            demo_int8().save(path).map_err(|e| e.to_string())?;
            println!("wrote {path}");
            Ok(())
        }
        [path] => infer(path, 1),
        [path, flag, n] if flag == "--batch" => infer(
            path,
            n.parse().map_err(|_| format!("bad batch size '{n}'"))?,
        ),
        _ => Err("expected a model path".into()),
    }
}

fn infer(path: &str, batch: usize) -> Result<(), String> {
    let model = Model::load(path).map_err(|e| e.to_string())?;
    let declared = model
        .input_shapes()
        .first()
        .ok_or("the model has no input")?;
    let shape: Vec<usize> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| d.unwrap_or(if i == 0 { batch } else { 1 }))
        .collect();
    let n: usize = shape.iter().product();
    // A fixed pseudo-random image batch: the example has no image decoder on purpose.
    let data = (0..n).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let input = Tensor::new(shape.clone(), data).map_err(|e| e.to_string())?;
    model.run(&input).map_err(|e| e.to_string())?; // warm-up
    let start = Instant::now();
    let output = model.run(&input).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    println!("input {shape:?} → output {:?}", output.shape());
    let names = model.class_names();
    for (i, class) in output.argmax_rows().iter().take(4).enumerate() {
        let name = names.get(*class).map_or("?", String::as_str);
        println!("image {i}: class {class} ({name})");
    }
    println!(
        "{:.3} ms per batch, {:.0} images/s",
        seconds * 1e3,
        shape[0] as f64 / seconds
    );
    Ok(())
}

/// keen's `vit-tiny` shape (4×4 patches of 28×28×1, 4 pre-norm blocks of width 64 with 4
/// heads and a GELU MLP of 128, class-token head, 10 classes), as the exporter would lay it out.
fn demo_vit() -> GraphBuilder {
    let (d, heads, mlp, depth, tokens) = (64, 4, 128, 4, 50);
    let mut g = GraphBuilder::new();
    let mut seed = 7u32;
    let mut param = |g: &mut GraphBuilder, name: &str, shape: Vec<usize>, fan_in: usize| {
        let n = shape.iter().product();
        g.tensor_f32(name, shape, weights(&mut seed, n, fan_in))
            .expect("sizes match")
    };
    let x = g.input_batched("image", &[1, 28, 28]);
    let pw = param(&mut g, "patch.weight", vec![d, 1, 4, 4], 16);
    let pb = param(&mut g, "patch.bias", vec![d], 16);
    let patch = Op::Conv2d(Conv2dAttrs {
        stride: [4, 4],
        ..Default::default()
    });
    let p = g.op("patch", patch, &[&x, &pw, &pb]);
    let flat = Op::Flatten(FlattenAttrs {
        start_dim: 2,
        end_dim: 3,
    });
    let p = g.op("patch.flatten", flat, &[&p]);
    let perm = Op::Transpose(TransposeAttrs {
        perm: vec![0, 2, 1],
    });
    let p = g.op("patch.tokens", perm, &[&p]);
    let cls = param(&mut g, "cls_token", vec![1, 1, d], 1000);
    let pos = param(&mut g, "pos_embed", vec![1, tokens, d], 1000);
    let h = g.op("cat", Op::Concat(ConcatAttrs { axis: 1 }), &[&cls, &p]);
    let mut h = g.op("add_pos", Op::Add(AddAttrs::default()), &[&h, &pos]);
    let norm = |g: &mut GraphBuilder, name: &str, input: &str| {
        let gamma = g.tensor_f32(&format!("{name}.gamma"), vec![d], vec![1.0; d]);
        let beta = g.tensor_f32(&format!("{name}.beta"), vec![d], vec![0.0; d]);
        let (gamma, beta) = (gamma.expect("sizes match"), beta.expect("sizes match"));
        g.op(
            name,
            Op::LayerNorm(LayerNormAttrs::default()),
            &[input, &gamma, &beta],
        )
    };
    let mut linear = |g: &mut GraphBuilder, name: &str, input: &str, out: usize, inp: usize| {
        let w = param(g, &format!("{name}.weight"), vec![out, inp], inp);
        let b = param(g, &format!("{name}.bias"), vec![out], inp);
        g.op(name, Op::Linear(LinearAttrs::default()), &[input, &w, &b])
    };
    for i in 0..depth {
        let n1 = norm(&mut g, &format!("b{i}.norm1"), &h);
        let qkv = linear(&mut g, &format!("b{i}.qkv"), &n1, 3 * d, d);
        let attn = g.op(
            &format!("b{i}.attn"),
            Op::Attention(AttentionAttrs { heads }),
            &[&qkv],
        );
        let proj = linear(&mut g, &format!("b{i}.proj"), &attn, d, d);
        h = g.op(
            &format!("b{i}.res1"),
            Op::Add(AddAttrs::default()),
            &[&h, &proj],
        );
        let n2 = norm(&mut g, &format!("b{i}.norm2"), &h);
        let f1 = linear(&mut g, &format!("b{i}.fc1"), &n2, mlp, d);
        let f1 = g.op(&format!("b{i}.gelu"), Op::Gelu, &[&f1]);
        let f2 = linear(&mut g, &format!("b{i}.fc2"), &f1, d, mlp);
        h = g.op(
            &format!("b{i}.res2"),
            Op::Add(AddAttrs::default()),
            &[&h, &f2],
        );
    }
    let n = norm(&mut g, "norm", &h);
    let slice = Op::Slice(SliceAttrs {
        axis: 1,
        start: 0,
        end: 1,
    });
    let c = g.op("cls", slice, &[&n]);
    let c = g.op("cls.flatten", Op::Flatten(FlattenAttrs::default()), &[&c]);
    let y = linear(&mut g, "head", &c, 10, d);
    g.output(&y);
    g
}

/// Pseudo-random weights in ±sqrt(3 / fan_in).
fn weights(seed: &mut u32, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = (3.0 / fan_in as f32).sqrt();
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * bound
        })
        .collect()
}

/// cnn-small as an INT8 graph: quantize the input, QConv2d/QLinear layers with symmetric
/// per-channel weights, max-pool on u8, dequantize the logits.
fn demo_int8() -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let mut seed = 1u32;
    let x = g.input_batched("image", &[1, 28, 28]);
    let act = 0.05f32; // every activation: scale 0.05, zero point 0 (post-ReLU), u8
    let q = g.op(
        "quantize",
        Op::QuantizeLinear(QuantizeAttrs {
            scale: 1.0 / 255.0,
            zero_point: 0,
            dtype: DType::U8,
        }),
        &[&x],
    );
    let mut layer =
        |g: &mut GraphBuilder, name: &str, input: &str, shape: Vec<usize>, s_in: f32| {
            let (out, fan_in) = (shape[0], shape[1..].iter().product::<usize>());
            let w = weights(&mut seed, out * fan_in, fan_in);
            let scales: Vec<f32> = w
                .chunks(fan_in)
                .map(|r| r.iter().fold(1e-8f32, |m, v| m.max(v.abs())) / 127.0)
                .collect();
            let wq: Vec<i8> = w
                .iter()
                .enumerate()
                .map(|(i, v)| (v / scales[i / fan_in]).round() as i8)
                .collect();
            let rank = shape.len();
            let wn = g
                .tensor_i8(&format!("{name}.weight"), shape, wq)
                .expect("sizes match");
            let sn = g
                .tensor_f32(&format!("{name}.scales"), vec![out], scales)
                .expect("sizes match");
            let op = if rank == 4 {
                Op::QConv2d(QConv2dAttrs {
                    stride: [1, 1],
                    padding: [1; 4],
                    groups: 1,
                    activation: Activation::Relu,
                    input_scale: s_in,
                    input_zero_point: 0,
                    output_scale: act,
                    output_zero_point: 0,
                    output_dtype: DType::U8,
                })
            } else {
                Op::QLinear(QLinearAttrs {
                    activation: Activation::Relu,
                    input_scale: s_in,
                    input_zero_point: 0,
                    output_scale: act,
                    output_zero_point: 0,
                    output_dtype: DType::U8,
                })
            };
            g.op(name, op, &[input, &wn, &sn])
        };
    let pool = Op::MaxPool2d(MaxPool2dAttrs {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0; 4],
    });
    let c1 = layer(&mut g, "conv1", &q, vec![32, 1, 3, 3], 1.0 / 255.0);
    let p1 = g.op("pool1", pool.clone(), &[&c1]);
    let c2 = layer(&mut g, "conv2", &p1, vec![64, 32, 3, 3], act);
    let p2 = g.op("pool2", pool, &[&c2]);
    let f = g.op("flatten", Op::Flatten(FlattenAttrs::default()), &[&p2]);
    let h = layer(&mut g, "fc1", &f, vec![128, 3136], act);
    let y = layer(&mut g, "head", &h, vec![10, 128], act);
    let logits = g.op(
        "dequantize",
        Op::DequantizeLinear(DequantizeAttrs {
            scale: act,
            zero_point: 0,
        }),
        &[&y],
    );
    g.output(&logits);
    g
}

/// keen's `cnn-small` shape (conv32-conv64-fc128, 28×28×1, 10 classes) with fixed weights.
fn demo() -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let mut seed = 1u32;
    let mut weights = |n: usize, fan_in: usize| weights(&mut seed, n, fan_in);
    let x = g.input_batched("image", &[1, 28, 28]);
    let conv = Op::Conv2d(Conv2dAttrs {
        padding: [1; 4],
        activation: Activation::Relu,
        ..Default::default()
    });
    let pool = Op::MaxPool2d(MaxPool2dAttrs {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0; 4],
    });
    let tensor = |g: &mut GraphBuilder, name: &str, shape: Vec<usize>, data: Vec<f32>| {
        g.tensor_f32(name, shape, data)
            .expect("shapes are consistent")
    };
    let w1 = tensor(&mut g, "conv1.weight", vec![32, 1, 3, 3], weights(288, 9));
    let b1 = tensor(&mut g, "conv1.bias", vec![32], vec![0.0; 32]);
    let c1 = g.op("conv1", conv.clone(), &[&x, &w1, &b1]);
    let p1 = g.op("pool1", pool.clone(), &[&c1]);
    let w2 = tensor(
        &mut g,
        "conv2.weight",
        vec![64, 32, 3, 3],
        weights(18432, 288),
    );
    let b2 = tensor(&mut g, "conv2.bias", vec![64], vec![0.0; 64]);
    let c2 = g.op("conv2", conv, &[&p1, &w2, &b2]);
    let p2 = g.op("pool2", pool, &[&c2]);
    let f = g.op("flatten", Op::Flatten(FlattenAttrs::default()), &[&p2]);
    let w3 = tensor(
        &mut g,
        "fc1.weight",
        vec![128, 3136],
        weights(128 * 3136, 3136),
    );
    let b3 = tensor(&mut g, "fc1.bias", vec![128], vec![0.0; 128]);
    let relu = LinearAttrs {
        activation: Activation::Relu,
    };
    let h = g.op("fc1", Op::Linear(relu), &[&f, &w3, &b3]);
    let w4 = tensor(&mut g, "head.weight", vec![10, 128], weights(1280, 128));
    let b4 = tensor(&mut g, "head.bias", vec![10], vec![0.0; 10]);
    let y = g.op("head", Op::Linear(LinearAttrs::default()), &[&h, &w4, &b4]);
    g.output(&y);
    g.class_names((0..10).map(|i| format!("class{i}")).collect());
    g.normalization(vec![0.2860], vec![0.3530]);
    g
}
