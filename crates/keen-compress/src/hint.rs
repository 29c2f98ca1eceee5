//! Hint (feature) distillation, after FitNets (Romero et al. 2015): besides the teacher's
//! logits, the student learns to reproduce a teacher feature map at a chosen layer.
//!
//! The student's "guided" feature map goes through a learned 1×1 convolution (the regressor)
//! to the teacher's channel count, and `β · mean((proj(s) − t)²)` joins the loss. The regressor
//! lives in the student's graph as an auxiliary node after the logits, so the trainer optimises
//! it with everything else and checkpoints and `--resume` keep it; it is stripped from the
//! final model ([`strip_auxiliary`]), which then has exactly the student's architecture.
//!
//! Layers are named by graph node (as `keen info MODEL --layers` lists them);
//! by default both sides use their last feature map, the input of global pooling (or of the
//! flatten before the classifier).

use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use keen_models::graph::{infer_shapes, GraphNet, NodeDef, OpDef, Value, ValueId};
use keen_models::KeenModel;
use keen_train::{LossInputs, ShardInputs, TrainHooks};
use serde::{Deserialize, Serialize};

use crate::CompressError;

/// The name of the regressor node appended to the student's graph.
pub const PROJECTION_NODE: &str = "hint.projection";

/// Which layers hint distillation matches, and how much it weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HintConfig {
    /// Teacher node whose output is the hint; `None`: the teacher's last feature map.
    #[serde(default)]
    pub teacher_layer: Option<String>,
    /// Student node whose output is guided; `None`: the student's last feature map.
    #[serde(default)]
    pub student_layer: Option<String>,
    /// Weight β of the hint term.
    #[serde(default = "default_weight")]
    pub weight: f32,
}

fn default_weight() -> f32 {
    1.0
}

impl Default for HintConfig {
    fn default() -> Self {
        Self {
            teacher_layer: None,
            student_layer: None,
            weight: default_weight(),
        }
    }
}

/// The value a hint layer name stands for: the output of the node so named, or by default the
/// last feature map (the input of the first global pooling or flatten).
pub fn hint_value(graph: &GraphNet, layer: Option<&str>) -> Result<ValueId, String> {
    let def = graph.graph();
    match layer {
        Some(name) => def
            .nodes
            .iter()
            .position(|node| node.name == name)
            .map(|i| i + 1)
            .ok_or_else(|| {
                let names: Vec<&str> = def
                    .nodes
                    .iter()
                    .filter(|n| !n.op.is_layer() || matches!(n.op, OpDef::Conv2d { .. }))
                    .map(|n| n.name.as_str())
                    .collect();
                format!(
                    "no layer named '{name}'; feature-map layers are: {}",
                    names.join(", ")
                )
            }),
        None => def
            .nodes
            .iter()
            .find(|n| matches!(n.op, OpDef::GlobalAvgPool | OpDef::Flatten))
            .map(|n| n.inputs[0])
            .ok_or_else(|| {
                "the graph has no global pooling or flatten to find its last feature map".into()
            }),
    }
}

/// `[channels, height, width]` of a feature-map value.
fn map_shape(graph: &GraphNet, value: ValueId) -> Result<[usize; 3], String> {
    let shapes = infer_shapes(graph.graph())?;
    match shapes.get(value).map(Vec::as_slice) {
        Some(&[c, h, w]) => Ok([c, h, w]),
        Some(other) => Err(format!(
            "value {value} is not a feature map (shape {other:?}); choose a convolutional layer"
        )),
        None => Err(format!("value {value} does not exist")),
    }
}

/// `student` with a 1×1 convolution from its `guided` value to `channels` channels appended
/// after the logits; returns the graph and the projection's value.
pub fn with_projection(
    student: GraphNet,
    guided: ValueId,
    channels: usize,
    device: &Device,
) -> Result<(GraphNet, ValueId), String> {
    let [in_channels, _, _] = map_shape(&student, guided)?;
    if student
        .graph()
        .nodes
        .iter()
        .any(|n| n.name == PROJECTION_NODE)
    {
        return Err("the student already has a hint projection".into());
    }
    let mut graph = student;
    graph.def.nodes.push(NodeDef {
        name: PROJECTION_NODE.into(),
        op: OpDef::Conv2d {
            in_channels,
            out_channels: channels,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            groups: 1,
            bias: true,
        },
        inputs: vec![guided],
    });
    // Conv slots follow node order and the projection is the last node: it is the last conv.
    graph
        .convs
        .push(Conv2dConfig::new([in_channels, channels], [1, 1]).init(device));
    let value = graph.def.nodes.len();
    Ok((graph, value))
}

