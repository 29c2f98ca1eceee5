//! Half-precision export: the same model file with every float tensor stored as FP16 or BF16,
//! half the bytes. The metadata (architecture, normalisation, classes, graph) is kept, and
//! `keen.dtype` says which format the weights are in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::CompressError;

/// A 16-bit float format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HalfType {
    /// IEEE half precision: 10-bit mantissa, range ±65504.
    Fp16,
    /// bfloat16: float32's range with a 7-bit mantissa.
    Bf16,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HalfExportReport {
    /// The format.
    pub dtype: HalfType,
    /// Tensors converted.
    pub tensors: usize,
    /// Bytes of the source and of the exported file.
    pub bytes: [u64; 2],
    /// Largest absolute change of any weight.
    pub max_abs_error: f32,
    /// The exported file.
    pub path: PathBuf,
}

/// Writes `source`'s tensors as `dtype` to `out` (atomically).
pub fn export_half(
    source: &Path,
    out: &Path,
    dtype: HalfType,
) -> Result<HalfExportReport, CompressError> {
    let bad = |reason: String| CompressError::BadModel {
        path: source.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(source).map_err(|e| CompressError::Io {
        path: source.to_path_buf(),
        source: e,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut max_abs_error = 0.0f32;
    for (name, view) in tensors.tensors() {
        let (out_dtype, data) = if view.dtype() == Dtype::F32 {
            let mut data = Vec::with_capacity(view.data().len() / 2);
            for chunk in view.data().chunks_exact(4) {
                let v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                let (bits, back) = match dtype {
                    HalfType::Fp16 => {
                        let h = half::f16::from_f32(v);
                        (h.to_bits(), h.to_f32())
                    }
                    HalfType::Bf16 => {
                        let h = half::bf16::from_f32(v);
                        (h.to_bits(), h.to_f32())
                    }
                };
                max_abs_error = max_abs_error.max((back - v).abs());
                data.extend_from_slice(&bits.to_le_bytes());
            }
            let out_dtype = match dtype {
                HalfType::Fp16 => Dtype::F16,
                HalfType::Bf16 => Dtype::BF16,
            };
            (out_dtype, data)
        } else {
            (view.dtype(), view.data().to_vec())
        };
        converted.push((name.to_string(), out_dtype, view.shape().to_vec(), data));
    }
    metadata.insert(
        "keen.dtype".into(),
        serde_json::to_string(&dtype).unwrap_or_default(),
    );
    let views: Vec<(String, TensorView<'_>)> = converted
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| bad(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<_, _>>()?;
    let count = views.len();
    let out_bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| bad(format!("cannot write: {e}")))?;
    keen_models::weights::write_atomic(out, &out_bytes).map_err(|e| CompressError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    Ok(HalfExportReport {
        dtype,
        tensors: count,
        bytes: [bytes.len() as u64, out_bytes.len() as u64],
        max_abs_error,
        path: out.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::*;
    use burn::tensor::{Distribution, Tolerance};
    use keen_models::{build_model, weights, ImageClassifier, ModelSpec};
    use std::collections::BTreeMap;

    #[test]
    fn half_exports_are_half_the_size_and_load_back_close() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::new("resnet8-slim", [1, 28, 28], 10);
        device.seed(2);
        let model = build_model(&spec, &device).unwrap();
        let source = dir.path().join("model.safetensors");
        weights::save(&model, &spec, &BTreeMap::new(), &source).unwrap();
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let expected = model.valid().forward(images.clone()).into_data();
        for dtype in [HalfType::Fp16, HalfType::Bf16] {
            let out = dir.path().join(format!("{dtype:?}.safetensors"));
            let report = export_half(&source, &out, dtype).unwrap();
            assert!(
                report.bytes[1] * 10 < report.bytes[0] * 6,
                "{:?}",
                report.bytes
            );
            let loaded = weights::load(&out, &device).unwrap();
            assert_eq!(
                loaded.metadata.get("keen.dtype").map(|s| s.contains("16")),
                Some(true)
            );
            let actual = loaded.model.valid().forward(images.clone()).into_data();
            actual.assert_approx_eq::<f32>(&expected, Tolerance::absolute(0.05));
        }
    }

    #[test]
    fn a_file_that_is_not_safetensors_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("junk.safetensors");
        std::fs::write(&source, b"hello").unwrap();
        let err = export_half(&source, &dir.path().join("out"), HalfType::Fp16).unwrap_err();
        assert!(err.to_string().contains("junk.safetensors"), "{err}");
    }
}
