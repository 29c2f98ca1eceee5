//! One module per subcommand, plus what several of them share.

pub mod attack;
pub mod bench;
pub mod compress;
pub mod corruptions;
pub mod datasets;
pub mod distill;
pub mod eval;
pub mod explain;
pub mod export;
pub mod info;
pub mod ood;
pub mod ood_sets;
pub mod predict;
pub mod prune;
pub mod quantize;
pub mod report;
pub mod robust;
pub mod runtime;
pub mod serve;
pub mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_data::source::{DataLocator, DatasetSpec, SplitName};
use keen_models::weights::{self, LoadedModel};
use keen_train::trainer::meta;

/// Loads one split of a named dataset, resolving where its files live.
pub fn load_split(
    dataset: &str,
    data_dir: Option<&Path>,
    split: SplitName,
) -> Result<ImageDataset> {
    let spec: DatasetSpec = dataset.parse()?;
    let locator = DataLocator {
        data_dir: data_dir.map(PathBuf::from),
        allow_download: true,
    };
    Ok(locator.load(&spec, split)?)
}

/// A model file and the normalisation its inputs need, as `eval`, `predict` and `train` use them.
pub fn load_model(path: &Path, device: &Device) -> Result<(LoadedModel, Normalization)> {
    let loaded = weights::load(path, device)?;
    let normalization = stored_normalization(&loaded.metadata, path)?;
    Ok((loaded, normalization))
}

/// Normalisation stored in a model file's metadata.
pub fn stored_normalization(
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<Normalization> {
    let text = metadata.get(meta::NORMALIZATION).with_context(|| {
        format!(
            "{}: no '{}' metadata; was it written by keen?",
            path.display(),
            meta::NORMALIZATION
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("{}: '{}' is not JSON", path.display(), meta::NORMALIZATION))?;
    let read = |key: &str| -> Result<Vec<f32>> {
        serde_json::from_value(value[key].clone()).with_context(|| {
            format!(
                "{}: normalisation has no valid '{key}' list",
                path.display()
            )
        })
    };
    Ok(Normalization {
        mean: read("mean")?,
        std: read("std")?,
    })
}

/// Class names stored in a model file's metadata, or `class N` when absent.
pub fn stored_class_names(metadata: &BTreeMap<String, String>, num_classes: usize) -> Vec<String> {
    metadata
        .get(meta::CLASS_NAMES)
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .filter(|names| names.len() == num_classes)
        .unwrap_or_else(|| (0..num_classes).map(|i| format!("class {i}")).collect())
}
