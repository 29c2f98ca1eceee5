//! `keen explain`: where a model looked, as a heat map over each image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::Tensor;
use clap::Args;
use keen_data::folder::{load_image, ColorMode, FolderOptions};
use keen_models::weights::LoadedModel;
use keen_models::{ImageClassifier, KeenModel};
use keen_robust::charts::png::encode_png;
use keen_robust::explain::{
    attention_rollout, grad_cam, heat_overlay, patch_map, AttentionLayer, OverlayOptions,
};
use keen_train::tensors::{images_tensor, to_f32_vec};
use serde::Serialize;

use super::{load_model, stored_class_names};
use crate::device::parse_device;

/// Options of `keen explain`.
#[derive(Args, Debug)]
#[command(after_help = "\
ViTs and DeiTs are explained by attention rollout (Abnar & Zuidema 2020): the class token's
attention, averaged over heads, with the residual added, multiplied through the blocks. It does
not depend on the class. CNNs (cnn-small, resnet* including resnet20-se/-gc and the BoTNet
hybrid resnet20-bot, mobilenet-v2-tiny, and pruned or quantized graphs) are explained by
Grad-CAM (Selvaraju et al. 2017) on the last spatial feature map (the last stage's output, as
pytorch-grad-cam users pick), or on --layer (graph node names from `keen info MODEL --layers`;
models without a graph form, such as resnet20-se and resnet20-bot, have only the default).

Each image gives OUT/<name>.png: the image upscaled with the heat map (jet, red = most) blended
over it; OUT/explain.json lists the files with the predicted class and its probability.

Examples:
  keen explain --model runs/resnet20/model.safetensors --out explain shirt.png boot.png
  keen explain --model runs/resnet20/model.safetensors --layer stage2.block2.relu2 shirt.png
  keen explain --model runs/vit-tiny/model.safetensors --scale 12 --alpha 0.4 shirt.png
  keen explain --model runs/resnet20/model.safetensors --class 9 shirt.png   # why 'ankle boot'?")]
