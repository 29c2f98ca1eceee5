//! Times keen's convolution against burn's on Flex for resnet20's layer shapes (batch 128,
//! Fashion-MNIST size): forward alone, and forward + backward through autodiff.
//!
//! `cargo run --release -p keen-kernels --example conv_bench [-- ROUNDS]`. Each line is the
//! median over rounds, keen and burn alternating within a round, so a loaded machine affects both
//! alike. Run it with `RAYON_NUM_THREADS=2` to match `keen bench-train`.

use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::Distribution;

struct Layer {
    name: &'static str,
    conv: Conv2dConfig,
    input: [usize; 4],
}

fn layers() -> Vec<Layer> {
    let conv3x3 = |c_in, c_out, stride| {
        Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
    };
    vec![
        Layer {
            name: "3x3 16->16 28x28",
            conv: conv3x3(16, 16, 1),
            input: [128, 16, 28, 28],
        },
        Layer {
            name: "3x3 16->32 s2 28x28",
            conv: conv3x3(16, 32, 2),
            input: [128, 16, 28, 28],
        },
        Layer {
            name: "3x3 32->32 14x14",
            conv: conv3x3(32, 32, 1),
            input: [128, 32, 14, 14],
        },
        Layer {
            name: "3x3 64->64 7x7",
            conv: conv3x3(64, 64, 1),
            input: [128, 64, 7, 7],
        },
        Layer {
            name: "1x1 32->64 s2 14x14",
            conv: Conv2dConfig::new([32, 64], [1, 1])
                .with_stride([2, 2])
                .with_bias(false),
            input: [128, 32, 14, 14],
        },
    ]
}

fn seconds(work: impl FnOnce()) -> f64 {
    let start = Instant::now();
    work();
    start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(5);
    println!("layer                    | forward keen / burn (ms) | fwd+bwd keen / burn (ms)");
    for layer in layers() {
        let plain = Device::flex();
        let autodiff = Device::flex().autodiff();
        let conv: Conv2d = layer.conv.init(&plain);
        let conv_ad: Conv2d = layer.conv.init(&autodiff);
        let x = Tensor::<4>::random(layer.input, Distribution::Uniform(-1.0, 1.0), &plain);
        let x_ad = Tensor::<4>::random(layer.input, Distribution::Uniform(-1.0, 1.0), &autodiff)
            .require_grad();
        let forward = |ours: bool| {
            seconds(|| {
                let out = if ours {
                    keen_kernels::conv2d_layer(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let _ = out.into_data();
            })
        };
        let training = |ours: bool| {
            seconds(|| {
                let out = if ours {
                    keen_kernels::conv2d_layer(&conv_ad, x_ad.clone())
                } else {
                    conv_ad.forward(x_ad.clone())
                };
                let grads = out.sum().backward();
                let _ = conv_ad.weight.grad(&grads).map(Tensor::into_data);
            })
        };
        // One untimed run of each warms caches and allocator pools.
        for ours in [true, false] {
            forward(ours);
            training(ours);
        }
        let mut times = [vec![], vec![], vec![], vec![]];
        for _ in 0..rounds {
            times[0].push(forward(true));
            times[1].push(forward(false));
            times[2].push(training(true));
            times[3].push(training(false));
        }
        let [a, b, c, d] = times.map(|t| median(t) * 1e3);
        println!(
            "{:<24} | {:>8.2} / {:<8.2} ({:.2}x) | {:>8.2} / {:<8.2} ({:.2}x)",
            layer.name,
            a,
            b,
            b / a,
            c,
            d,
            d / c
        );
    }
}
