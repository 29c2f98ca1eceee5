//! The model registry: every model keen can build, by name, behind one type.
//!
//! To add a model: write its file, add a variant to [`KeenModel`] (and to the `dispatch!`
//! macro's list) and one row to [`REGISTRY`]. The registry-driven tests then cover it with no new
//! test code.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::botnet::BotNet;
use crate::channel_gate::GateKind;
use crate::cnn_small::CnnSmall;
use crate::deit::Deit;
use crate::graph::GraphNet;
use crate::mobilenet_v2::MobileNetV2;
use crate::resnet::ResNet;
use crate::vit::{AttentionMaps, Block, BlockShape, Vit, VitConfig};
use crate::{ImageClassifier, ModelError};

/// Everything needed to rebuild a model's architecture: its registry name and its input and
/// output shapes. Stored in every weight file keen writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Registry name, e.g. `resnet20`.
    pub model: String,
    /// Image channels (1 for grayscale, 3 for RGB).
    pub in_channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes of the head.
    pub num_classes: usize,
}

impl ModelSpec {
    /// A spec for `model` on images `[channels, height, width]` with `num_classes` classes.
    pub fn new(model: &str, input: [usize; 3], num_classes: usize) -> Self {
        Self {
            model: model.to_string(),
            in_channels: input[0],
            height: input[1],
            width: input[2],
            num_classes,
        }
    }

    /// `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        [self.in_channels, self.height, self.width]
    }

    pub(crate) fn bad_input(&self, reason: &str) -> ModelError {
        ModelError::BadInput {
            model: self.model.clone(),
            input: self.input_shape(),
            reason: reason.to_string(),
        }
    }
}

/// One row of the registry.
pub struct ModelEntry {
    /// The name users type.
    pub name: &'static str,
    /// One line saying what the model is.
    pub summary: &'static str,
    /// Builds the model with freshly initialised weights.
    pub build: fn(&ModelSpec, &Device) -> Result<KeenModel, ModelError>,
}

/// Every model keen can build.
pub static REGISTRY: &[ModelEntry] = &[
    ModelEntry {
        name: "cnn-small",
        summary: "reference CNN: 2 conv + 2 linear layers (421,642 params on 28x28)",
        build: |spec, device| Ok(KeenModel::CnnSmall(CnnSmall::new(spec, device)?)),
    },
    ModelEntry {
        name: "cnn-madry",
        summary: "Madry et al.'s MNIST CNN: 5x5 kernels, 1,024-wide hidden layer (3.27M params)",
        build: |spec, device| {
            Ok(KeenModel::CnnSmall(CnnSmall::with_shape(
                spec,
                crate::cnn_small::CnnShape::MADRY,
                device,
            )?))
        },
    },
    ModelEntry {
        name: "cnn-wong",
        summary:
            "Wong & Kolter's small MNIST CNN: two 4x4 stride-2 convs, 100-wide hidden (166k params)",
        build: |spec, device| Ok(KeenModel::Graph(crate::cnn_wong::build(spec, device)?)),
    },
    ModelEntry {
        name: "resnet8",
        summary: "CIFAR-style ResNet, 1 basic block per stage, widths 16/32/64",
        build: |spec, device| Ok(KeenModel::ResNet(ResNet::new(spec, 1, device)?)),
    },
    ModelEntry {
        name: "resnet8-slim",
        summary: "resnet8 at half width (8/16/32): a distillation student 1/14 of resnet20",
        build: |spec, device| {
            Ok(KeenModel::ResNet(ResNet::with_widths(
                spec,
                1,
                crate::resnet::SLIM_WIDTHS,
                device,
            )?))
        },
    },
    ModelEntry {
        name: "resnet20",
        summary: "CIFAR-style ResNet, 3 basic blocks per stage, widths 16/32/64 (the teacher)",
        build: |spec, device| Ok(KeenModel::ResNet(ResNet::new(spec, 3, device)?)),
    },
    ModelEntry {
        name: "mobilenet-v2-tiny",
        summary: "depthwise-separable student: MobileNetV2 inverted residuals, ReLU6",
        build: |spec, device| Ok(KeenModel::MobileNetV2(MobileNetV2::new(spec, device)?)),
    },
    ModelEntry {
        name: "vit-tiny",
        summary: "reference ViT: 4x4 patches, 4 pre-norm blocks, dim 64, 4 heads, MLP 128",
        build: |spec, device| Ok(KeenModel::Vit(Vit::new(spec, VitConfig::TINY, device)?)),
    },
    ModelEntry {
        name: "vit-tiny-p7",
        summary: "vit-tiny on 7x7 patches: 16 tokens on 28x28, a third of the MACs",
        build: |spec, device| Ok(KeenModel::Vit(Vit::new(spec, VitConfig::TINY_P7, device)?)),
    },
    ModelEntry {
        name: "vit-small",
        summary: "ViT: 4x4 patches, 6 pre-norm blocks, dim 128, 4 heads, MLP 256",
        build: |spec, device| Ok(KeenModel::Vit(Vit::new(spec, VitConfig::SMALL, device)?)),
    },
    ModelEntry {
        name: "deit-tiny",
        summary: "vit-tiny with a distillation token and head (DeiT); predicts the heads' mean",
        build: |spec, device| Ok(KeenModel::Deit(Deit::new(spec, VitConfig::TINY, device)?)),
    },
    ModelEntry {
        name: "resnet20-se",
        summary: "resnet20 with squeeze-and-excitation (reduction 4) in every block",
        build: |spec, device| {
            Ok(KeenModel::ResNet(ResNet::with_gate(
                spec,
                3,
                crate::resnet::STAGE_WIDTHS,
                Some(GateKind::SqueezeExcite { reduction: 4 }),
                device,
            )?))
        },
    },
    ModelEntry {
        name: "resnet20-gc",
        summary: "resnet20 with a global context block (GCNet, reduction 4) in every block",
        build: |spec, device| {
            Ok(KeenModel::ResNet(ResNet::with_gate(
                spec,
                3,
                crate::resnet::STAGE_WIDTHS,
                Some(GateKind::GlobalContext { reduction: 4 }),
                device,
            )?))
        },
    },
    ModelEntry {
        name: "resnet20-bot",
        summary: "BoTNet hybrid: resnet20 with relative-position self-attention in stage 3",
        build: |spec, device| Ok(KeenModel::BotNet(BotNet::new(spec, 3, device)?)),
    },
];

