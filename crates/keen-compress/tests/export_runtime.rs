//! Models exported to keen-runtime compute what keen computes: fp32 within 1e-4, INT8 as the
//! fake-quantized graph does.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use keen_compress::export_runtime::to_runtime;
use keen_compress::quantize::{calibrate, enable, prepare, CalibrationConfig};
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_models::{build_model, ImageClassifier, KeenModel, ModelSpec};

fn random_dataset(n: usize, seed: u64) -> ImageDataset {
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(7);
    let images = (0..n * 28 * 28)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    ImageDataset {
        name: "noise".into(),
        images,
        labels: (0..n as u32).map(|i| i % 10).collect(),
        channels: 1,
        height: 28,
        width: 28,
        class_names: (0..10).map(|i| format!("c{i}")).collect(),
    }
}

fn run_runtime(model: &keen_runtime::Model, images: &Tensor<4>) -> Vec<f32> {
    let shape = images.dims().to_vec();
    let data = images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let input = keen_runtime::Tensor::new(shape, data).unwrap();
    model.run(&input).unwrap().data().to_vec()
}

fn logits(model: &KeenModel, images: &Tensor<4>) -> Vec<f32> {
    model
        .valid()
        .forward(images.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn fp32_exports_match_burn() {
    let device = Device::flex();
    for name in ["cnn-small", "resnet8", "mobilenet-v2-tiny"] {
        device.seed(4);
        let model = build_model(&ModelSpec::new(name, [1, 28, 28], 10), &device).unwrap();
        let graph = model.to_graph([1, 28, 28]).unwrap();
        let runtime = to_runtime(&graph, vec![], None).unwrap().build().unwrap();
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let expected = logits(&model, &images);
        let actual = run_runtime(&runtime, &images);
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-4, "{name}: {a} vs {e}");
        }
    }
}

#[test]
fn int8_exports_compute_what_the_fake_quantized_graph_computes() {
    let device = Device::flex();
    let data = Arc::new(random_dataset(64, 1));
    let normalization = Normalization::fit(&data);
    for name in ["cnn-small", "resnet8", "mobilenet-v2-tiny"] {
        device.seed(5);
        let model = build_model(&ModelSpec::new(name, [1, 28, 28], 10), &device).unwrap();
        let graph = prepare(&model, [1, 28, 28]).unwrap();
        let indices: Vec<usize> = (0..64).collect();
        let ranges = calibrate(
            &graph,
            &data,
            &indices,
            &normalization,
            &CalibrationConfig {
                batches: 2,
                batch_size: 32,
                ..CalibrationConfig::default()
            },
            &device,
        );
        let quantized = KeenModel::Graph(enable(graph, ranges, false));
        let KeenModel::Graph(g) = &quantized else {
            unreachable!()
        };
        let runtime = to_runtime(g, vec![], None).unwrap().build().unwrap();
        let images = Tensor::<4>::from_data(
            TensorData::new(
                (0..8 * 784)
                    .map(|i| ((i * 37 % 255) as f32 / 255.0 - 0.5) * 3.0)
                    .collect::<Vec<f32>>(),
                [8, 1, 28, 28],
            ),
            &device,
        );
        let expected = logits(&quantized, &images);
        let actual = run_runtime(&runtime, &images);
        let scale = expected
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-3);
        let worst = actual
            .iter()
            .zip(&expected)
            .fold(0.0f32, |m, (a, e)| m.max((a - e).abs()));
        // Rounding ties and requantization arithmetic differ by at most a code here and there.
        assert!(
            worst < 0.1 * scale,
            "{name}: worst |diff| {worst} vs logit scale {scale}"
        );
    }
}
