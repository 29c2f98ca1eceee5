//! `keen compress`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use keen_compress::recipe::{markdown_table, run_recipe, Recipe, RecipeOptions};
use keen_data::source::SplitName;

use super::load_split;
use crate::device::parse_devices;

/// Options of `keen compress`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  keen compress --recipe recipes/fashion-mnist.toml
  keen compress --recipe recipes/fashion-mnist.toml --teacher runs/results-resnet20/model.safetensors
  keen compress --recipe recipes/mnist.toml --out runs/mnist-plan
A rerun with the same --out resumes at the first unfinished stage.")]
pub struct CompressArgs {
    /// The recipe (TOML): teacher, distill, prune, quantize, qat.
    #[arg(long, value_name = "FILE")]
    pub recipe: PathBuf,
    /// Use this teacher file instead of training the recipe's teacher.
    #[arg(long, value_name = "MODEL_FILE")]
    pub teacher: Option<PathBuf>,
    /// Output folder [default: runs/compress-DATASET].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Folder holding the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Compute device: flex (CPU), or cuda / wgpu in builds with those features.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs `keen compress`.
pub fn run(args: CompressArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.recipe)
        .with_context(|| format!("cannot read recipe {}", args.recipe.display()))?;
    let mut recipe = Recipe::from_toml(&text, &args.recipe)?;
    if let Some(teacher) = &args.teacher {
        anyhow::ensure!(
            teacher.exists(),
            "--teacher {}: no such file",
            teacher.display()
        );
        recipe.teacher.path = Some(teacher.clone());
    }
    let (device, _) = parse_devices(&args.device)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("compress-{}", recipe.dataset)));
    let train = load_split(&recipe.dataset, args.data.as_deref(), SplitName::Train)?;
    let test = load_split(&recipe.dataset, args.data.as_deref(), SplitName::Test)?;
    let options = RecipeOptions {
        out_dir: out.clone(),
        device,
        progress: !args.no_progress,
    };
    let rows = run_recipe(&recipe, &train, &test, &options)?;
    println!("{}", markdown_table(&rows));
    println!(
        "stage table: {} and {}",
        out.join("stages.md").display(),
        out.join("stages.json").display()
    );
    Ok(())
}
