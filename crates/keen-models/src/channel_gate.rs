//! Global-context gates for residual blocks: squeeze-and-excitation (Hu et al. 2018) and the
//! global context block (Cao et al. 2019, GCNet).
//!
//! Both summarise the whole feature map into one vector per image and feed it back to every
//! position: SE rescales the channels (`x · σ(W₂ ReLU(W₁ avgpool(x)))`), GC adds a transformed
//! attention-pooled context (`x + W₂ ReLU(LN(W₁ Σ softmax(w·x)·x))`). They sit on a block's
//! residual branch before the addition, as in SE-ResNet and GCNet.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softmax};

use crate::flops::linear_macs;

/// Which gate a ResNet's blocks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    /// Squeeze-and-excitation with this channel reduction.
    SqueezeExcite {
        /// Hidden width is `channels / reduction` (at least 4).
        reduction: usize,
    },
    /// A global context block with this channel reduction.
    GlobalContext {
        /// Hidden width is `channels / reduction` (at least 4).
        reduction: usize,
    },
}

/// Hidden width of a gate's bottleneck: small widths (16 channels) keep at least 4 units, so the
/// gate does not collapse to one or two numbers.
fn hidden(channels: usize, reduction: usize) -> usize {
    (channels / reduction.max(1)).max(4).min(channels)
}

/// Squeeze-and-excitation: channel weights from the global average.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    fc1: Linear,
    fc2: Linear,
}

impl SqueezeExcite {
    fn new(channels: usize, reduction: usize, device: &Device) -> Self {
        let h = hidden(channels, reduction);
        Self {
            fc1: LinearConfig::new(channels, h).init(device),
            fc2: LinearConfig::new(h, channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, _, _] = x.dims();
        let pooled = x.clone().mean_dim(3).mean_dim(2).reshape([batch, channels]);
        let weights = sigmoid(self.fc2.forward(relu(self.fc1.forward(pooled))));
        x * weights.reshape([batch, channels, 1, 1])
    }
}

/// Global context block: attention pooling, a bottleneck transform, added to every position.
#[derive(Module, Debug)]
pub struct GlobalContext {
    mask: Linear,
    fc1: Linear,
    norm: LayerNorm,
    fc2: Linear,
}

impl GlobalContext {
    fn new(channels: usize, reduction: usize, device: &Device) -> Self {
        let h = hidden(channels, reduction);
        Self {
            mask: LinearConfig::new(channels, 1).init(device),
            fc1: LinearConfig::new(channels, h).init(device),
            norm: LayerNormConfig::new(h).init(device),
            fc2: LinearConfig::new(h, channels).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let tokens = x.clone().reshape([batch, channels, height * width]);
        // One attention weight per position (a 1×1 convolution to one channel), softmax over
        // positions, then the weighted sum of the features: [B, C].
        let logits = self.mask.forward(tokens.clone().swap_dims(1, 2)); // [B, HW, 1]
        let weights = softmax(logits, 1);
        let context = tokens.matmul(weights).reshape([batch, channels]);
        let transform = self
            .fc2
            .forward(relu(self.norm.forward(self.fc1.forward(context))));
        x + transform.reshape([batch, channels, 1, 1])
    }
}

/// A gate of either kind.
#[derive(Module, Debug)]
// Boxing a variant would change the module's record layout for nothing: one gate per block.
#[allow(clippy::large_enum_variant)]
pub enum ChannelGate {
    /// Squeeze-and-excitation.
    SqueezeExcite(SqueezeExcite),
    /// Global context.
    GlobalContext(GlobalContext),
}

impl ChannelGate {
    /// A gate of `kind` for `channels` channels.
    pub fn new(kind: GateKind, channels: usize, device: &Device) -> Self {
        match kind {
            GateKind::SqueezeExcite { reduction } => {
                Self::SqueezeExcite(SqueezeExcite::new(channels, reduction, device))
            }
            GateKind::GlobalContext { reduction } => {
                Self::GlobalContext(GlobalContext::new(channels, reduction, device))
            }
        }
    }

    /// Gates `x` `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::SqueezeExcite(se) => se.forward(x),
            Self::GlobalContext(gc) => gc.forward(x),
        }
    }

    /// MACs on a `channels`-channel map of `positions` positions (the rescaling or addition
    /// counted as one multiply per element).
    pub fn macs(&self, positions: usize) -> u64 {
        match self {
            Self::SqueezeExcite(se) => {
                let [c, h] = se.fc1.weight.dims();
                linear_macs(c, h, 1) + linear_macs(h, c, 1) + (c * positions) as u64
            }
            Self::GlobalContext(gc) => {
                let [c, h] = gc.fc1.weight.dims();
                // Mask logits and the weighted sum, then the bottleneck.
                linear_macs(c, 1, positions)
                    + (c * positions) as u64
                    + linear_macs(c, h, 1)
                    + linear_macs(h, c, 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn squeeze_excite_only_rescales_channels() {
        let device = Device::flex();
        let gate = ChannelGate::new(GateKind::SqueezeExcite { reduction: 4 }, 16, &device);
        // A map constant over positions stays constant over positions, scaled into (0, 1).
        let x = Tensor::<4>::ones([2, 16, 5, 5], &device);
        let out = gate.forward(x).into_data().try_to_vec::<f32>().unwrap();
        for channel in out.chunks(25) {
            assert!(channel.iter().all(|v| (*v - channel[0]).abs() < 1e-6));
            assert!(channel[0] > 0.0 && channel[0] < 1.0);
        }
    }

    #[test]
    fn global_context_adds_one_vector_to_every_position() {
        let device = Device::flex();
        let gate = ChannelGate::new(GateKind::GlobalContext { reduction: 8 }, 32, &device);
        let x = Tensor::<4>::random([2, 32, 4, 4], Distribution::Default, &device);
        let delta = (gate.forward(x.clone()) - x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for channel in delta.chunks(16) {
            assert!(channel.iter().all(|v| (*v - channel[0]).abs() < 1e-5));
        }
    }
}
