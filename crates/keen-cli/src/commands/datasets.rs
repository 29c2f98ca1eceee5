//! `keen datasets`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use keen_data::source::DataLocator;

/// Options of `keen datasets`.
#[derive(Args, Debug)]
#[command(after_help = "\
Search order: --data DIR, $KEEN_DATA, system folders (/usr/share/datasets/...), the cache
(~/.cache/keen/datasets). Missing datasets are downloaded on first use where there is a network.

Examples:
  keen datasets
  keen datasets --data ./data --json")]
pub struct DatasetsArgs {
    /// An extra folder to search first.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keen datasets`.
pub fn run(args: DatasetsArgs) -> Result<()> {
    let locator = DataLocator {
        data_dir: args.data,
        allow_download: false,
    };
    let survey = locator.survey();
    if args.json {
        let rows: Vec<_> = survey
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "found": s.found, "searched": s.searched, "hint": s.hint }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for status in &survey {
        match &status.found {
            Some(path) => println!("{:<14} found at {}", status.name, path.display()),
            None => {
                println!("{:<14} not found; searched:", status.name);
                for place in &status.searched {
                    println!("{:<16} {}", "", place.display());
                }
                println!("{:<16} {}", "", status.hint);
            }
        }
    }
    println!(
        "{:<14} any folder with one sub-folder of PNG/JPEG images per class",
        "folder:PATH"
    );
    Ok(())
}
