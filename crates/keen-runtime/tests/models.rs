//! Model-level tests: graphs built with the builder, saved, loaded and run, against reference
//! computations written with the reference kernels.

mod common;

use common::{small_cnn, weights, Rng};
use keen_runtime::kernels::reference::{conv2d, ConvGeometry};
use keen_runtime::*;

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

fn floats(model: &GraphBuilder, name: &str) -> Vec<f32> {
    // Stored tensors are only reachable through a loaded model's run; tests keep the seeds
    // instead and rebuild weights where needed. This helper reads them back via the header.
    let bytes = model.to_bytes().unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let def = m
        .header()
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap()
        .clone();
    let json_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let start = (20 + json_len).div_ceil(64) * 64 + def.offset as usize;
    bytes[start..start + def.length as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_pool2(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for ch in 0..c {
        for y in 0..h / 2 {
            for xx in 0..w / 2 {
                let at = |dy: usize, dx: usize| x[(ch * h + 2 * y + dy) * w + 2 * xx + dx];
                out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    out
}

fn linear(x: &[f32], w: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
    let (n_out, n_in) = (b.len(), x.len());
    (0..n_out)
        .map(|o| {
            let v = b[o] + (0..n_in).map(|i| x[i] * w[o * n_in + i]).sum::<f32>();
            if relu {
                v.max(0.0)
            } else {
                v
            }
        })
        .collect()
}

/// The small CNN computed image by image with the reference convolution.
fn cnn_reference(g: &GraphBuilder, image: &[f32]) -> Vec<f32> {
    let geom = |cin, cout, hw| ConvGeometry {
        batch: 1,
        in_channels: cin,
        in_hw: [hw, hw],
        out_channels: cout,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1; 4],
        groups: 1,
    };
    let relu = |v: Vec<f32>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<_>>();
    let c1 = relu(conv2d(
        &geom(1, 4, 8),
        image,
        &floats(g, "c1.w"),
        Some(&floats(g, "c1.b")),
    ));
    let p1 = max_pool2(&c1, 4, 8, 8);
    let c2 = relu(conv2d(&geom(4, 8, 4), &p1, &floats(g, "c2.w"), None));
    let p2 = max_pool2(&c2, 8, 4, 4);
    let fc = linear(&p2, &floats(g, "fc.w"), &floats(g, "fc.b"), true);
    linear(&fc, &floats(g, "head.w"), &floats(g, "head.b"), false)
}

#[test]
fn cnn_saves_loads_and_matches_the_reference() {
    let g = small_cnn(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.keenrt");
    g.save(&path).unwrap();
    let model = Model::load(&path).unwrap();
    assert_eq!(model.class_names(), ["a", "b", "c"]);
    assert_eq!(model.normalization().unwrap().std, [0.25]);
    assert_eq!(model.metadata().properties["architecture"], "test-cnn");
    let mut rng = Rng::new(7);
    let batch = 5;
    let x = Tensor::new(vec![batch, 1, 8, 8], rng.vec(batch * 64, 1.0)).unwrap();
    let y = model.run(&x).unwrap();
    assert_eq!(y.shape(), &[batch, 3]);
    assert_eq!(y, g.build().unwrap().run(&x).unwrap());
    for b in 0..batch {
        let want = cnn_reference(&g, &x.data()[b * 64..(b + 1) * 64]);
        assert!(
            close(&y.data()[b * 3..(b + 1) * 3], &want, 1e-4),
            "image {b}"
        );
    }
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let model = small_cnn(1).build().unwrap();
    let err = model
        .run(&Tensor::zeros(vec![2, 1, 9, 8]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image") && err.contains("[N, 1, 8, 8]"),
        "{err}"
    );
    assert!(model.run(&Tensor::zeros(vec![1, 8, 8])).is_err());
}

/// ResNet's basic block with unfolded batch norms: relu(bn2(conv2(relu(bn1(conv1 x)))) + x).
#[test]
fn residual_block_matches_the_reference() {
    let mut rng = Rng::new(3);
    let (c, hw) = (4, 6);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[c, hw, hw]);
    let conv = Op::Conv2d(Conv2dAttrs {
        padding: [1; 4],
        ..Default::default()
    });
    let mut bn_params = Vec::new();
    let mut block = |g: &mut GraphBuilder, rng: &mut Rng, name: &str, input: &str| {
        let w = g
            .tensor_f32(
                &format!("{name}.w"),
                vec![c, c, 3, 3],
                weights(rng, c * c * 9, c * 9),
            )
            .unwrap();
        let y = g.op(name, conv.clone(), &[input, &w]);
        let gamma = rng.vec(c, 1.0);
        let beta = rng.vec(c, 0.5);
        let mean = rng.vec(c, 0.5);
        let var: Vec<f32> = rng.vec(c, 0.5).iter().map(|v| v + 1.0).collect();
        let names: Vec<String> = [("g", &gamma), ("b", &beta), ("m", &mean), ("v", &var)]
            .iter()
            .map(|(n, d)| {
                g.tensor_f32(&format!("{name}.bn.{n}"), vec![c], (*d).clone())
                    .unwrap()
            })
            .collect();
        bn_params.push((gamma, beta, mean, var));
        let refs: Vec<&str> = std::iter::once(y.as_str())
            .chain(names.iter().map(String::as_str))
            .collect();
        g.op(
            &format!("{name}.bn"),
            Op::BatchNorm(BatchNormAttrs::default()),
            &refs,
        )
    };
    let h = block(&mut g, &mut rng, "conv1", &x);
    let h = g.op("relu1", Op::Relu, &[&h]);
    let h = block(&mut g, &mut rng, "conv2", &h);
    let y = g.op(
        "add",
        Op::Add(AddAttrs {
            activation: Activation::Relu,
        }),
        &[&h, &x],
    );
    g.output(&y);
    let model = Model::from_bytes(&g.to_bytes().unwrap()).unwrap();
    let input = rng.vec(2 * c * hw * hw, 1.0);
    let out = model
        .run(&Tensor::new(vec![2, c, hw, hw], input.clone()).unwrap())
        .unwrap();
    let geom = ConvGeometry {
        batch: 1,
        in_channels: c,
        in_hw: [hw, hw],
        out_channels: c,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1; 4],
        groups: 1,
    };
    let bn = |v: Vec<f32>, p: &(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, x)| {
                let ch = i / (hw * hw);
                (x - p.2[ch]) / (p.3[ch] + 1e-5).sqrt() * p.0[ch] + p.1[ch]
            })
            .collect()
    };
    for b in 0..2 {
        let img = &input[b * c * hw * hw..(b + 1) * c * hw * hw];
        let h = bn(
            conv2d(&geom, img, &floats(&g, "conv1.w"), None),
            &bn_params[0],
        );
        let h: Vec<f32> = h.into_iter().map(|v| v.max(0.0)).collect();
        let h = bn(
            conv2d(&geom, &h, &floats(&g, "conv2.w"), None),
            &bn_params[1],
        );
        let want: Vec<f32> = h.iter().zip(img).map(|(a, b)| (a + b).max(0.0)).collect();
        assert!(close(
            &out.data()[b * c * hw * hw..(b + 1) * c * hw * hw],
            &want,
            1e-4
        ));
    }
}

/// Naive multi-head attention over `qkv` `[t, 3d]`, heads contiguous.
fn attention_reference(qkv: &[f32], t: usize, d: usize, heads: usize) -> Vec<f32> {
    let hd = d / heads;
    let mut out = vec![0f32; t * d];
    for h in 0..heads {
        for i in 0..t {
            let q = |r: usize, k: usize| qkv[r * 3 * d + h * hd + k];
            let key = |r: usize, k: usize| qkv[r * 3 * d + d + h * hd + k];
            let v = |r: usize, k: usize| qkv[r * 3 * d + 2 * d + h * hd + k];
            let s: Vec<f32> = (0..t)
                .map(|j| (0..hd).map(|k| q(i, k) * key(j, k)).sum::<f32>() / (hd as f32).sqrt())
                .collect();
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f32 = e.iter().sum();
            for k in 0..hd {
                out[i * d + h * hd + k] = (0..t).map(|j| e[j] / z * v(j, k)).sum();
            }
        }
    }
    out
}

#[test]
fn multi_head_attention_matches_the_reference() {
    let (t, d, heads) = (5, 8, 2);
    let mut rng = Rng::new(11);
    let qkv = rng.vec(2 * t * 3 * d, 1.5);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("qkv", &[t, 3 * d]);
    let y = g.op("attn", Op::Attention(AttentionAttrs { heads }), &[&x]);
    g.output(&y);
    let out = g
        .build()
        .unwrap()
        .run(&Tensor::new(vec![2, t, 3 * d], qkv.clone()).unwrap())
        .unwrap();
    for b in 0..2 {
        let want = attention_reference(&qkv[b * t * 3 * d..(b + 1) * t * 3 * d], t, d, heads);
        assert!(close(&out.data()[b * t * d..(b + 1) * t * d], &want, 1e-5));
    }
}

/// Adds a random stored tensor and returns its name.
type TensorMaker<'a> = dyn FnMut(&mut GraphBuilder, &str, Vec<usize>, f32) -> String + 'a;

/// A one-block ViT shaped like keen's `vit-tiny` (patch conv, class token, positions, pre-norm
/// block with attention and a GELU MLP, final norm, class-token head).
pub fn tiny_vit(seed: u64) -> GraphBuilder {
    let (c, img, p, d, heads, mlp, classes) = (1, 8, 4, 8, 2, 16, 3);
    let tokens = (img / p) * (img / p) + 1;
    let mut rng = Rng::new(seed);
    let mut g = GraphBuilder::new();
    let x = g.input_batched("image", &[c, img, img]);
    let mut t = |g: &mut GraphBuilder, name: &str, shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        g.tensor_f32(name, shape, rng.vec(n, scale)).unwrap()
    };
    let pw = t(&mut g, "patch.w", vec![d, c, p, p], 0.5);
    let pb = t(&mut g, "patch.b", vec![d], 0.1);
    let cls = t(&mut g, "cls", vec![1, 1, d], 0.1);
    let pos = t(&mut g, "pos", vec![1, tokens, d], 0.1);
    let patches = g.op(
        "patch",
        Op::Conv2d(Conv2dAttrs {
            stride: [p, p],
            ..Default::default()
        }),
        &[&x, &pw, &pb],
    );
    let flat = g.op(
        "patch.flat",
        Op::Flatten(FlattenAttrs {
            start_dim: 2,
            end_dim: 3,
        }),
        &[&patches],
    );
    let seq = g.op(
        "patch.t",
        Op::Transpose(TransposeAttrs {
            perm: vec![0, 2, 1],
        }),
        &[&flat],
    );
    let seq = g.op("cat", Op::Concat(ConcatAttrs { axis: 1 }), &[&cls, &seq]);
    let mut h = g.op("pos.add", Op::Add(AddAttrs::default()), &[&seq, &pos]);
    let ln = |g: &mut GraphBuilder, t: &mut TensorMaker<'_>, name: &str, input: &str| {
        let gamma = t(g, &format!("{name}.g"), vec![d], 1.0);
        let beta = t(g, &format!("{name}.b"), vec![d], 0.1);
        g.op(
            name,
            Op::LayerNorm(LayerNormAttrs::default()),
            &[input, &gamma, &beta],
        )
    };
    let lin = |g: &mut GraphBuilder,
               t: &mut TensorMaker<'_>,
               name: &str,
               input: &str,
               o: usize,
               i: usize| {
        let w = t(g, &format!("{name}.w"), vec![o, i], (3.0 / i as f32).sqrt());
        let b = t(g, &format!("{name}.b"), vec![o], 0.1);
        g.op(name, Op::Linear(LinearAttrs::default()), &[input, &w, &b])
    };
    let n1 = ln(&mut g, &mut t, "norm1", &h);
    let qkv = lin(&mut g, &mut t, "qkv", &n1, 3 * d, d);
    let ctx = g.op("attn", Op::Attention(AttentionAttrs { heads }), &[&qkv]);
    let proj = lin(&mut g, &mut t, "proj", &ctx, d, d);
    h = g.op("res1", Op::Add(AddAttrs::default()), &[&h, &proj]);
    let n2 = ln(&mut g, &mut t, "norm2", &h);
    let f1 = lin(&mut g, &mut t, "fc1", &n2, mlp, d);
    let f1 = g.op("gelu", Op::Gelu, &[&f1]);
    let f2 = lin(&mut g, &mut t, "fc2", &f1, d, mlp);
    h = g.op("res2", Op::Add(AddAttrs::default()), &[&h, &f2]);
    let n = ln(&mut g, &mut t, "norm", &h);
    let cls_tok = g.op(
        "cls.slice",
        Op::Slice(SliceAttrs {
            axis: 1,
            start: 0,
            end: 1,
        }),
        &[&n],
    );
    let feat = g.op(
        "cls.flat",
        Op::Flatten(FlattenAttrs::default()),
        &[&cls_tok],
    );
    let y = lin(&mut g, &mut t, "head", &feat, classes, d);
    g.output(&y);
    g
}

