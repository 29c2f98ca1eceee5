//! A keen model as keen-robust's [`InputGradient`]: losses, logits and pixel gradients for the
//! attacks.
//!
//! The attacks work on pixels in `[0, 1]`; the model's normalisation is applied inside the
//! differentiated function, so the gradient is with respect to the pixels. The model runs in
//! inference mode: [`Module::valid`] clears the training flags (batch norm then uses its
//! running statistics, dropout is off, whatever the device) and moves the weights off autodiff,
//! so only the input is tracked and the weights get no gradient. burn treats the plain weights
//! as constants when an autodiff input meets them.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::TensorData;
use keen_data::loader::Normalization;
use keen_models::{ImageClassifier, KeenModel};
use keen_robust::attack::{InputGradient, LossGradient};
use keen_robust::RobustError;

use crate::tensors::{labels_tensor, to_f32_vec};

/// A model in inference mode with its normalisation, answering the attacks' queries.
pub struct ModelInputGradient {
    model: KeenModel,
    shape: [usize; 3],
    num_classes: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    device: Device,
}

impl ModelInputGradient {
    /// Wraps `model` (any mode, any device; it is put in inference mode on `device`) for images
    /// of `shape` normalised by `normalization`.
    pub fn new(
        model: &KeenModel,
        shape: [usize; 3],
        normalization: &Normalization,
        device: &Device,
    ) -> Result<Self, RobustError> {
        let channels = shape[0];
        if normalization.mean.len() != channels || normalization.std.len() != channels {
            return Err(RobustError::LengthMismatch {
                what: "normalisation (one mean and std per channel)",
                expected: channels,
                found: normalization.mean.len().min(normalization.std.len()),
            });
        }
        let plain = device.clone().inner();
        Ok(Self {
            model: model.valid().to_device(&plain),
            shape,
            num_classes: model.num_classes(),
            mean: normalization.mean.clone(),
            std: normalization.std.clone(),
            device: plain,
        })
    }

    fn check(&self, pixels: &[f32], labels: &[u32]) -> Result<(), RobustError> {
        let image_len = self.image_len();
        if pixels.len() != labels.len() * image_len {
            return Err(RobustError::LengthMismatch {
                what: "pixels (labels × image size)",
                expected: labels.len() * image_len,
                found: pixels.len(),
            });
        }
        Ok(())
    }

    /// `(pixels − mean) / std`, channel by channel.
    fn normalise(&self, pixels: Tensor<4>) -> Tensor<4> {
        let device = pixels.device();
        let channels = self.shape[0];
        let mean = Tensor::<1>::from_data(TensorData::new(self.mean.clone(), [channels]), &device)
            .reshape([1, channels, 1, 1]);
        let inv_std: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inv_std = Tensor::<1>::from_data(TensorData::new(inv_std, [channels]), &device)
            .reshape([1, channels, 1, 1]);
        (pixels - mean) * inv_std
    }

    /// Per-image cross-entropy `[n]` from logits.
    fn per_image_loss(&self, logits: Tensor<2>, labels: &[u32]) -> Tensor<1> {
        let device = logits.device();
        let picked = log_softmax(logits, 1).gather(
            1,
            labels_tensor(labels, &device.inner()).reshape([labels.len(), 1]),
        );
        picked.neg().flatten::<1>(0, 1)
    }

    fn pixels_tensor(&self, pixels: &[f32], n: usize, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.shape;
        Tensor::from_data(TensorData::new(pixels.to_vec(), [n, c, h, w]), device)
    }
}

