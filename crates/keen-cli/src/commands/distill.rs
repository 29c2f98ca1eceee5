//! `keen distill`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use keen_compress::distill::DistillConfig;
use keen_compress::hint::HintConfig;

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
  keen distill --teacher runs/teacher/model.safetensors --model resnet8-slim --temperature 2 --alpha 0.5
  keen distill --teacher runs/teacher/model.safetensors --model resnet8-slim --hint --hint-weight 0.5
  keen distill --teacher runs/resnet20/model.safetensors --model deit-tiny --deit hard
  keen distill --teacher runs/teacher/model.safetensors --model resnet8-slim \
               --hint-teacher-layer blocks.5.relu2 --hint-student-layer blocks.1.relu2")]
pub struct DistillArgs {
    /// The teacher: any model file keen saved for the same dataset.
    #[arg(long, value_name = "MODEL_FILE")]
    pub teacher: PathBuf,
    /// Distillation settings.
    #[command(flatten)]
    pub kd: KdArgs,
    /// Hint distillation as well (FitNets): the student's last feature map learns, through a
    /// 1x1 regressor, to match the teacher's. The --hint-* options imply it.
    #[arg(long)]
    pub hint: bool,
    /// Teacher layer (graph node name) whose output is the hint [default: last feature map].
    #[arg(long, value_name = "NODE")]
    pub hint_teacher_layer: Option<String>,
    /// Student layer (graph node name) guided by the hint [default: last feature map].
    #[arg(long, value_name = "NODE")]
    pub hint_student_layer: Option<String>,
    /// Weight of the hint term (mean squared error of the feature maps).
    #[arg(long, value_name = "BETA")]
    pub hint_weight: Option<f32>,
    /// DeiT distillation for a student with a distillation token (deit-tiny): its class head
    /// learns from the labels, its distillation head from the teacher. hard (the default for
    /// such students, DeiT's best): the teacher's top-1 class as a label, loss
    /// ½·CE(cls, y) + ½·CE(dist, argmax teacher). soft: (1 - alpha)·CE(cls, y) +
    /// alpha·T²·KL(teacher ‖ dist) at --temperature/--alpha (the paper: T 3, alpha 0.1). At
    /// inference the two heads' logits are averaged, as in timm.
    #[arg(long, value_name = "soft|hard")]
    pub deit: Option<String>,
    /// The student's training options (--model is the student).
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `keen distill`.
pub fn run(args: DistillArgs) -> Result<()> {
    let settings = args.kd.config();
    let hint = (args.hint
        || args.hint_teacher_layer.is_some()
        || args.hint_student_layer.is_some()
        || args.hint_weight.is_some())
    .then(|| HintConfig {
        teacher_layer: args.hint_teacher_layer.clone(),
        student_layer: args.hint_student_layer.clone(),
        weight: args.hint_weight.unwrap_or(HintConfig::default().weight),
    });
    let deit = match &args.deit {
        Some(mode) => Some(mode.parse().map_err(anyhow::Error::msg)?),
        // A two-head student distils the DeiT way unless told otherwise, as timm users expect.
        None if args.train.model.starts_with("deit") => Some(keen_compress::deit::DeitMode::Hard),
        None => None,
    };
    if let Some(mode) = deit {
        anyhow::ensure!(
            hint.is_none(),
            "--deit and hint distillation cannot be combined"
        );
        let deit = keen_compress::deit::DeitConfig::new(mode, &settings);
        eprintln!("DeiT distillation: {deit:?}");
        return super::train::run_with(&args.train, "distilling", |config, dataset, options| {
            Ok(keen_compress::deit::distill_deit(
                config,
                dataset,
                options,
                &args.teacher,
                &deit,
            )?)
        });
    }
    super::train::run_with(&args.train, "distilling", |config, dataset, options| {
        Ok(keen_compress::stages::distill(
            config,
            dataset,
            options,
            &args.teacher,
            &settings,
            hint.as_ref(),
        )?)
    })
}
