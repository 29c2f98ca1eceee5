//! Post-training quantization and the set-up of QAT for ViTs and DeiTs, whose attention has no
//! graph form: their layers with weights (patch embedding, `qkv`, `proj`, `fc1`, `fc2`, heads)
//! are fake-quantized in place ([`keen_models::linear_quant`]) with the graph's INT8 scheme.
//! There are no batch norms to fold; calibration records each layer input's range.

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use keen_data::dataset::ImageDataset;
use keen_data::loader::{epoch_batches, LoaderConfig, Normalization};
use keen_models::graph::quant::{Observer, QuantConfig, QuantState};
use keen_models::{ImageClassifier, KeenModel};
use keen_train::tensors::images_tensor;

use crate::quantize::{CalibrationConfig, RangeMethod};
use crate::CompressError;

/// Whether `model` quantizes its linear layers in place (a ViT or DeiT) rather than through a
/// graph.
pub fn quantizes_in_place(model: &KeenModel) -> bool {
    model.linear_quant().is_some()
}

/// Calibrates the input range of every layer with weights of a ViT or DeiT on `indices` of
/// `dataset`: the smallest and largest value each sees, in float.
pub fn calibrate_linear(
    model: &KeenModel,
    dataset: &Arc<ImageDataset>,
    indices: &[usize],
    normalization: &Normalization,
    config: &CalibrationConfig,
    device: &Device,
) -> Result<Vec<Option<[f32; 2]>>, CompressError> {
    if config.method != RangeMethod::MinMax {
        // Percentile and MSE ranges need every value's sample, which the graph's visitor
        // collects; the in-place layers only keep a running range.
        return Err(CompressError::BadConfig(
            "vit and deit models calibrate with --method minmax only".into(),
        ));
    }
    let state = QuantState {
        config: QuantConfig {
            enabled: false,
            observe: true,
            observer: Observer::MinMax,
            float_nodes: Vec::new(),
        },
        ranges: Arc::new(Mutex::new(Vec::new())),
    };
    let calibrating = model.valid().with_linear_quant(state.clone())?;
    let loader = LoaderConfig::eval(config.batch_size, normalization.clone());
    let take = indices.len().min(config.batches * config.batch_size);
    for batch in epoch_batches(dataset, &indices[..take], &loader, 0) {
        let images = images_tensor(batch.images, batch.shape, device);
        // Only the observers' side effect is wanted; reading the logits makes the lazy
        // backend run the batch.
        let _ = calibrating.forward(images).into_data();
    }
    Ok(state.ranges())
}

/// Turns on fake quantization of a ViT's or DeiT's layers with `ranges`; `observe` lets QAT
/// keep updating them (PyTorch's moving-average observer, constant 0.01, as the graph's QAT).
pub fn enable_linear(
    model: KeenModel,
    ranges: Vec<Option<[f32; 2]>>,
    observe: bool,
) -> Result<KeenModel, CompressError> {
    let state = QuantState::enabled(ranges, observe);
    Ok(model.with_linear_quant(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keen_data::toy::{halves_dataset, Halves};
    use keen_models::{build_model, weights, ModelSpec};
    use std::collections::BTreeMap;

    fn calibrated(model: &str, device: &Device) -> (KeenModel, KeenModel, Tensor<4>) {
        let dataset = Arc::new(halves_dataset(64, 1, Halves::LeftRight));
        let spec = ModelSpec::new(model, dataset.image_shape(), dataset.num_classes());
        device.seed(2);
        let float = build_model(&spec, device).expect("build");
        let normalization = Normalization::fit(&dataset);
        let indices: Vec<usize> = (0..48).collect();
        let config = CalibrationConfig {
            batches: 2,
            batch_size: 24,
            method: RangeMethod::MinMax,
        };
        let ranges = calibrate_linear(&float, &dataset, &indices, &normalization, &config, device)
            .expect("calibrate");
        // Patch embedding, 4 per block, and the heads (two for a DeiT): every point seen.
        let heads = if model == "deit-tiny" { 2 } else { 1 };
        assert_eq!(ranges.len(), 1 + 4 * 4 + heads, "{model}");
        assert!(ranges.iter().all(|r| r.is_some_and(|[lo, hi]| lo < hi)));
        let quantized = enable_linear(float.clone(), ranges, false).expect("enable");
        let test: Vec<usize> = (48..64).collect();
        let batch = epoch_batches(&dataset, &test, &LoaderConfig::eval(16, normalization), 0)
            .next()
            .expect("batch");
        (
            float,
            quantized,
            images_tensor(batch.images, batch.shape, device),
        )
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn int8_vit_and_deit_logits_stay_close_to_float_and_survive_save_and_load() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("tempdir");
        for model in ["vit-tiny", "deit-tiny"] {
            let (float, quantized, images) = calibrated(model, &device);
            let expected = values(float.valid().forward(images.clone()));
            let actual = values(quantized.valid().forward(images.clone()));
            let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = expected
                .iter()
                .zip(&actual)
                .fold(0.0f32, |m, (e, a)| m.max((e - a).abs()));
            // INT8 with per-channel weights moves logits by a few percent of their range, and
            // does move them (quantization is on).
            assert!(
                worst > 0.0 && worst < 0.05 * scale,
                "{model}: {worst} vs {scale}"
            );

            let spec = ModelSpec::new(model, [1, 12, 12], 2);
            let path = dir.path().join(format!("{model}-int8.safetensors"));
            weights::save(&quantized, &spec, &BTreeMap::new(), &path).expect("save");
            let loaded = weights::load(&path, &device).expect("load").model;
            let state = loaded.linear_quant().expect("a vit");
            assert!(state.config.enabled);
            assert_eq!(
                state.ranges(),
                quantized.linear_quant().expect("vit").ranges()
            );
            let reloaded = values(loaded.valid().forward(images));
            for (a, b) in actual.iter().zip(&reloaded) {
                assert!((a - b).abs() < 1e-5, "{model}: {a} vs {b} after load");
            }
            // A float model's file carries no quantization.
            let path = dir.path().join(format!("{model}.safetensors"));
            weights::save(&float, &spec, &BTreeMap::new(), &path).expect("save");
            let loaded = weights::load(&path, &device).expect("load").model;
            assert!(!loaded.linear_quant().expect("vit").config.enabled);
        }
    }

    #[test]
    fn other_range_methods_and_cnns_are_clear_errors() {
        let device = Device::flex();
        let dataset = Arc::new(halves_dataset(8, 1, Halves::LeftRight));
        let spec = ModelSpec::new("vit-tiny", dataset.image_shape(), 2);
        let vit = build_model(&spec, &device).expect("vit");
        let mse = CalibrationConfig {
            method: RangeMethod::Mse,
            ..CalibrationConfig::default()
        };
        let normalization = Normalization::fit(&dataset);
        assert!(matches!(
            calibrate_linear(&vit, &dataset, &[0, 1], &normalization, &mse, &device),
            Err(CompressError::BadConfig(_))
        ));
        let spec = ModelSpec::new("resnet8", dataset.image_shape(), 2);
        let cnn = build_model(&spec, &device).expect("resnet8");
        assert!(!quantizes_in_place(&cnn));
        assert!(enable_linear(cnn, Vec::new(), false).is_err());
    }
}