/// The registry's rows, in display order.
pub fn available_models() -> &'static [ModelEntry] {
    REGISTRY
}

/// The registry row called `name`.
pub fn find_model(name: &str) -> Result<&'static ModelEntry, ModelError> {
    REGISTRY
        .iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            known: REGISTRY
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Builds `spec.model` with freshly initialised weights on `device`.
pub fn build_model(spec: &ModelSpec, device: &Device) -> Result<KeenModel, ModelError> {
    (find_model(&spec.model)?.build)(spec, device)
}

/// Any model of the registry. Code that trains, evaluates or saves models takes this type.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum KeenModel {
    /// `cnn-small`, `cnn-madry`.
    CnnSmall(CnnSmall),
    /// `resnet8`, `resnet20`.
    ResNet(ResNet),
    /// `mobilenet-v2-tiny`.
    MobileNetV2(MobileNetV2),
    /// `vit-tiny` and ViT variants.
    Vit(Vit),
    /// `deit-tiny`: a ViT with a distillation token.
    Deit(Deit),
    /// `resnet20-bot`: a ResNet with attention in its last stage.
    BotNet(BotNet),
    /// Any model as a graph: what compression produces (folded, pruned, quantized).
    Graph(GraphNet),
}

impl KeenModel {
    /// The same model as a graph (a clone of its layers), for compression and export.
    pub fn to_graph(&self, input: [usize; 3]) -> Result<GraphNet, ModelError> {
        match self {
            KeenModel::CnnSmall(m) => Ok(m.to_graph(input)),
            KeenModel::ResNet(m) => {
                m.check_lowerable()?;
                Ok(m.to_graph(input))
            }
            KeenModel::MobileNetV2(m) => Ok(m.to_graph(input)),
            KeenModel::Graph(m) => Ok(m.clone()),
            KeenModel::Vit(_) | KeenModel::Deit(_) | KeenModel::BotNet(_) => {
                Err(ModelError::BadGraph {
                    reason: "vit, deit and botnet models cannot be lowered to a graph yet \
                             (attention is not a graph op)"
                        .into(),
                })
            }
        }
    }

    /// The same model with stochastic depth (drop-path) at `rate` on its last transformer
    /// block, linearly less on earlier ones (timm's rule); only ViTs and DeiTs have it.
    pub fn with_drop_path(self, rate: f64) -> Result<Self, ModelError> {
        if rate == 0.0 {
            return Ok(self);
        }
        if !(0.0..1.0).contains(&rate) {
            return Err(ModelError::BadConfig {
                reason: format!("drop-path rate must be in [0, 1), got {rate}"),
            });
        }
        match self {
            KeenModel::Vit(m) => Ok(KeenModel::Vit(m.with_drop_path(rate))),
            KeenModel::Deit(m) => Ok(KeenModel::Deit(m.with_drop_path(rate))),
            _ => Err(ModelError::BadConfig {
                reason: "drop-path (stochastic depth) is only built into the vit and deit models"
                    .into(),
            }),
        }
    }

