//! The action plan's stages as functions: each reads models from files, trains or transforms,
//! and writes a model file, so that each stands alone (`keen distill`, `keen quantize`,
//! `keen prune`) and a recipe can chain them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keen_data::dataset::ImageDataset;
use keen_train::{train_with, TrainConfig, TrainOptions, TrainSummary};

use burn::module::Module;
use keen_data::augment::AugmentConfig;
use keen_data::loader::Normalization;

use crate::distill::{DistillConfig, Distiller, TeacherLogits, TeacherSource};
use crate::teacher::SavedModel;
use crate::CompressError;

/// Trains `config.model` (from scratch) as a student of the model saved at `teacher_path`.
pub fn distill(
    config: &TrainConfig,
    dataset: &ImageDataset,
    options: &TrainOptions,
    teacher_path: &Path,
    settings: &DistillConfig,
) -> Result<TrainSummary, CompressError> {
    settings.validate().map_err(CompressError::BadConfig)?;
    let teacher = SavedModel::load(teacher_path, &options.device)?;
    teacher.check_fits(dataset, teacher_path)?;
    let augmented = config.augment != AugmentConfig::none();
    let source = if augmented {
        // The teacher must see the student's augmented images, normalised the same way.
        let student_normalization = Normalization::fit(dataset);
        if student_normalization != teacher.normalization {
            return Err(CompressError::BadModel {
                path: teacher_path.to_path_buf(),
                reason: "the teacher was trained with another normalisation than this dataset's; distil without augmentation (its logits are then computed on the teacher's own normalisation)".into(),
            });
        }
        eprintln!("augmentation is on: the teacher runs on every augmented batch");
        TeacherSource::Live(Box::new(teacher.loaded.model.valid()))
    } else {
        TeacherSource::Cached(cached_teacher_logits(
            &teacher,
            teacher_path,
            dataset,
            &options.out_dir,
            &options.device,
        )?)
    };
    let mut hooks = Distiller {
        config: settings.clone(),
        teacher: source,
        teacher_name: display_name(teacher_path),
    };
    Ok(train_with(config, dataset, options, None, &mut hooks)?)
}

/// The teacher's logits for every image of `dataset`, computed once and kept in `dir` (keyed by
/// the teacher file's size and modification time and the dataset), so that a resumed run or a
/// later stage does not pay for them again.
pub fn cached_teacher_logits(
    teacher: &SavedModel,
    teacher_path: &Path,
    dataset: &ImageDataset,
    dir: &Path,
    device: &burn::prelude::Device,
) -> Result<TeacherLogits, CompressError> {
    let meta = std::fs::metadata(teacher_path).map_err(|source| CompressError::Io {
        path: teacher_path.to_path_buf(),
        source,
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(
        "{}|{}|{}|{}|{}",
        display_name(teacher_path),
        meta.len(),
        modified,
        dataset.name,
        dataset.len()
    );
    let path = dir.join("teacher-logits.bin");
    if let Some(logits) = TeacherLogits::read(&path, &key, dataset.len()) {
        eprintln!("using the teacher's cached logits in {}", path.display());
        return Ok(logits);
    }
    let shared = Arc::new(dataset.clone());
    let all: Vec<usize> = (0..dataset.len()).collect();
    eprintln!(
        "computing the teacher's logits for {} images (once; cached in {})",
        all.len(),
        path.display()
    );
    let logits = TeacherLogits::compute(
        &teacher.loaded.model,
        &shared,
        &all,
        &teacher.normalization,
        device,
    );
    logits
        .write(&path, &key)
        .map_err(|source| CompressError::Io { path, source })?;
    Ok(logits)
}

fn display_name(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}