impl ModelInputGradient {
    /// The gradient wrt `pixels` of each image's `KL(reference ‖ softmax(model(pixels)))`,
    /// where `reference_probs` holds `[n, classes]` fixed probabilities (TRADES' inner
    /// maximisation, which attacks the divergence from the clean prediction, not the labels).
    pub fn kl_gradient(
        &self,
        pixels: &[f32],
        reference_probs: &[f32],
    ) -> Result<Vec<f32>, RobustError> {
        let n = reference_probs.len() / self.num_classes.max(1);
        if pixels.len() != n * self.image_len() || reference_probs.len() != n * self.num_classes {
            return Err(RobustError::LengthMismatch {
                what: "pixels (reference rows × image size)",
                expected: n * self.image_len(),
                found: pixels.len(),
            });
        }
        let autodiff = self.device.clone().autodiff();
        let input = self.pixels_tensor(pixels, n, &autodiff).require_grad();
        let log_probs = log_softmax(self.model.forward(self.normalise(input.clone())), 1);
        let reference = Tensor::<2>::from_data(
            TensorData::new(reference_probs.to_vec(), [n, self.num_classes]),
            &self.device,
        );
        // KL = Σ p·(log p − log q); only −Σ p·log q depends on the input.
        let cross = (log_probs * reference).sum().neg();
        let grads = cross.backward();
        Ok(input
            .grad(&grads)
            .map(to_f32_vec)
            .unwrap_or_else(|| vec![0.0; pixels.len()]))
    }

    /// Softmax probabilities `[n, classes]` of the images.
    pub fn probabilities(&self, pixels: &[f32]) -> Vec<f32> {
        let n = pixels.len() / self.image_len().max(1);
        let input = self.pixels_tensor(pixels, n, &self.device);
        let logits = self.model.forward(self.normalise(input));
        to_f32_vec(burn::tensor::activation::softmax(logits, 1))
    }
}

impl InputGradient for ModelInputGradient {
    fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<LossGradient, RobustError> {
        self.tempered_loss_and_gradient(pixels, labels, 1.0)
    }