/// Removes the nodes after the logits (the hint projection) and their layers.
pub fn strip_auxiliary(graph: GraphNet) -> GraphNet {
    let keep = graph.def.output;
    let mut graph = graph;
    let removed: Vec<NodeDef> = graph.def.nodes.split_off(keep);
    for node in removed.iter().rev() {
        match node.op {
            OpDef::Conv2d { .. } => drop(graph.convs.pop()),
            OpDef::BatchNorm { .. } => drop(graph.norms.pop()),
            OpDef::Linear { .. } => drop(graph.linears.pop()),
            _ => {}
        }
    }
    graph
}

/// Training hooks that add a hint term to `inner`'s loss (usually logit distillation).
pub struct HintDistiller {
    /// The settings.
    pub config: HintConfig,
    /// The rest of the loss and what happens after each step.
    pub inner: Box<dyn TrainHooks>,
    teacher: GraphNet,
    teacher_value: ValueId,
    projection: ValueId,
}

impl HintDistiller {
    /// Prepares the student (a graph; the regressor is appended when missing, e.g. not on a
    /// resumed run) and the teacher (any model that lowers to a graph, in inference mode).
    /// Returns the hooks and the student to train.
    pub fn new(
        config: HintConfig,
        teacher: &KeenModel,
        student: KeenModel,
        input: [usize; 3],
        inner: Box<dyn TrainHooks>,
        device: &Device,
    ) -> Result<(Self, KeenModel), CompressError> {
        let bad =
            |what: &str, reason: String| CompressError::BadConfig(format!("{what}: {reason}"));
        if !(config.weight >= 0.0 && config.weight.is_finite()) {
            return Err(bad(
                "hint weight",
                format!("must be ≥ 0, got {}", config.weight),
            ));
        }
        let teacher = teacher
            .valid()
            .to_graph(input)
            .map_err(|e| bad("teacher", e.to_string()))?;
        let student = student
            .to_graph(input)
            .map_err(|e| bad("student", e.to_string()))?;
        let teacher_value = hint_value(&teacher, config.teacher_layer.as_deref())
            .map_err(|e| bad("teacher hint layer", e))?;
        let guided = hint_value(&student, config.student_layer.as_deref())
            .map_err(|e| bad("student hint layer", e))?;
        let [t_channels, t_h, t_w] =
            map_shape(&teacher, teacher_value).map_err(|e| bad("teacher hint layer", e))?;
        let [_, s_h, s_w] =
            map_shape(&student, guided).map_err(|e| bad("student hint layer", e))?;
        if [t_h, t_w] != [s_h, s_w] {
            return Err(bad(
                "hint layers",
                format!(
                    "the teacher's map is {t_h}×{t_w} but the student's is {s_h}×{s_w}; choose layers of the same spatial size"
                ),
            ));
        }
        let (student, projection) = match student
            .graph()
            .nodes
            .iter()
            .position(|n| n.name == PROJECTION_NODE)
        {
            Some(i) => (student, i + 1),
            None => with_projection(student, guided, t_channels, device)
                .map_err(|e| bad("student hint layer", e))?,
        };
        let hooks = Self {
            config,
            inner,
            teacher,
            teacher_value,
            projection,
        };
        Ok((hooks, KeenModel::Graph(student)))
    }

    /// The hint term of a batch: `β · mean((projected − teacher)²)`.
    pub fn hint_loss(&self, projected: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
        (projected - teacher)
            .powi_scalar(2)
            .mean()
            .mul_scalar(self.config.weight as f64)
    }

    /// The teacher's hint map for `images` (no gradient).
    pub fn teacher_map(&self, images: Tensor<4>) -> Tensor<4> {
        let value = self
            .teacher
            .forward_values(images, self.teacher_value, &[self.teacher_value])
            .remove(0);
        match value {
            Value::Map(map) => map.detach(),
            Value::Vector(_) => unreachable!("the hint value was checked to be a feature map"),
        }
    }
}

impl TrainHooks for HintDistiller {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "hint": self.config, "inner": self.inner.describe() })
    }

    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        self.inner.loss(inputs, cross_entropy)
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        let KeenModel::Graph(graph) = model else {
            // `new` hands out a graph student; anything else trains without the hint.
            return self.inner.forward_loss(model, shard, cross_entropy);
        };
        let output = graph.graph().output;
        let mut values = graph.forward_values(
            shard.images.clone(),
            graph.graph().nodes.len(),
            &[output, self.projection],
        );
        let projected = match values.pop() {
            Some(Value::Map(map)) => map,
            _ => unreachable!("the projection is a convolution"),
        };
        let logits = match values.pop() {
            Some(Value::Vector(logits)) => logits,
            Some(Value::Map(map)) => map.flatten::<2>(1, 3),
            None => unreachable!("two values were asked for"),
        };
        let teacher = self.teacher_map(shard.images.clone().inner());
        let soft = self.inner.loss(
            LossInputs {
                logits: logits.clone(),
                images: shard.images,
                labels: shard.labels,
                indices: shard.indices,
            },
            cross_entropy,
        );
        let hint = self.hint_loss(projected, teacher);
        (logits, soft + hint)
    }

    fn before_step(&mut self, step: usize) {
        self.inner.before_step(step);
    }

    fn epoch_metrics(&mut self) -> std::collections::BTreeMap<String, f64> {
        self.inner.epoch_metrics()
    }

    fn after_step(&mut self, model: KeenModel, step: usize, total_steps: usize) -> KeenModel {
        self.inner.after_step(model, step, total_steps)
    }
}

