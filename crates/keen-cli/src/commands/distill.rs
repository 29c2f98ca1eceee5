//! `keen distill`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use keen_compress::distill::DistillConfig;

use super::train::TrainArgs;

/// The distillation settings shared by every command that can learn from a teacher.
#[derive(Args, Debug)]
pub struct KdArgs {
    /// Softening temperature T of the teacher's and the student's outputs.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// Weight of the teacher's soft targets; 1 - alpha weighs the labels.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f32,
}

impl KdArgs {
    /// The library's settings.
    pub fn config(&self) -> DistillConfig {
        DistillConfig {
            temperature: self.temperature,
            alpha: self.alpha,
        }
    }
}

/// Options of `keen distill`: the student's training options plus the teacher.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen train --model resnet20 --out runs/teacher
  keen distill --teacher runs/teacher/model.safetensors --model resnet8-slim --out runs/student
  keen distill --teacher runs/teacher/model.safetensors --model resnet8-slim --temperature 2 --alpha 0.5")]
pub struct DistillArgs {
    /// The teacher: any model file keen saved for the same dataset.
    #[arg(long, value_name = "MODEL_FILE")]
    pub teacher: PathBuf,
    /// Distillation settings.
    #[command(flatten)]
    pub kd: KdArgs,
    /// The student's training options (--model is the student).
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `keen distill`.
pub fn run(args: DistillArgs) -> Result<()> {
    let settings = args.kd.config();
    super::train::run_with(&args.train, "distilling", |config, dataset, options| {
        Ok(keen_compress::stages::distill(
            config,
            dataset,
            options,
            &args.teacher,
            &settings,
        )?)
    })
}
