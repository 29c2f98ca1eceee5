//! `keen info`.

use std::path::Path;

use anyhow::{bail, Result};
use burn::prelude::Device;
use clap::Args;
use keen_models::{
    available_models, build_model, trainable_params, weights, ImageClassifier, KeenModel, ModelSpec,
};
use keen_train::TrainConfig;
use serde::Serialize;

use crate::output::human;

/// Options of `keen info`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen info --list
  keen info resnet20
  keen info runs/cnn-small/model.safetensors --json
  keen info resnet20 --layers        # graph node names, e.g. for keen distill --hint-teacher-layer")]
pub struct InfoArgs {
    /// A registered model name or a model file written by keen.
    pub target: Option<String>,
    /// List the registered models.
    #[arg(long)]
    pub list: bool,
    /// Input shape for registry models, as C,H,W.
    #[arg(long, default_value = "1,28,28", value_name = "C,H,W")]
    pub input: String,
    /// Number of classes for registry models.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Also list the model's layers as graph nodes: name, operation, output shape (the names
    /// that hint distillation and sensitivity scans refer to).
    #[arg(long)]
    pub layers: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One graph node as `keen info --layers` lists it.
#[derive(Debug, Serialize)]
pub struct LayerInfo {
    /// Node name.
    pub name: String,
    /// Operation.
    pub op: String,
    /// Output shape of one image.
    pub shape: Vec<usize>,
}

fn layers(model: &KeenModel, input: [usize; 3]) -> Result<Vec<LayerInfo>> {
    let graph = model.to_graph(input)?;
    let shapes = keen_models::graph::infer_shapes(graph.graph()).map_err(anyhow::Error::msg)?;
    Ok(graph
        .graph()
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| LayerInfo {
            name: node.name.clone(),
            op: format!("{:?}", node.op)
                .split([' ', '{', '('])
                .next()
                .unwrap_or_default()
                .to_string(),
            shape: shapes[i + 1].clone(),
        })
        .collect())
}

/// What `keen info` reports about one model.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    /// Registry name.
    pub model: String,
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Classes of the head.
    pub num_classes: usize,
    /// Trainable parameters (batch-norm running statistics excluded, as in PyTorch).
    pub parameters: usize,
    /// Trainable parameters that are not exactly zero.
    pub nonzero_parameters: usize,
    /// Fraction of convolution and linear weights that are exactly zero (pruned).
    pub weight_sparsity: f32,
    /// Whether the model is a graph with fake quantization on (simulated INT8).
    pub quantized: bool,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// 2 × MACs.
    pub flops: u64,
    /// Size of the fp32 weight file in bytes (measured for a file, computed otherwise).
    pub size_bytes: u64,
    /// The model's default training recipe (registry models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<TrainConfig>,
    /// Graph nodes (with --layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerInfo>>,
}

fn describe(
    model: &KeenModel,
    spec: &ModelSpec,
    size_bytes: u64,
    preset: Option<TrainConfig>,
) -> ModelInfo {
    let macs = model.macs(spec.input_shape());
    ModelInfo {
        model: spec.model.clone(),
        input: spec.input_shape(),
        num_classes: spec.num_classes,
        parameters: trainable_params(model),
        nonzero_parameters: keen_models::nonzero_trainable_params(model),
        weight_sparsity: keen_compress::prune::magnitude::weight_sparsity(model),
        quantized: matches!(model, KeenModel::Graph(g) if g.quant_state().config.enabled),
        macs,
        flops: 2 * macs,
        size_bytes,
        preset,
        layers: None,
    }
}

fn parse_input(text: &str) -> Result<[usize; 3]> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--input expects C,H,W such as 1,28,28, got '{text}'"))?;
    match parts.as_slice() {
        &[c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => bail!("--input expects three positive numbers C,H,W, got '{text}'"),
    }
}

/// Runs `keen info`.
pub fn run(args: InfoArgs) -> Result<()> {
    let device = Device::flex();
    if args.list || args.target.is_none() {
        if args.json {
            let names: Vec<_> = available_models()
                .iter()
                .map(|e| serde_json::json!({ "name": e.name, "summary": e.summary }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&names)?);
        } else {
            println!("registered models (keen info NAME for details):");
            for entry in available_models() {
                println!("  {:<20} {}", entry.name, entry.summary);
            }
        }
        return Ok(());
    }
    let target = args.target.unwrap_or_default();
    let path = Path::new(&target);
    let (model, spec, size, preset) = if path.exists() {
        let size = std::fs::metadata(path)?.len();
        let loaded = weights::load(path, &device)?;
        (loaded.model, loaded.spec, size, None)
    } else if target.ends_with(".safetensors") {
        bail!("{target}: no such file");
    } else {
        let spec = ModelSpec::new(&target, parse_input(&args.input)?, args.classes);
        let model = build_model(&spec, &device)?;
        let size = weights::to_bytes(&model, &spec, &Default::default())
            .map(|b| b.len() as u64)
            .unwrap_or(0);
        (model, spec, size, Some(TrainConfig::preset(&target)))
    };
    let mut info = describe(&model, &spec, size, preset);
    if args.layers {
        info.layers = Some(layers(&model, spec.input_shape())?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("model       {}", info.model);
        println!(
            "input       {:?} -> {} classes",
            info.input, info.num_classes
        );
        println!(
            "parameters  {} ({})",
            info.parameters,
            human(info.parameters as f64)
        );
        println!("non-zero    {}", info.nonzero_parameters);
        println!(
            "sparsity    {:.1}% of conv/linear weights are zero{}",
            100.0 * info.weight_sparsity,
            if info.quantized {
                "; INT8 (fake-quantized graph)"
            } else {
                ""
            }
        );
        println!(
            "MACs        {} per image ({} FLOPs)",
            human(info.macs as f64),
            human(info.flops as f64)
        );
        println!(
            "fp32 file   {} bytes ({}B)",
            info.size_bytes,
            human(info.size_bytes as f64)
        );
        for layer in info.layers.iter().flatten() {
            println!("  {:<28} {:<14} {:?}", layer.name, layer.op, layer.shape);
        }
        if let Some(preset) = &info.preset {
            println!(
                "preset      {} epochs, batch {}, {:?} lr {}, weight decay {}, {:?}",
                preset.epochs,
                preset.batch_size,
                preset.optimizer,
                preset.lr,
                preset.weight_decay,
                preset.decay
            );
        }
    }
    Ok(())
}
