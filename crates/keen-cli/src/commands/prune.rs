//! `keen prune`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use keen_compress::prune::{ChannelCriterion, MagnitudePruneConfig, PruneScope, SparsityPattern};

use super::train::TrainArgs;
use crate::device::parse_devices;

/// Where the magnitude threshold applies.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// One threshold across all layers.
    Global,
    /// Every layer reaches the sparsity.
    Layerwise,
}

/// How structured pruning ranks channels.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CriterionArg {
    /// L1 norm of the filters producing a channel.
    L1,
    /// Batch-norm scale |gamma| (network slimming).
    BnScale,
}

/// Options of `keen prune`: the fine-tuning options plus the model and the target sparsity.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen prune --from runs/student/model.safetensors --sparsity 0.8 --epochs 2 --lr 0.01 --out runs/pruned
  keen prune --from runs/teacher/model.safetensors --channels 0.5 --epochs 2 --lr 0.02 --out runs/slim
  keen prune --from runs/student/model.safetensors --pattern 2:4 --epochs 1 --lr 0.01 --out runs/sparse24
  keen prune --from runs/vit-tiny/model.safetensors --heads 0.25 --mlp 0.25 --epochs 2 --lr 0.0005 --out runs/vit-slim
  keen prune --from runs/student/model.safetensors --sparsity 0.9 --scope layerwise \\
             --teacher runs/teacher/model.safetensors --crop-padding 0 --hflip false --out runs/pruned")]
pub struct PruneArgs {
    /// The trained model to prune (its architecture is kept).
    #[arg(long, value_name = "MODEL_FILE")]
    pub from: PathBuf,
    /// Structured pruning: remove this fraction of the channels of every prunable group
    /// (following residual and depthwise dependencies) instead of zeroing single weights.
    #[arg(long, value_name = "RATIO", conflicts_with = "sparsity")]
    pub channels: Option<f32>,
    /// ViT and DeiT: remove this fraction of every block's attention heads (lowest L2 norm of
    /// the head's q/k/v and output-projection weights first; at least one head stays).
    #[arg(long, value_name = "RATIO", conflicts_with_all = ["channels", "sparsity", "pattern"])]
    pub heads: Option<f32>,
    /// ViT and DeiT: remove this fraction of every block's MLP hidden units (lowest L2 norm
    /// of their fc1 and fc2 weights first).
    #[arg(long, value_name = "RATIO", conflicts_with_all = ["channels", "sparsity", "pattern"])]
    pub mlp: Option<f32>,
    /// How structured pruning ranks channels.
    #[arg(long, value_enum, default_value = "l1")]
    pub criterion: CriterionArg,
    /// Semi-structured N:M sparsity instead, e.g. 2:4: of every 4 consecutive input weights
    /// the 2 largest stay (the pattern sparse tensor cores accelerate). Set once, then held
    /// while fine-tuning; layers whose input count is not a multiple of M stay dense.
    #[arg(long, value_name = "N:M", value_parser = parse_pattern, conflicts_with_all = ["channels", "sparsity"])]
    pub pattern: Option<SparsityPattern>,
    /// Final fraction of zero weights (convolution and linear weights), in [0, 1).
    #[arg(long, default_value_t = 0.8)]
    pub sparsity: f32,
    /// Global or layer-wise magnitude thresholds.
    #[arg(long, value_enum, default_value = "global")]
    pub scope: ScopeArg,
    /// Fraction of the fine-tuning steps over which sparsity ramps up (cubic schedule).
    #[arg(long, default_value_t = 0.7)]
    pub ramp: f32,
    /// Distil from this teacher while fine-tuning.
    #[arg(long, value_name = "MODEL_FILE")]
    pub teacher: Option<PathBuf>,
    /// Distillation settings (with --teacher).
    #[command(flatten)]
    pub kd: super::distill::KdArgs,
    /// Fine-tuning options (--model is taken from the model file).
    #[command(flatten)]
    pub train: TrainArgs,
}

fn parse_pattern(text: &str) -> Result<SparsityPattern, String> {
    SparsityPattern::parse(text)
}

/// Runs `keen prune`.
pub fn run(mut args: PruneArgs) -> Result<()> {
    let (device, _) = parse_devices(&args.train.device)?;
    args.train.model = keen_models::weights::load(&args.from, &device)?.spec.model;
    let settings = MagnitudePruneConfig {
        final_sparsity: args.sparsity,
        scope: match args.scope {
            ScopeArg::Global => PruneScope::Global,
            ScopeArg::Layerwise => PruneScope::Layerwise,
        },
        end_fraction: args.ramp.clamp(0.0, 1.0),
        pattern: args.pattern.unwrap_or_default(),
        ..MagnitudePruneConfig::default()
    };
    let distill = args.kd.config();
    let from = args.from.clone();
    let teacher = args.teacher.clone();
    if args.heads.is_some() || args.mlp.is_some() {
        let (heads, mlp) = (args.heads.unwrap_or(0.0), args.mlp.unwrap_or(0.0));
        return super::train::run_with(&args.train, "head pruning", |config, dataset, options| {
            let (summary, report) = keen_compress::stages::prune_heads_and_finetune(
                config,
                dataset,
                options,
                &from,
                heads,
                mlp,
                teacher.as_deref().map(|t| (t, &distill)),
            )?;
            crate::output::write_json(&options.out_dir.join("prune.json"), &report)?;
            Ok(summary)
        });
    }
    if let Some(ratio) = args.channels {
        let criterion = match args.criterion {
            CriterionArg::L1 => ChannelCriterion::L1,
            CriterionArg::BnScale => ChannelCriterion::BnScale,
        };
        return super::train::run_with(
            &args.train,
            "channel pruning",
            |config, dataset, options| {
                let (summary, report) = keen_compress::stages::prune_channels_and_finetune(
                    config,
                    dataset,
                    options,
                    &from,
                    ratio,
                    criterion,
                    teacher.as_deref().map(|t| (t, &distill)),
                )?;
                crate::output::write_json(&options.out_dir.join("prune.json"), &report)?;
                Ok(summary)
            },
        );
    }
    super::train::run_with(&args.train, "pruning", |config, dataset, options| {
        Ok(keen_compress::stages::prune_magnitude(
            config,
            dataset,
            options,
            &from,
            &settings,
            teacher.as_deref().map(|t| (t, &distill)),
        )?)
    })
}
