//! `keen quantize` (post-training) and `keen qat` (quantization-aware training).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use keen_compress::quantize::{CalibrationConfig, RangeMethod};
use keen_data::source::SplitName;

use super::load_split;
use super::train::TrainArgs;
use crate::device::parse_devices;
use crate::output::write_json;

fn parse_method(text: &str) -> Result<RangeMethod> {
    match text {
        "minmax" => Ok(RangeMethod::MinMax),
        "mse" => Ok(RangeMethod::Mse),
        other => {
            let Some(p) = other.strip_prefix("percentile:") else {
                bail!("--method expects minmax, mse or percentile:P (e.g. percentile:99.99), got '{other}'");
            };
            let percentile: f32 = p
                .parse()
                .with_context(|| format!("--method percentile:P: '{p}' is not a number"))?;
            if !(50.0..=100.0).contains(&percentile) {
                bail!("--method percentile:P needs P in [50, 100], got {percentile}");
            }
            Ok(RangeMethod::Percentile { percentile })
        }
    }
}

/// Options of `keen quantize`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen quantize runs/student/model.safetensors --out runs/student/int8.safetensors
  keen quantize runs/student/model.safetensors --method percentile:99.99 --scan
  keen quantize runs/student/model.safetensors --method mse --max-drop 0.5
The quantized model evaluates in simulated INT8 (weights INT8 per channel, activations UINT8 per
tensor): keen eval runs/student/int8.safetensors
CNNs are lowered to a graph (batch norms folded) and every layer's output is quantized. ViTs and
DeiTs are quantized in place: the patch embedding, every block's qkv, proj, fc1 and fc2, and the
heads, each with its input quantized (attention, layer norms and GELU stay in float); they take
--method minmax only and no --scan.")]
pub struct QuantizeArgs {
    /// The float model file to quantize.
    pub model: PathBuf,
    /// Where to write the quantized model [default: beside MODEL, int8.safetensors].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Activation ranges: minmax, percentile:P or mse.
    #[arg(long, default_value = "minmax")]
    pub method: String,
    /// Training batches (of 128 images) to calibrate on.
    #[arg(long, default_value_t = 8)]
    pub calibration_batches: usize,
    /// Measure each layer's accuracy cost on the validation split.
    #[arg(long)]
    pub scan: bool,
    /// Keep the costliest layers in float until the accuracy drop is at most this many points.
    #[arg(long, value_name = "POINTS")]
    pub max_drop: Option<f64>,
    /// Dataset the model was trained on.
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Runs `keen quantize`.
pub fn run(args: QuantizeArgs) -> Result<()> {
    let (device, _) = parse_devices("flex")?;
    let calibration = CalibrationConfig {
        batches: args.calibration_batches.max(1),
        method: parse_method(&args.method)?,
        ..CalibrationConfig::default()
    };
    let out = args.out.clone().unwrap_or_else(|| {
        args.model
            .parent()
            .map(|p| p.join("int8.safetensors"))
            .unwrap_or_else(|| PathBuf::from("int8.safetensors"))
    });
    let train = load_split(&args.dataset, args.data.as_deref(), SplitName::Train)?;
    let report = keen_compress::stages::post_training_quantize(
        &args.model,
        &train,
        &calibration,
        args.scan,
        args.max_drop.map(|p| p / 100.0),
        &out,
        &device,
    )?;
    if let Some(scan) = &report.sensitivity {
        println!(
            "validation accuracy: float {:.2}%, all INT8 {:.2}%, final {:.2}%",
            100.0 * scan.float_accuracy,
            100.0 * scan.quantized_accuracy,
            100.0 * scan.final_accuracy
        );
        println!("layer sensitivity (accuracy cost of quantizing the layer alone):");
        for layer in &scan.layers {
            println!("  {:<32} {:+.2} points", layer.name, -100.0 * layer.drop);
        }
        if !scan.kept_float.is_empty() {
            println!("kept in float: {}", scan.kept_float.join(", "));
        }
    }
    let report_path = out.with_extension("json");
    write_json(&report_path, &report)?;
    println!(
        "quantized model written to {} (report {}); evaluate it with: keen eval {}",
        out.display(),
        report_path.display(),
        out.display()
    );
    Ok(())
}

/// Options of `keen qat`: the fine-tuning options plus the float model and an optional teacher.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen qat --student runs/student/model.safetensors --epochs 2 --lr 0.01 --out runs/qat
  keen qat --student runs/student/model.safetensors --teacher runs/teacher/model.safetensors \\
           --epochs 2 --lr 0.01 --crop-padding 0 --hflip false --out runs/qat")]
pub struct QatArgs {
    /// The float model to fine-tune through fake quantization (its architecture is kept).
    #[arg(long, value_name = "MODEL_FILE")]
    pub student: PathBuf,
    /// Distil from this teacher while training (soft targets and labels).
    #[arg(long, value_name = "MODEL_FILE")]
    pub teacher: Option<PathBuf>,
    /// Distillation settings (with --teacher).
    #[command(flatten)]
    pub kd: super::distill::KdArgs,
    /// Training batches (of 128 images) that calibrate the starting ranges.
    #[arg(long, default_value_t = 8)]
    pub calibration_batches: usize,
    /// Fine-tuning options (--model is taken from the student file).
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `keen qat`.
pub fn run_qat(mut args: QatArgs) -> Result<()> {
    let (device, _) = parse_devices(&args.train.device)?;
    let spec = keen_models::weights::load(&args.student, &device)?.spec;
    args.train.model = spec.model;
    let settings = args.kd.config();
    let calibration = CalibrationConfig {
        batches: args.calibration_batches.max(1),
        ..CalibrationConfig::default()
    };
    let teacher = args.teacher.clone();
    let student = args.student.clone();
    super::train::run_with(
        &args.train,
        "quantization-aware training of",
        |config, dataset, options| {
            Ok(keen_compress::stages::quantization_aware_training(
                config,
                dataset,
                options,
                &student,
                teacher.as_deref().map(|t| (t, &settings)),
                &calibration,
            )?)
        },
    )
}
