//! Small models with exact gradients, for tests and for checking the checks: a linear
//! classifier (honest: its gradient is the true one) and the same classifier behind an input
//! quantiser (its gradient is zero almost everywhere, as autodiff reports it through a
//! rounding step: the textbook case of gradient masking).

use super::{InputGradient, LossGradient};
use crate::error::RobustError;

/// `logits = W·x + b`, with the cross-entropy's input gradient `Wᵀ(softmax(logits) − onehot)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    /// Row-major `[classes, image_len]`.
    pub weights: Vec<f32>,
    /// `[classes]`.
    pub bias: Vec<f32>,
}

impl LinearModel {
    fn logits(&self, image: &[f32]) -> Vec<f32> {
        let d = image.len();
        self.bias
            .iter()
            .enumerate()
            .map(|(c, &b)| {
                let w = &self.weights[c * d..(c + 1) * d];
                b + w.iter().zip(image).map(|(&w, &x)| w * x).sum::<f32>()
            })
            .collect()
    }

    fn check(&self, pixels: &[f32], labels: &[u32]) -> Result<(), RobustError> {
        if pixels.len() != labels.len() * self.image_len() {
            return Err(RobustError::LengthMismatch {
                what: "pixels (labels × image size)",
                expected: labels.len() * self.image_len(),
                found: pixels.len(),
            });
        }
        Ok(())
    }

    /// Loss, logits and gradient of the images `inputs` (already transformed), for the
    /// cross-entropy of `logits / temperature`, with the gradient multiplied by
    /// `gradient_scale` (0 for a masked model).
    fn evaluate(
        &self,
        inputs: &[f32],
        labels: &[u32],
        temperature: f32,
        gradient_scale: f32,
    ) -> LossGradient {
        let (d, k) = (self.image_len(), self.num_classes());
        let mut out = LossGradient {
            loss: Vec::with_capacity(labels.len()),
            logits: Vec::with_capacity(labels.len() * k),
            gradient: vec![0.0; inputs.len()],
        };
        for (i, (image, &label)) in inputs.chunks(d).zip(labels).enumerate() {
            let logits = self.logits(image);
            let scaled: Vec<f32> = logits.iter().map(|&z| z / temperature).collect();
            let max = scaled.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f32 = scaled.iter().map(|&v| (v - max).exp()).sum();
            let log_sum = max + sum.ln();
            out.loss.push(log_sum - scaled[label as usize]);
            let grad = &mut out.gradient[i * d..(i + 1) * d];
            // d(z / T)/dx = W / T: the chain rule's 1/T lands on every coefficient.
            for (c, &z) in scaled.iter().enumerate() {
                let coefficient = ((z - log_sum).exp() - f32::from(c == label as usize))
                    * gradient_scale
                    / temperature;
                for (g, &w) in grad.iter_mut().zip(&self.weights[c * d..(c + 1) * d]) {
                    *g += coefficient * w;
                }
            }
            out.logits.extend(logits);
        }
        out
    }
}

impl InputGradient for LinearModel {
    fn image_len(&self) -> usize {
        self.weights.len() / self.bias.len().max(1)
    }

    fn num_classes(&self) -> usize {
        self.bias.len()
    }

    fn loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<LossGradient, RobustError> {
        self.check(pixels, labels)?;
        Ok(self.evaluate(pixels, labels, 1.0, 1.0))
    }

    fn tempered_loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
        temperature: f32,
    ) -> Result<LossGradient, RobustError> {
        self.check(pixels, labels)?;
        Ok(self.evaluate(pixels, labels, temperature, 1.0))
    }
}

/// A [`LinearModel`] that first rounds every pixel to `levels` steps: its outputs change only
/// at the step edges, so its gradient (as autodiff computes it) is zero.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantisedInputModel {
    /// The classifier after the quantiser.
    pub linear: LinearModel,
    /// Quantisation steps over `[0, 1]`.
    pub levels: f32,
}

impl InputGradient for QuantisedInputModel {
    fn image_len(&self) -> usize {
        self.linear.image_len()
    }

    fn num_classes(&self) -> usize {
        self.linear.num_classes()
    }

    fn loss_and_gradient(
        &self,
        pixels: &[f32],
        labels: &[u32],
    ) -> Result<LossGradient, RobustError> {
        self.linear.check(pixels, labels)?;
        let quantised: Vec<f32> = pixels
            .iter()
            .map(|&p| (p * self.levels).round() / self.levels)
            .collect();
        Ok(self.linear.evaluate(&quantised, labels, 1.0, 0.0))
    }
}
