//! `keen export`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use keen_compress::export::{export_half, HalfType};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The model file with FP16 weights (half the bytes; keen loads it back in f32).
    Fp16,
    /// The model file with BF16 weights.
    Bf16,
    /// keen-runtime's format: INT8 for a quantized model, fp32 otherwise.
    Runtime,
    /// keen-runtime's format in fp32, even for a quantized model (its float weights).
    RuntimeFp32,
    /// ONNX (opset 17) in fp32: plain Conv/Gemm/Relu/MaxPool/... ops. A quantized model is
    /// exported with its float weights, as torch.onnx.export does before convert().
    Onnx,
    /// ONNX (opset 17) in INT8, QDQ form: QuantizeLinear/DequantizeLinear around float ops,
    /// per-channel int8 weights, int32 biases, uint8 activations (what ONNX Runtime's
    /// quantize_static writes and fuses into QLinearConv). Needs a quantized model (PTQ or QAT).
    OnnxInt8,
}

/// Options of `keen export`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen export runs/student/model.safetensors --format fp16 --out runs/student/model-fp16.safetensors
  keen export runs/student/model.safetensors --format bf16
  keen export runs/qat/model.safetensors --format runtime --out runs/qat/model.keenrt
  keen export runs/qat/model.safetensors --format onnx-int8 --out student-int8.onnx
  keen export runs/qat/model.safetensors --format onnx --out student.onnx
  keen export runs/qat/model.keenrt --format onnx-int8       # from a keen-runtime file

ONNX files take NCHW float input with a free batch axis 'N', already normalised: (x - mean) / std
per channel, both stored in the file's metadata ('normalization', with 'class_names'), e.g.
  sess = onnxruntime.InferenceSession('student-int8.onnx')
  logits = sess.run(None, {'input': images})[0]")]
pub struct ExportArgs {
    /// The model file to export.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Output file [default: beside MODEL: model-FORMAT.safetensors, model.keenrt,
    /// model-fp32.keenrt, model.onnx, model-int8.onnx].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `keen export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let (dtype, suffix) = match args.format {
        FormatArg::Fp16 => (HalfType::Fp16, "fp16"),
        FormatArg::Bf16 => (HalfType::Bf16, "bf16"),
        FormatArg::Runtime | FormatArg::RuntimeFp32 => return export_runtime(&args),
        FormatArg::Onnx | FormatArg::OnnxInt8 => return export_onnx(&args),
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

/// The keen-runtime graph of a keen model file: INT8 when it is quantized, unless `float`.
fn runtime_graph(model: &Path, float: bool) -> Result<(keen_runtime::GraphBuilder, bool)> {
    let device = burn::prelude::Device::flex();
    let (loaded, normalization) = super::load_model(model, &device)?;
    let mut graph = loaded.model.to_graph(loaded.spec.input_shape())?;
    if float && graph.quant_state().config.enabled {
        let mut quant = graph.quant_state().detached();
        quant.config.enabled = false;
        graph = graph.with_quant(quant);
    }
    let names = super::stored_class_names(&loaded.metadata, loaded.spec.num_classes);
    let builder = keen_compress::export_runtime::to_runtime(
        &graph,
        names,
        Some((normalization.mean.clone(), normalization.std.clone())),
    )?;
    Ok((builder, graph.quant_state().config.enabled))
}

fn default_out(model: &Path, suffix: &str) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    model.with_file_name(format!("{stem}{suffix}"))
}

fn export_runtime(args: &ExportArgs) -> Result<()> {
    let float = args.format == FormatArg::RuntimeFp32;
    let (builder, int8) = runtime_graph(&args.model, float)?;
    let out = args.out.clone().unwrap_or_else(|| {
        default_out(&args.model, if float { "-fp32.keenrt" } else { ".keenrt" })
    });
    builder
        .save(&out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    println!(
        "{}: keen-runtime model ({}), {} bytes",
        out.display(),
        if int8 { "INT8" } else { "fp32" },
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}

/// `--format onnx|onnx-int8`: the keen-runtime graph (built here, or read from a `.keenrt`
/// file), translated by keen-onnx.
fn export_onnx(args: &ExportArgs) -> Result<()> {
    let int8 = args.format == FormatArg::OnnxInt8;
    let is_keenrt = args.model.extension().is_some_and(|e| e == "keenrt");
    let onnx = if is_keenrt {
        keen_onnx::OnnxModel::from_keenrt_file(&args.model)
            .with_context(|| format!("cannot export {}", args.model.display()))?
    } else {
        let (builder, quantized) = runtime_graph(&args.model, !int8)?;
        if int8 && !quantized {
            bail!(
                "{} is a float model; --format onnx-int8 needs a quantized one (keen quantize \
                 or keen qat), or use --format onnx",
                args.model.display()
            );
        }
        let bytes = builder
            .to_bytes()
            .map_err(|e| anyhow::anyhow!("runtime export: {e}"))?;
        keen_onnx::OnnxModel::from_keenrt_bytes(&bytes)?
    };
    let want = if int8 {
        keen_onnx::Precision::Int8Qdq
    } else {
        keen_onnx::Precision::Fp32
    };
    if onnx.precision() != want {
        bail!(
            "{}: the keen-runtime model is {}; use --format {}",
            args.model.display(),
            onnx.precision(),
            if int8 { "onnx" } else { "onnx-int8" }
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.model, if int8 { "-int8.onnx" } else { ".onnx" }));
    let bytes = onnx.save(&out)?;
    let ops: Vec<String> = onnx
        .op_counts()
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!(
        "{}: ONNX opset {} ({}), {bytes} bytes; ops: {}",
        out.display(),
        keen_onnx::OPSET,
        onnx.precision(),
        ops.join(", ")
    );
    Ok(())
}