/// The trained student without its regressor, ready to save.
pub fn finished_student(model: KeenModel) -> KeenModel {
    match model {
        KeenModel::Graph(graph) => KeenModel::Graph(strip_auxiliary(graph)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;
    use keen_models::{build_model, ImageClassifier, ModelSpec};

    fn model(name: &str, seed: u64, device: &Device) -> KeenModel {
        device.seed(seed);
        build_model(&ModelSpec::new(name, [1, 28, 28], 10), device).unwrap()
    }

    #[test]
    fn default_layers_are_the_last_feature_maps() {
        let device = Device::flex();
        let teacher = model("resnet20", 1, &device).to_graph([1, 28, 28]).unwrap();
        let value = hint_value(&teacher, None).unwrap();
        assert_eq!(map_shape(&teacher, value).unwrap(), [64, 7, 7]);
        let small = model("cnn-small", 1, &device)
            .to_graph([1, 28, 28])
            .unwrap();
        let value = hint_value(&small, None).unwrap();
        assert_eq!(map_shape(&small, value).unwrap(), [64, 7, 7]);
        let err = hint_value(&small, Some("nope")).unwrap_err();
        assert!(err.contains("conv1"), "{err}");
    }

    #[test]
    fn projection_does_not_change_logits_and_strips_away() {
        let device = Device::flex();
        let student = model("resnet8-slim", 2, &device);
        let images = Tensor::<4>::random(
            [2, 1, 28, 28],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before = student.forward(images.clone());
        let graph = student.to_graph([1, 28, 28]).unwrap();
        let guided = hint_value(&graph, None).unwrap();
        let (graph, projection) = with_projection(graph, guided, 64, &device).unwrap();
        let values = graph.forward_values(
            images.clone(),
            graph.graph().nodes.len(),
            &[graph.graph().output, projection],
        );
        let Value::Map(map) = &values[1] else {
            panic!("projection is a map")
        };
        assert_eq!(map.dims(), [2, 64, 7, 7]);
        let with = graph.forward(images.clone());
        let stripped = strip_auxiliary(graph);
        let after = stripped.forward(images);
        for logits in [with, after] {
            let diff = (logits - before.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "logits changed by {diff}");
        }
        assert_eq!(
            stripped.convs.len(),
            stripped
                .graph()
                .nodes
                .iter()
                .filter(|n| matches!(n.op, OpDef::Conv2d { .. }))
                .count()
        );
    }

    #[test]
    fn hint_term_trains_the_projection_and_the_student() {
        let device = Device::flex().autodiff();
        let teacher = model("resnet8", 3, &Device::flex());
        let student = model("resnet8-slim", 4, &device);
        let (hooks, student) = HintDistiller::new(
            HintConfig::default(),
            &teacher,
            student,
            [1, 28, 28],
            Box::new(keen_train::PlainTraining),
            &device,
        )
        .unwrap();
        let ce = CrossEntropyLossConfig::new().init(&device);
        let images = Tensor::<4>::random(
            [4, 1, 28, 28],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 3], &device);
        let (logits, loss) = hooks.forward_loss(
            &student,
            ShardInputs {
                images: &images,
                labels: labels.clone(),
                indices: &[0, 1, 2, 3],
                batch_offset: 0,
                batch_len: 4,
            },
            &ce,
        );
        let plain = ce.forward(logits, labels).into_scalar::<f32>();
        let total = loss.clone().into_scalar::<f32>();
        assert!(
            total > plain + 1e-4,
            "hint adds to the loss: {total} vs {plain}"
        );
        let grads = loss.backward();
        let KeenModel::Graph(graph) = &student else {
            panic!("the student is a graph")
        };
        let projection = graph.convs.last().unwrap();
        assert!(
            projection.weight.grad(&grads).is_some(),
            "the regressor learns"
        );
        assert!(
            graph.convs[0].weight.grad(&grads).is_some(),
            "the student learns"
        );
    }

    #[test]
    fn mismatched_maps_are_refused() {
        let device = Device::flex();
        let teacher = model("resnet20", 1, &device);
        let student = model("resnet8-slim", 1, &device);
        let student_graph = student.to_graph([1, 28, 28]).unwrap();
        let first_conv = student_graph.graph().nodes[0].name.clone();
        let config = HintConfig {
            student_layer: Some(first_conv),
            ..HintConfig::default()
        };
        let err = HintDistiller::new(
            config,
            &teacher,
            KeenModel::Graph(student_graph),
            [1, 28, 28],
            Box::new(keen_train::PlainTraining),
            &device,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("spatial size"), "{err}");
    }
}
