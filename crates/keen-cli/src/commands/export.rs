//! `keen export`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use keen_compress::export::{export_half, HalfType};

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// The model file with FP16 weights (half the bytes; keen loads it back in f32).
    Fp16,
    /// The model file with BF16 weights.
    Bf16,
    /// keen-runtime's format: INT8 for a quantized model, fp32 otherwise.
    Runtime,
}

/// Options of `keen export`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen export runs/student/model.safetensors --format fp16 --out runs/student/model-fp16.safetensors
  keen export runs/student/model.safetensors --format bf16
  keen export runs/qat/model.safetensors --format runtime --out runs/qat/model.keenrt
ONNX export is planned (see the README).")]
pub struct ExportArgs {
    /// The model file to export.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Output file [default: beside MODEL, model-FORMAT.safetensors].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `keen export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let (dtype, suffix) = match args.format {
        FormatArg::Fp16 => (HalfType::Fp16, "fp16"),
        FormatArg::Bf16 => (HalfType::Bf16, "bf16"),
        FormatArg::Runtime => return export_runtime(&args),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        args.model
            .with_file_name(format!("{stem}-{suffix}.safetensors"))
    });
    let report = export_half(&args.model, &out, dtype)?;
    println!(
        "{}: {} tensors, {} -> {} bytes, largest weight change {:.2e}",
        out.display(),
        report.tensors,
        report.bytes[0],
        report.bytes[1],
        report.max_abs_error
    );
    Ok(())
}

fn export_runtime(args: &ExportArgs) -> Result<()> {
    let device = burn::prelude::Device::flex();
    let (loaded, normalization) = super::load_model(&args.model, &device)?;
    let graph = loaded.model.to_graph(loaded.spec.input_shape())?;
    let names = super::stored_class_names(&loaded.metadata, loaded.spec.num_classes);
    let builder = keen_compress::export_runtime::to_runtime(
        &graph,
        names,
        Some((normalization.mean.clone(), normalization.std.clone())),
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.with_extension("keenrt"));
    builder
        .save(&out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let int8 = graph.quant_state().config.enabled;
    println!(
        "{}: keen-runtime model ({}), {} bytes",
        out.display(),
        if int8 { "INT8" } else { "fp32" },
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}
