//! Moving batches of plain buffers onto a device, and results back.

use burn::prelude::*;
use burn::tensor::TensorData;

/// The batch's images as a `[B, C, H, W]` tensor on `device`.
pub fn images_tensor(images: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(images, shape), device)
}

/// The batch's labels as an integer tensor on `device`.
pub fn labels_tensor(labels: &[u32], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(values, [labels.len()]), device)
}

/// A float tensor's values, row-major.
pub fn to_f32_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}
