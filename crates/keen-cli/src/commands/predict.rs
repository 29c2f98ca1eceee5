//! `keen predict`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use burn::tensor::activation::softmax;
use clap::Args;
use keen_data::folder::{load_image, ColorMode, FolderOptions};
use keen_data::loader::Normalization;
use keen_models::ImageClassifier;
use keen_train::tensors::{images_tensor, to_f32_vec};
use serde::Serialize;

use super::{load_model, stored_class_names};
use crate::device::parse_device;

/// Options of `keen predict`.
#[derive(Args, Debug)]
#[command(after_help = "\
Images are converted to the model's channels and resized to its input size. Fashion-MNIST
models expect a light garment on a dark background, as in the dataset.

Examples:
  keen predict --model runs/cnn-small/model.safetensors shirt.png boot.jpg
  keen predict --model runs/cnn-small/model.safetensors --top-k 3 --json *.png
  keen predict --model runs/cnn-small/model.safetensors --temperature 1.02 --abstain 0.80 shirt.png
  keen predict --model student.keenrt shirt.png      # a keen-runtime file runs on keen-runtime
(`keen robust calibrate MODEL` fits the temperature and picks an abstain threshold.)")]
pub struct PredictArgs {
    /// A model file written by keen: safetensors, or a keen-runtime file (`keen export --format
    /// runtime`), which runs on keen-runtime (`--device` does not apply).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// PNG or JPEG files to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Divide the logits by this temperature before the softmax (calibration).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Answer "unsure" when the top probability is below this confidence.
    #[arg(long, value_name = "CONFIDENCE")]
    pub abstain: Option<f32>,
    /// Compute device.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// One class and its probability.
#[derive(Debug, Serialize)]
struct Guess {
    class: String,
    index: usize,
    probability: f32,
}

/// The top-k guesses for one image.
#[derive(Debug, Serialize)]
struct Prediction {
    image: PathBuf,
    /// The top probability is below the `--abstain` confidence.
    unsure: bool,
    top: Vec<Guess>,
}

/// Runs `keen predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if !(args.temperature > 0.0 && args.temperature.is_finite()) {
        bail!("--temperature must be positive, got {}", args.temperature);
    }
    if let Some(c) = args.abstain {
        if !(0.0..=1.0).contains(&c) {
            bail!("--abstain expects a confidence in [0, 1], got {c}");
        }
    }
    let (classes, probabilities) = if is_runtime_file(&args.model) {
        runtime_probabilities(&args)?
    } else {
        burn_probabilities(&args)?
    };
    let num_classes = classes.len().max(1);
    let predictions: Vec<Prediction> = args
        .images
        .iter()
        .zip(probabilities.chunks(num_classes))
        .map(|(path, probs)| {
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let unsure = args.abstain.is_some_and(|c| probs[order[0]] < c);
            let top = order
                .into_iter()
                .take(args.top_k)
                .map(|i| Guess {
                    class: classes[i].clone(),
                    index: i,
                    probability: probs[i],
                })
                .collect();
            Prediction {
                image: path.clone(),
                unsure,
                top,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&predictions)?);
    } else {
        for prediction in &predictions {
            let verdict = if prediction.unsure { "  (unsure)" } else { "" };
            println!("{}{verdict}", prediction.image.display());
            for guess in &prediction.top {
                println!("  {:6.2}%  {}", 100.0 * guess.probability, guess.class);
            }
        }
    }
    Ok(())
}

/// Class names and softmax probabilities (one row per image) from a burn model file.
fn burn_probabilities(args: &PredictArgs) -> Result<(Vec<String>, Vec<f32>)> {
    let device = parse_device(&args.device)?;
    let (loaded, normalization) = load_model(&args.model, &device)?;
    let spec = &loaded.spec;
    let classes = stored_class_names(&loaded.metadata, spec.num_classes);
    let pixels = read_images(
        args,
        spec.in_channels,
        spec.height,
        spec.width,
        &normalization,
    )?;
    let shape = [args.images.len(), spec.in_channels, spec.height, spec.width];
    let logits = loaded.model.forward(images_tensor(pixels, shape, &device));
    let probabilities = to_f32_vec(softmax(logits.div_scalar(args.temperature), 1));
    Ok((classes, probabilities))
}

/// Whether `path` is a keen-runtime model file (by its magic bytes, whatever its name); a file
/// that cannot be read is left to the safetensors loader to report.
fn is_runtime_file(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
        && &magic == keen_runtime::format::MAGIC
}

/// Class names and softmax probabilities from a keen-runtime model file: the same image
/// transform and normalisation as a burn model, run on keen-runtime.
fn runtime_probabilities(args: &PredictArgs) -> Result<(Vec<String>, Vec<f32>)> {
    let model = keen_runtime::Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let (channels, height, width) = match model.input_shapes() {
        [shape] => match shape[..] {
            [_, Some(c), Some(h), Some(w)] => (c, h, w),
            _ => bail!(
                "{}: input shape {shape:?} is not [N, C, H, W]",
                args.model.display()
            ),
        },
        shapes => bail!(
            "{}: {} inputs; keen predict needs one image input",
            args.model.display(),
            shapes.len()
        ),
    };
    let normalization = match model.normalization() {
        Some(n) => Normalization {
            mean: n.mean.clone(),
            std: n.std.clone(),
        },
        None => {
            eprintln!(
                "warning: {} stores no normalisation; images are only scaled to [0, 1]",
                args.model.display()
            );
            Normalization::identity(channels)
        }
    };
    ensure!(
        normalization.mean.len() == channels && normalization.std.len() == channels,
        "{}: the stored normalisation does not have {channels} channels",
        args.model.display()
    );
    let pixels = read_images(args, channels, height, width, &normalization)?;
    let shape = vec![args.images.len(), channels, height, width];
    let logits = model.run(&keen_runtime::Tensor::new(shape, pixels)?)?;
    let num_classes = logits.shape().last().copied().unwrap_or(0).max(1);
    let stored = model.class_names();
    let classes = if stored.len() == num_classes {
        stored.to_vec()
    } else {
        (0..num_classes).map(|i| format!("class {i}")).collect()
    };
    let mut probabilities = Vec::with_capacity(logits.data().len());
    for row in logits.data().chunks(num_classes) {
        let scaled: Vec<f64> = row.iter().map(|&v| v as f64 / args.temperature).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scaled.iter().map(|v| (v - max).exp()).sum();
        probabilities.extend(scaled.iter().map(|v| ((v - max).exp() / sum) as f32));
    }
    Ok((classes, probabilities))
}

/// The images, converted to the model's channels and size and normalised, one after another.
fn read_images(
    args: &PredictArgs,
    channels: usize,
    height: usize,
    width: usize,
    normalization: &Normalization,
) -> Result<Vec<f32>> {
    let color = match channels {
        1 => ColorMode::Gray,
        3 => ColorMode::Rgb,
        n => bail!(
            "{}: models with {n} input channels cannot read image files",
            args.model.display()
        ),
    };
    let options = FolderOptions {
        color,
        height,
        width,
    };
    let per_image = channels * height * width;
    let mut pixels = Vec::with_capacity(per_image * args.images.len());
    for path in &args.images {
        let bytes = load_image(path, &options)?;
        let mut normalized = vec![0.0f32; per_image];
        normalization.apply(&bytes, &mut normalized);
        pixels.extend(normalized);
    }
    Ok(pixels)
}