#[test]
fn tiny_vit_runs_and_batches_consistently() {
    let g = tiny_vit(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.keenrt");
    g.save(&path).unwrap();
    let model = Model::load(&path).unwrap();
    let mut rng = Rng::new(2);
    let x = rng.vec(3 * 64, 1.0);
    let all = model
        .run(&Tensor::new(vec![3, 1, 8, 8], x.clone()).unwrap())
        .unwrap();
    assert_eq!(all.shape(), &[3, 3]);
    assert!(all.data().iter().all(|v| v.is_finite()));
    // Each image alone gives the same logits as inside the batch: nothing mixes images.
    for b in 0..3 {
        let one = model
            .run(&Tensor::new(vec![1, 1, 8, 8], x[b * 64..(b + 1) * 64].to_vec()).unwrap())
            .unwrap();
        assert!(close(one.data(), &all.data()[b * 3..(b + 1) * 3], 1e-5));
    }
}

/// The fuzzer's seed files (small valid models) still load: a check that files written by an
/// earlier build stay readable. `KEEN_WRITE_FUZZ_SEEDS=1` rewrites them.
#[test]
fn committed_model_files_still_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/parse_model");
    if std::env::var_os("KEEN_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        small_cnn(1).save(dir.join("cnn.keenrt")).unwrap();
        tiny_vit(5).save(dir.join("vit.keenrt")).unwrap();
    }
    for name in ["cnn.keenrt", "vit.keenrt"] {
        let path = dir.join(name);
        if path.exists() {
            let model = Model::load(&path).unwrap();
            assert_eq!(model.outputs().len(), 1, "{name}");
        }
    }
}