    /// The class head's and the distillation head's logits of a two-head (DeiT) model; `None`
    /// for every other model.
    pub fn forward_heads(&self, images: Tensor<4>) -> Option<(Tensor<2>, Tensor<2>)> {
        match self {
            KeenModel::Deit(m) => Some(m.forward_heads(images)),
            _ => None,
        }
    }
}

/// Transformer internals: attention maps for explanations, blocks for head and MLP pruning.
/// Only ViTs and DeiTs have them; every other model answers `None` or an error.
impl KeenModel {
    /// The logits and every block's attention probabilities of a ViT or DeiT.
    pub fn forward_with_attention(&self, images: Tensor<4>) -> Option<AttentionMaps> {
        match self {
            KeenModel::Vit(m) => Some(m.forward_with_attention(images)),
            KeenModel::Deit(m) => Some(m.forward_with_attention(images)),
            _ => None,
        }
    }

    /// The transformer blocks of a ViT or DeiT.
    pub fn transformer_blocks(&self) -> Option<&[Block]> {
        match self {
            KeenModel::Vit(m) => Some(m.blocks()),
            KeenModel::Deit(m) => Some(m.blocks()),
            _ => None,
        }
    }

    /// The same ViT or DeiT with every block rewritten by `f`, which gets the block's index.
    pub fn map_transformer_blocks(
        self,
        f: &mut dyn FnMut(usize, &Block) -> Result<Block, ModelError>,
    ) -> Result<Self, ModelError> {
        match self {
            KeenModel::Vit(m) => Ok(KeenModel::Vit(m.map_blocks(f)?)),
            KeenModel::Deit(m) => Ok(KeenModel::Deit(m.map_blocks(f)?)),
            _ => Err(not_a_transformer()),
        }
    }

    /// Each block's shape when some block differs from the registry's (a pruned ViT or
    /// DeiT): what its weight file must record to be rebuilt.
    pub fn pruned_block_shapes(&self) -> Option<Vec<BlockShape>> {
        let (config, blocks) = match self {
            KeenModel::Vit(m) => (m.config(), m.blocks()),
            KeenModel::Deit(m) => (m.config(), m.blocks()),
            _ => return None,
        };
        let shapes: Vec<BlockShape> = blocks.iter().map(Block::shape).collect();
        let full = BlockShape::of(&config);
        shapes.iter().any(|s| *s != full).then_some(shapes)
    }

    /// The same ViT or DeiT with fresh blocks of `shapes`, ready to load pruned weights.
    pub fn with_block_shapes(
        self,
        shapes: &[BlockShape],
        device: &Device,
    ) -> Result<Self, ModelError> {
        match self {
            KeenModel::Vit(m) => Ok(KeenModel::Vit(m.with_block_shapes(shapes, device)?)),
            KeenModel::Deit(m) => Ok(KeenModel::Deit(m.with_block_shapes(shapes, device)?)),
            _ => Err(not_a_transformer()),
        }
    }
}

fn not_a_transformer() -> ModelError {
    ModelError::BadConfig {
        reason: "only vit and deit models have transformer blocks".into(),
    }
}

/// Calls the same method on whichever model the enum holds.
macro_rules! dispatch {
    ($self:expr, $model:ident => $body:expr) => {
        match $self {
            KeenModel::CnnSmall($model) => $body,
            KeenModel::ResNet($model) => $body,
            KeenModel::MobileNetV2($model) => $body,
            KeenModel::Vit($model) => $body,
            KeenModel::Deit($model) => $body,
            KeenModel::BotNet($model) => $body,
            KeenModel::Graph($model) => $body,
        }
    };
}

impl ImageClassifier for KeenModel {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        dispatch!(self, m => m.forward_features(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        dispatch!(self, m => m.forward_head(features))
    }

    fn num_features(&self) -> usize {
        dispatch!(self, m => m.num_features())
    }

    fn num_classes(&self) -> usize {
        dispatch!(self, m => m.num_classes())
    }

    fn reset_classifier(self, num_classes: usize, device: &Device) -> Self {
        match self {
            KeenModel::CnnSmall(m) => KeenModel::CnnSmall(m.reset_classifier(num_classes, device)),
            KeenModel::ResNet(m) => KeenModel::ResNet(m.reset_classifier(num_classes, device)),
            KeenModel::MobileNetV2(m) => {
                KeenModel::MobileNetV2(m.reset_classifier(num_classes, device))
            }
            KeenModel::Vit(m) => KeenModel::Vit(m.reset_classifier(num_classes, device)),
            KeenModel::Deit(m) => KeenModel::Deit(m.reset_classifier(num_classes, device)),
            KeenModel::BotNet(m) => KeenModel::BotNet(m.reset_classifier(num_classes, device)),
            KeenModel::Graph(m) => KeenModel::Graph(m.reset_classifier(num_classes, device)),
        }
    }

    fn macs(&self, input: [usize; 3]) -> u64 {
        dispatch!(self, m => m.macs(input))
    }
}
