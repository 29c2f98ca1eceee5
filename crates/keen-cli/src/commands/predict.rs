//! `keen predict`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::tensor::activation::softmax;
use clap::Args;
use keen_data::folder::{load_image, ColorMode, FolderOptions};
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
(`keen robust calibrate MODEL` fits the temperature and picks an abstain threshold.)")]
pub struct PredictArgs {
    /// A model file written by keen.
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
    let device = parse_device(&args.device)?;
    let (loaded, normalization) = load_model(&args.model, &device)?;
    let spec = &loaded.spec;
    let classes = stored_class_names(&loaded.metadata, spec.num_classes);
    let color = match spec.in_channels {
        1 => ColorMode::Gray,
        3 => ColorMode::Rgb,
        n => bail!(
            "{}: models with {n} input channels cannot read image files",
            args.model.display()
        ),
    };
    let options = FolderOptions {
        color,
        height: spec.height,
        width: spec.width,
    };
    let per_image = spec.in_channels * spec.height * spec.width;
    let mut pixels = Vec::with_capacity(per_image * args.images.len());
    for path in &args.images {
        let bytes = load_image(path, &options)?;
        let mut normalized = vec![0.0f32; per_image];
        normalization.apply(&bytes, &mut normalized);
        pixels.extend(normalized);
    }
    let shape = [args.images.len(), spec.in_channels, spec.height, spec.width];
    let logits = loaded.model.forward(images_tensor(pixels, shape, &device));
    let probabilities = to_f32_vec(softmax(logits.div_scalar(args.temperature), 1));
    let predictions: Vec<Prediction> = args
        .images
        .iter()
        .zip(probabilities.chunks(spec.num_classes))
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