pub struct ExplainArgs {
    /// A model file written by keen.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// PNG or JPEG files to explain (converted to the model's channels and size).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Folder for the heat-map PNGs and explain.json.
    #[arg(long, value_name = "DIR", default_value = "explain")]
    pub out: PathBuf,
    /// Grad-CAM: the graph node whose output feature map to explain (default: the last
    /// spatial feature map, e.g. blocks.8.relu2 of resnet20).
    #[arg(long, value_name = "NODE")]
    pub layer: Option<String>,
    /// Grad-CAM: explain this class index instead of the predicted one.
    #[arg(long, value_name = "INDEX")]
    pub class: Option<usize>,
    /// Output pixels per input pixel.
    #[arg(long, default_value_t = 8)]
    pub scale: u32,
    /// Weight of the heat colours over the image, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Compute device.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// One explained image, as explain.json lists it.
#[derive(Debug, Serialize)]
struct Explained {
    image: PathBuf,
    /// The heat-map PNG, relative to the output folder.
    heatmap: String,
    /// The predicted class and its softmax probability.
    class: String,
    index: usize,
    probability: f32,
    /// The class the heat map explains (Grad-CAM with --class; otherwise the predicted one).
    explained_index: usize,
}

/// explain.json.
#[derive(Debug, Serialize)]
struct ExplainReport {
    model: PathBuf,
    /// `attention-rollout` or `grad-cam`.
    method: &'static str,
    /// Grad-CAM's layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<String>,
    images: Vec<Explained>,
}

/// Heat maps of a batch: one row-major map per image on a `grid`, and the logits.
struct HeatMaps {
    method: &'static str,
    layer: Option<String>,
    grid: [usize; 2],
    maps: Vec<Vec<f32>>,
    logits: Tensor<2>,
    explained: Vec<usize>,
}

/// Runs `keen explain`.
pub fn run(args: ExplainArgs) -> Result<()> {
    if args.scale == 0 || args.scale > 64 {
        bail!("--scale must be in 1..=64, got {}", args.scale);
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha must be in [0, 1], got {}", args.alpha);
    }
    let device = parse_device(&args.device)?;
    let (loaded, normalization) = load_model(&args.model, &device)?;
    let spec = loaded.spec.clone();
    let input = spec.input_shape();
    let pixels = read_images(&args.images, input, &args.model)?;
    let per_image = input.iter().product::<usize>();
    let mut normalized = vec![0.0f32; per_image * pixels.len()];
    for (bytes, out) in pixels.iter().zip(normalized.chunks_mut(per_image)) {
        normalization.apply(bytes, out);
    }
    let shape = [args.images.len(), input[0], input[1], input[2]];
    let images = images_tensor(normalized, shape, &device);
    let heat = explain_batch(&args, &loaded, images)?;

    let classes = stored_class_names(&loaded.metadata, spec.num_classes);
    let probabilities = to_f32_vec(softmax(heat.logits, 1));
    let options = OverlayOptions {
        scale: args.scale,
        alpha: args.alpha,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let names = png_names(&args.images);
    let mut explained = Vec::new();
    for (i, path) in args.images.iter().enumerate() {
        let probs = &probabilities[i * spec.num_classes..(i + 1) * spec.num_classes];
        let index = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(0);
        let overlay = heat_overlay(&pixels[i], input, &heat.maps[i], heat.grid, &options)?;
        let file = args.out.join(&names[i]);
        keen_models::weights::write_atomic(&file, &encode_png(&overlay)?)
            .with_context(|| format!("writing {}", file.display()))?;
        println!(
            "{} -> {}  {} {:.1}%",
            path.display(),
            file.display(),
            classes[index],
            100.0 * probs[index]
        );
        explained.push(Explained {
            image: path.clone(),
            heatmap: names[i].clone(),
            class: classes[index].clone(),
            index,
            probability: probs[index],
            explained_index: heat.explained.get(i).copied().unwrap_or(index),
        });
    }
    let report = ExplainReport {
        model: args.model.clone(),
        method: heat.method,
        layer: heat.layer,
        images: explained,
    };
    crate::output::write_json(&args.out.join("explain.json"), &report)
}

/// Attention rollout for transformers, Grad-CAM for CNNs.
fn explain_batch(args: &ExplainArgs, loaded: &LoadedModel, images: Tensor<4>) -> Result<HeatMaps> {
    let n = args.images.len();
    if let Some(maps) = loaded.model.forward_with_attention(images.clone()) {
        if args.layer.is_some() || args.class.is_some() {
            bail!(
                "{}: --layer and --class are Grad-CAM options; attention rollout explains a \
                 transformer whatever the class",
                args.model.display()
            );
        }
        let tokens = maps.prefix_tokens + maps.grid[0] * maps.grid[1];
        let layers: Vec<(usize, Vec<f32>)> = maps
            .layers
            .into_iter()
            .map(|t| (t.dims()[1], to_f32_vec(t)))
            .collect();
        let mut heat = Vec::with_capacity(n);
        for i in 0..n {
            let per_image: Vec<AttentionLayer> = layers
                .iter()
                .map(|(heads, probs)| {
                    let len = heads * tokens * tokens;
                    AttentionLayer {
                        heads: *heads,
                        probs: &probs[i * len..(i + 1) * len],
                    }
                })
                .collect();
            let rollout = attention_rollout(&per_image, tokens)?;
            heat.push(patch_map(
                &rollout,
                tokens,
                0,
                maps.prefix_tokens,
                maps.grid,
            )?);
        }
        return Ok(HeatMaps {
            method: "attention-rollout",
            layer: None,
            grid: maps.grid,
            maps: heat,
            logits: maps.logits,
            explained: Vec::new(),
        });
    }
    grad_cam_batch(args, &loaded.model, images)
}

/// Grad-CAM on the last spatial feature map (any CNN) or on `--layer` (a graph node).
fn grad_cam_batch(args: &ExplainArgs, model: &KeenModel, images: Tensor<4>) -> Result<HeatMaps> {
    let n = args.images.len();
    let num_classes = model.num_classes();
    let classes: Vec<usize> = match args.class {
        Some(c) if c >= num_classes => {
            bail!("--class {c}: the model has {num_classes} classes")
        }
        Some(c) => vec![c; n],
        None => {
            let logits = to_f32_vec(model.valid().forward(images.clone()));
            logits
                .chunks(num_classes.max(1))
                .map(|row| {
                    (0..row.len())
                        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                        .unwrap_or(0)
                })
                .collect()
        }
    };
    let explained = model
        .class_gradient(images, args.layer.as_deref(), &classes)
        .with_context(|| format!("{}: Grad-CAM", args.model.display()))?;
    let result = explained.gradient;
    let [_, c, h, w] = result.activations.dims();
    let activations = to_f32_vec(result.activations);
    let gradients = to_f32_vec(result.gradients);
    let per_image = c * h * w;
    let maps = (0..n)
        .map(|i| {
            let part = i * per_image..(i + 1) * per_image;
            grad_cam(&activations[part.clone()], &gradients[part], [c, h, w])
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HeatMaps {
        method: "grad-cam",
        layer: Some(explained.layer),
        grid: [h, w],
        maps,
        logits: result.logits,
        explained: classes,
    })
}

/// The images as the model sees them: CHW bytes of its channels and size.
fn read_images(
    paths: &[PathBuf],
    [channels, height, width]: [usize; 3],
    model: &Path,
) -> Result<Vec<Vec<u8>>> {
    let color = match channels {
        1 => ColorMode::Gray,
        3 => ColorMode::Rgb,
        n => bail!(
            "{}: models with {n} input channels cannot read image files",
            model.display()
        ),
    };
    let options = FolderOptions {
        color,
        height,
        width,
    };
    paths
        .iter()
        .map(|path| Ok(load_image(path, &options)?))
        .collect()
}

/// `<stem>.png` per image, or `<i>-<stem>.png` for all when two stems collide.
fn png_names(paths: &[PathBuf]) -> Vec<String> {
    let stems: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into())
        })
        .collect();
    let unique = stems.iter().collect::<BTreeSet<_>>().len() == stems.len()
        && !stems.iter().any(|s| s == "explain");
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if unique {
                format!("{s}.png")
            } else {
                format!("{i}-{s}.png")
            }
        })
        .collect()
}
