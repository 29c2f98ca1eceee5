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
}

/// Options of `keen export`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen export runs/student/model.safetensors --format fp16 --out runs/student/model-fp16.safetensors
  keen export runs/student/model.safetensors --format bf16
Exports for keen-runtime and ONNX are planned (see the README).")]
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
