//! Loading a saved model as a teacher (or any model to compress), with its normalisation.

use std::path::Path;

use burn::prelude::*;
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_models::weights::{self, LoadedModel};
use keen_models::ModelSpec;
use keen_train::trainer::meta;

use crate::CompressError;

/// A saved model with the normalisation its inputs need.
pub struct SavedModel {
    /// The model and its metadata.
    pub loaded: LoadedModel,
    /// Normalisation of its inputs.
    pub normalization: Normalization,
}

impl SavedModel {
    /// Loads `path` onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, CompressError> {
        let loaded = weights::load(path, device)?;
        let bad = |reason: String| CompressError::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let text = loaded.metadata.get(meta::NORMALIZATION).ok_or_else(|| {
            bad(format!(
                "no '{}' metadata; was it written by keen train?",
                meta::NORMALIZATION
            ))
        })?;
        let normalization: Normalization = serde_json::from_str(text)
            .map_err(|e| bad(format!("'{}' is not valid: {e}", meta::NORMALIZATION)))?;
        Ok(Self {
            loaded,
            normalization,
        })
    }

    /// Checks that the model takes `dataset`'s images and predicts its classes.
    pub fn check_fits(&self, dataset: &ImageDataset, path: &Path) -> Result<(), CompressError> {
        let spec: &ModelSpec = &self.loaded.spec;
        if spec.input_shape() != dataset.image_shape() || spec.num_classes != dataset.num_classes()
        {
            return Err(CompressError::BadModel {
                path: path.to_path_buf(),
                reason: format!(
                    "takes {:?} images with {} classes, but dataset '{}' has {:?} images with {} classes",
                    spec.input_shape(),
                    spec.num_classes,
                    dataset.name,
                    dataset.image_shape(),
                    dataset.num_classes()
                ),
            });
        }
        Ok(())
    }
}