    fn tempered_loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
        temperature: f32,
    ) -> Result<LossGradient, RobustError> {
        self.check(pixels, labels)?;
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(RobustError::InvalidArgument {
                name: "temperature",
                value: temperature.to_string(),
                reason: "must be a finite number > 0".into(),
            });
        }
        let autodiff = self.device.clone().autodiff();
        let input = self
            .pixels_tensor(pixels, labels.len(), &autodiff)
            .require_grad();
        let logits = self.model.forward(self.normalise(input.clone()));
        let loss = if temperature == 1.0 {
            self.per_image_loss(logits.clone(), labels)
        } else {
            self.per_image_loss(logits.clone() / temperature, labels)
        };
        // Each image's loss depends on its own pixels only (inference mode), so the gradient
        // of the sum is every image's own gradient.
        let grads = loss.clone().sum().backward();
        let gradient = input
            .grad(&grads)
            .map(to_f32_vec)
            .unwrap_or_else(|| vec![0.0; pixels.len()]);
        Ok(LossGradient {
            loss: to_f32_vec(loss.inner()),
            logits: to_f32_vec(logits.inner()),
            gradient,
        })
    }

    fn loss_and_logits(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>), RobustError> {
        self.check(pixels, labels)?;
        let input = self.pixels_tensor(pixels, labels.len(), &self.device);
        let logits = self.model.forward(self.normalise(input));
        let loss = self.per_image_loss(logits.clone(), labels);
        Ok((to_f32_vec(loss), to_f32_vec(logits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::seeded_model;
    use keen_models::ModelSpec;

    fn wrapped(model: &str, shape: [usize; 3]) -> ModelInputGradient {
        let device = Device::flex();
        let spec = ModelSpec::new(model, shape, 3);
        let model = seeded_model(&spec, 3, &device.clone().autodiff()).unwrap();
        let normalization = Normalization {
            mean: vec![0.3; shape[0]],
            std: vec![0.4; shape[0]],
        };
        ModelInputGradient::new(&model, shape, &normalization, &device).unwrap()
    }

    fn images(n: usize, len: usize) -> Vec<f32> {
        (0..n * len)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let model = wrapped("cnn-small", [1, 8, 8]);
        let pixels = images(2, 64);
        let labels = [1u32, 2];
        let out = model.loss_and_gradient(&pixels, &labels).unwrap();
        assert!(out.gradient.iter().any(|&g| g != 0.0));
        let h = 1e-3f32;
        for &j in &[3usize, 20, 37, 64 + 11, 64 + 50] {
            let mut up = pixels.clone();
            up[j] += h;
            let mut down = pixels.clone();
            down[j] -= h;
            let (lu, _) = model.loss_and_logits(&up, &labels).unwrap();
            let (ld, _) = model.loss_and_logits(&down, &labels).unwrap();
            let image = j / 64;
            let numeric = (lu[image] - ld[image]) / (2.0 * h);
            let analytic = out.gradient[j];
            assert!(
                (numeric - analytic).abs() <= 0.05 * analytic.abs().max(numeric.abs()) + 1e-3,
                "pixel {j}: numeric {numeric} vs analytic {analytic}"
            );
        }
    }

    #[test]
    fn tempered_gradient_matches_the_temperature_one_gradients() {
        // With J the logits' Jacobian, the T = 1 gradient for label c is g(c) = Jᵀ(p − e_c), so
        // g(y) − g(c) = Jᵀ(e_c − e_y), and the gradient of CE(logits / T, y) is
        // Jᵀ(q − e_y) / T = Σ_c q_c (g(y) − g(c)) / T with q = softmax(logits / T): an exact
        // identity, free of the max-pool kinks that trouble finite differences.
        let model = wrapped("cnn-small", [1, 8, 8]);
        let pixels = images(1, 64);
        let (y, t) = (2u32, 5.0f32);
        let tempered = model.tempered_loss_and_gradient(&pixels, &[y], t).unwrap();
        let g: Vec<Vec<f32>> = (0..3u32)
            .map(|c| model.loss_and_gradient(&pixels, &[c]).unwrap().gradient)
            .collect();
        let logits = &tempered.logits;
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let weights: Vec<f32> = logits.iter().map(|z| ((z - max) / t).exp()).collect();
        let total: f32 = weights.iter().sum();
        let q: Vec<f32> = weights.iter().map(|w| w / total).collect();
        let expected_loss = -q[y as usize].ln();
        assert!((tempered.loss[0] - expected_loss).abs() < 1e-5);
        for (j, &got) in tempered.gradient.iter().enumerate() {
            let expected: f32 = (0..3)
                .map(|c| q[c] * (g[y as usize][j] - g[c][j]))
                .sum::<f32>()
                / t;
            assert!(
                (got - expected).abs() <= 1e-3 * expected.abs().max(got.abs()) + 1e-6,
                "pixel {j}: {got} vs {expected}"
            );
        }
        assert!(model
            .tempered_loss_and_gradient(&pixels, &[y], 0.0)
            .is_err());
    }

    #[test]
    fn batch_norm_uses_running_statistics() {
        // In inference mode an image's loss does not depend on the rest of its batch.
        let model = wrapped("resnet8", [1, 8, 8]);
        let pixels = images(3, 64);
        let labels = [0u32, 1, 2];
        let batch = model.loss_and_gradient(&pixels, &labels).unwrap();
        let alone = model
            .loss_and_gradient(&pixels[..64], &labels[..1])
            .unwrap();
        assert!((batch.loss[0] - alone.loss[0]).abs() < 1e-5);
        for (a, b) in batch.gradient[..64].iter().zip(&alone.gradient) {
            assert!((a - b).abs() < 1e-5);
        }
        let (loss, logits) = model.loss_and_logits(&pixels, &labels).unwrap();
        assert!((loss[2] - batch.loss[2]).abs() < 1e-5);
        assert_eq!(logits.len(), 9);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let model = wrapped("cnn-small", [1, 8, 8]);
        assert!(model.loss_and_gradient(&[0.5; 63], &[0]).is_err());
        let bad = Normalization {
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        let spec = ModelSpec::new("cnn-small", [1, 8, 8], 3);
        let device = Device::flex();
        let m = seeded_model(&spec, 1, &device).unwrap();
        assert!(ModelInputGradient::new(&m, [1, 8, 8], &bad, &device).is_err());
    }
}
