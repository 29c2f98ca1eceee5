//! Where a dataset's files live, and loading them from there.
//!
//! Resolution order, first match wins:
//! 1. `--data DIR` ([`DataLocator::data_dir`]), then `DIR/<name>` and other common
//!    sub-folder layouts;
//! 2. the `KEEN_DATA` environment variable, the same way;
//! 3. the distribution's folder (`/usr/share/datasets/fashion-mnist`, from
//!    `apt-get install dataset-fashion-mnist`);
//! 4. keen's cache, `$XDG_CACHE_HOME/keen/datasets/<name>` (or `~/.cache/...`);
//! 5. a download into that cache, if allowed and `KEEN_NO_DOWNLOAD` is unset.
//!
//! The process environment is read in one place ([`SearchEnv::from_process`]) and
//! passed down, so tests can exercise every rule without touching global state.

use std::path::{Path, PathBuf};

use super::download::{download_dataset, find_file};
use super::{catalog, CatalogEntry, DatasetSpec, FileFormat, SplitName};
use crate::cifar::read_cifar10_bin;
use crate::dataset::ImageDataset;
use crate::error::DataError;
use crate::folder::{read_image_folder, FolderOptions};
use crate::idx::read_idx_dataset;

/// Where distribution packages install datasets.
const SYSTEM_DATASETS: &str = "/usr/share/datasets";

/// The parts of the environment the locator reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchEnv {
    /// `KEEN_DATA`, when set and non-empty.
    pub keen_data: Option<PathBuf>,
    /// Root of distribution-installed datasets (`/usr/share/datasets`), if searched.
    pub system_root: Option<PathBuf>,
    /// keen's dataset cache (`.../keen/datasets`), if a cache folder is known.
    pub cache_root: Option<PathBuf>,
    /// `KEEN_NO_DOWNLOAD` is set: never download.
    pub no_download: bool,
}

impl SearchEnv {
    /// Reads `KEEN_DATA`, `KEEN_NO_DOWNLOAD`, `XDG_CACHE_HOME` and `HOME`.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        // The XDG spec says relative values are invalid and must be ignored.
        let cache_home = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")));
        SearchEnv {
            keen_data: var("KEEN_DATA").map(PathBuf::from),
            system_root: Some(PathBuf::from(SYSTEM_DATASETS)),
            cache_root: cache_home.map(|c| c.join("keen").join("datasets")),
            no_download: var("KEEN_NO_DOWNLOAD").is_some_and(|v| v != "0"),
        }
    }
}

/// Finds (and, if allowed, downloads) datasets and loads their splits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataLocator {
    /// `--data DIR`: searched before anything else.
    pub data_dir: Option<PathBuf>,
    /// Download named datasets into the cache when they are found nowhere.
    pub allow_download: bool,
}

/// What [`DataLocator::survey`] reports about one named dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetStatus {
    /// Dataset name, e.g. `fashion-mnist`.
    pub name: String,
    /// The folder its files were found in, if any.
    pub found: Option<PathBuf>,
    /// Every folder looked at, in resolution order.
    pub searched: Vec<PathBuf>,
    /// How to get the files.
    pub hint: String,
}

impl DataLocator {
    /// The folder holding `spec`'s files, searching the process environment.
    pub fn locate(&self, spec: &DatasetSpec) -> Result<PathBuf, DataError> {
        self.locate_in(spec, &SearchEnv::from_process())
    }

    /// Loads one split of `spec`, searching the process environment.
    pub fn load(&self, spec: &DatasetSpec, split: SplitName) -> Result<ImageDataset, DataError> {
        self.load_in(spec, split, &SearchEnv::from_process())
    }

    /// Every named dataset, where it was found and where keen looked. Never downloads.
    pub fn survey(&self) -> Vec<DatasetStatus> {
        self.survey_in(&SearchEnv::from_process())
    }

    /// [`locate`](Self::locate) against an explicit environment.
    pub fn locate_in(&self, spec: &DatasetSpec, env: &SearchEnv) -> Result<PathBuf, DataError> {
        let Some(entry) = catalog(spec) else {
            return locate_folder(spec);
        };
        let searched = self.candidates(entry, env);
        if let Some(dir) = searched.iter().find(|d| holds(d, entry)) {
            return Ok(dir.clone());
        }
        let mut hint = entry.hint.to_string();
        match self.try_download(entry, env) {
            Ok(Some(dir)) => return Ok(dir),
            Ok(None) => {}
            Err(reason) => hint.push_str(&format!("\n(automatic download: {reason})")),
        }
        Err(DataError::NotFound {
            name: entry.name.to_string(),
            searched,
            hint,
        })
    }

    /// [`load`](Self::load) against an explicit environment.
    pub fn load_in(
        &self,
        spec: &DatasetSpec,
        split: SplitName,
        env: &SearchEnv,
    ) -> Result<ImageDataset, DataError> {
        let dir = self.locate_in(spec, env)?;
        load_from_dir(spec, &dir, split)
    }

    /// [`survey`](Self::survey) against an explicit environment.
    pub fn survey_in(&self, env: &SearchEnv) -> Vec<DatasetStatus> {
        DatasetSpec::named()
            .iter()
            .filter_map(catalog)
            .map(|entry| {
                let searched = self.candidates(entry, env);
                DatasetStatus {
                    name: entry.name.to_string(),
                    found: searched.iter().find(|d| holds(d, entry)).cloned(),
                    searched,
                    hint: entry.hint.to_string(),
                }
            })
            .collect()
    }

    /// Folders that may hold `entry`, in resolution order, without duplicates.
    fn candidates(&self, entry: &CatalogEntry, env: &SearchEnv) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for base in [&self.data_dir, &env.keen_data].into_iter().flatten() {
            dirs.push(base.clone());
            dirs.extend(entry.user_subdirs.iter().map(|s| base.join(s)));
        }
        if let (Some(root), Some(sub)) = (&env.system_root, entry.system_dir) {
            dirs.push(root.join(sub));
        }
        if let Some(cache) = &env.cache_root {
            let own = cache.join(entry.name);
            dirs.push(own.clone());
            dirs.extend(entry.nested.iter().map(|s| own.join(s)));
        }
        let mut unique = Vec::with_capacity(dirs.len());
        for d in dirs {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        unique
    }

    /// Downloads into the cache when everything allows it. `Ok(None)`: downloading was
    /// not attempted (not allowed, or nothing to download from); `Err`: why it failed.
    fn try_download(
        &self,
        entry: &CatalogEntry,
        env: &SearchEnv,
    ) -> Result<Option<PathBuf>, String> {
        let Some(base) = entry.download_base else {
            return Ok(None);
        };
        if !self.allow_download {
            return Ok(None);
        }
        if env.no_download {
            return Err("disabled because KEEN_NO_DOWNLOAD is set".to_string());
        }
        let Some(cache) = &env.cache_root else {
            return Err("no cache folder: neither XDG_CACHE_HOME nor HOME is set".to_string());
        };
        let dest = cache.join(entry.name);
        download_dataset(entry, base, &dest).map_err(|e| format!("failed: {e}"))?;
        Ok(holds(&dest, entry).then_some(dest))
    }
}

/// Whether `dir` has every file of every split of `entry`, each unpacked or as `.gz`.
fn holds(dir: &Path, entry: &CatalogEntry) -> bool {
    entry.all_files().all(|f| find_file(dir, f.name).is_some())
}

fn locate_folder(spec: &DatasetSpec) -> Result<PathBuf, DataError> {
    let DatasetSpec::Folder(path) = spec else {
        return Err(DataError::BadSpec(format!(
            "{spec} is not a folder dataset"
        )));
    };
    if path.is_dir() {
        Ok(path.clone())
    } else {
        Err(DataError::NotFound {
            name: spec.to_string(),
            searched: vec![path.clone()],
            hint: format!("{} must be a folder laid out as CLASS/*.png|jpg|jpeg, or as train/CLASS/... and test/CLASS/...", path.display()),
        })
    }
}

/// Loads one split of `spec` from `dir`, a folder [`DataLocator::locate`] returned.
pub fn load_from_dir(
    spec: &DatasetSpec,
    dir: &Path,
    split: SplitName,
) -> Result<ImageDataset, DataError> {
    let Some(entry) = catalog(spec) else {
        return load_folder_split(dir, split);
    };
    let mut paths = Vec::new();
    for file in entry.split_files(split) {
        let path = find_file(dir, file.name).ok_or_else(|| DataError::NotFound {
            name: entry.name.to_string(),
            searched: vec![dir.join(file.name), dir.join(format!("{}.gz", file.name))],
            hint: entry.hint.to_string(),
        })?;
        paths.push(path);
    }
    let mut ds = match (entry.format, paths.as_slice()) {
        (FileFormat::Idx, [images, labels]) => {
            read_idx_dataset(images, labels, entry.name, spec.class_names())?
        }
        (FileFormat::Cifar10Bin, _) => read_cifar10_bin(&paths)?,
        (FileFormat::Idx, _) => {
            return Err(DataError::BadSpec(format!(
                "catalogue entry {} must list images and labels per split",
                entry.name
            )))
        }
    };
    ds.name = entry.name.to_string();
    ds.validate(dir)?;
    Ok(ds)
}

/// A folder dataset's split: `train/` and `test/` (or `val/`) sub-folders when present;
/// otherwise the whole folder is the training split and there is no test split.
fn load_folder_split(root: &Path, split: SplitName) -> Result<ImageDataset, DataError> {
    let opts = FolderOptions::default();
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return match split {
            SplitName::Train => read_image_folder(root, &opts),
            SplitName::Test => Err(folder_without_test(root, vec![root.join("test")])),
        };
    }
    match split {
        SplitName::Train => read_image_folder(&train_dir, &opts),
        SplitName::Test => {
            let searched = vec![root.join("test"), root.join("val")];
            let Some(test_dir) = searched.iter().find(|d| d.is_dir()) else {
                return Err(folder_without_test(root, searched));
            };
            let test = read_image_folder(test_dir, &opts)?;
            let train_classes = crate::folder::list_image_folder(&train_dir)?.class_names;
            align_classes(test, &train_classes, test_dir)
        }
    }
}

fn folder_without_test(root: &Path, searched: Vec<PathBuf>) -> DataError {
    DataError::NotFound {
        name: format!("folder:{}", root.display()),
        searched,
        hint: format!(
            "{0} has no test split: lay it out as {0}/train/CLASS/... and {0}/test/CLASS/..., \
             or hold out a validation split from the training images instead",
            root.display()
        ),
    }
}

/// Relabels a test folder so label `i` means the same class as in the training folder,
/// even when the test folder lacks some classes (which would shift sorted indices).
fn align_classes(
    mut test: ImageDataset,
    train_classes: &[String],
    test_dir: &Path,
) -> Result<ImageDataset, DataError> {
    if test.class_names == train_classes {
        return Ok(test);
    }
    let mut map = Vec::with_capacity(test.class_names.len());
    for name in &test.class_names {
        let Some(i) = train_classes.iter().position(|t| t == name) else {
            return Err(DataError::Malformed {
                path: test_dir.join(name),
                reason: format!("class `{name}` does not exist in the training folder"),
            });
        };
        map.push(i as u32);
    }
    for label in &mut test.labels {
        *label = map[*label as usize];
    }
    test.class_names = train_classes.to_vec();
    Ok(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_all(dir: &Path, entry: &CatalogEntry, gz: bool) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for f in entry.all_files() {
            let name = if gz {
                format!("{}.gz", f.name)
            } else {
                f.name.to_string()
            };
            std::fs::write(dir.join(name), b"").expect("touch");
        }
    }

    fn env_with(keen_data: Option<PathBuf>, cache_root: Option<PathBuf>) -> SearchEnv {
        SearchEnv {
            keen_data,
            system_root: None,
            cache_root,
            no_download: true,
        }
    }

    #[test]
    fn data_dir_beats_keen_data_beats_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = catalog(&DatasetSpec::Mnist).expect("entry");
        let (flag, envdir, cache) = (
            tmp.path().join("flag"),
            tmp.path().join("env"),
            tmp.path().join("cache"),
        );
        touch_all(&flag, entry, true);
        touch_all(&envdir.join("mnist"), entry, false);
        touch_all(&cache.join("mnist"), entry, true);
        let env = env_with(Some(envdir.clone()), Some(cache.clone()));
        let with_flag = DataLocator {
            data_dir: Some(flag.clone()),
            allow_download: false,
        };
        assert_eq!(
            with_flag
                .locate_in(&DatasetSpec::Mnist, &env)
                .expect("flag"),
            flag
        );
        let no_flag = DataLocator::default();
        assert_eq!(
            no_flag.locate_in(&DatasetSpec::Mnist, &env).expect("env"),
            envdir.join("mnist")
        );
        let cache_only = env_with(None, Some(cache.clone()));
        assert_eq!(
            no_flag
                .locate_in(&DatasetSpec::Mnist, &cache_only)
                .expect("cache"),
            cache.join("mnist")
        );
    }

    #[test]
    fn system_folder_is_searched_before_the_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = catalog(&DatasetSpec::FashionMnist).expect("entry");
        touch_all(&tmp.path().join("sys/fashion-mnist"), entry, true);
        touch_all(&tmp.path().join("cache/fashion-mnist"), entry, true);
        let env = SearchEnv {
            system_root: Some(tmp.path().join("sys")),
            ..env_with(None, Some(tmp.path().join("cache")))
        };
        let dir = DataLocator::default()
            .locate_in(&DatasetSpec::FashionMnist, &env)
            .expect("found");
        assert_eq!(dir, tmp.path().join("sys/fashion-mnist"));
    }

    #[test]
    fn cifar_archive_layout_is_found_under_the_data_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let entry = catalog(&DatasetSpec::Cifar10).expect("entry");
        touch_all(&tmp.path().join("cifar-10-batches-bin"), entry, false);
        let loc = DataLocator {
            data_dir: Some(tmp.path().to_path_buf()),
            allow_download: true,
        };
        let dir = loc
            .locate_in(&DatasetSpec::Cifar10, &env_with(None, None))
            .expect("found");
        assert_eq!(dir, tmp.path().join("cifar-10-batches-bin"));
    }

    #[test]
    fn partial_folder_does_not_count() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("train-images-idx3-ubyte.gz"), b"").expect("touch");
        let loc = DataLocator {
            data_dir: Some(tmp.path().to_path_buf()),
            allow_download: false,
        };
        let err = loc
            .locate_in(&DatasetSpec::Mnist, &env_with(None, None))
            .expect_err("partial");
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn not_found_explains_and_lists_searched_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let loc = DataLocator {
            data_dir: Some(tmp.path().join("nope")),
            allow_download: true,
        };
        let env = env_with(None, Some(tmp.path().join("cache")));
        let err = loc
            .locate_in(&DatasetSpec::FashionMnist, &env)
            .expect_err("missing");
        let DataError::NotFound { searched, hint, .. } = &err else {
            panic!("expected NotFound, got {err:?}");
        };
        assert_eq!(searched[0], tmp.path().join("nope"));
        assert!(searched.contains(&tmp.path().join("cache/fashion-mnist")));
        assert!(
            hint.contains("apt-get install dataset-fashion-mnist"),
            "{hint}"
        );
        assert!(hint.contains("KEEN_NO_DOWNLOAD"), "{hint}");
        assert!(err.to_string().contains("--data DIR"));
    }

    #[test]
    fn survey_reports_found_and_missing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // In a sub-folder: loose IDX files would match both MNIST and Fashion-MNIST.
        touch_all(
            &tmp.path().join("mnist"),
            catalog(&DatasetSpec::Mnist).expect("entry"),
            false,
        );
        let loc = DataLocator {
            data_dir: Some(tmp.path().to_path_buf()),
            allow_download: true,
        };
        let status = loc.survey_in(&env_with(None, None));
        let names: Vec<_> = status.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fashion-mnist", "mnist", "cifar10"]);
        assert_eq!(status[1].found, Some(tmp.path().join("mnist")));
        assert!(status[0].found.is_none() && !status[0].searched.is_empty());
    }

    #[test]
    fn test_labels_follow_the_training_class_order() {
        let ds = ImageDataset {
            name: "t".into(),
            images: vec![0; 2],
            labels: vec![0, 1],
            channels: 1,
            height: 1,
            width: 1,
            class_names: vec!["cat".into(), "dog".into()],
        };
        let train = ["ant".to_string(), "cat".to_string(), "dog".to_string()];
        let aligned = align_classes(ds.clone(), &train, Path::new("/t")).expect("aligned");
        assert_eq!(aligned.labels, vec![1, 2]);
        assert_eq!(aligned.class_names, train.to_vec());
        let err = align_classes(ds, &train[..2], Path::new("/t")).expect_err("unknown class");
        assert!(err.to_string().contains("/t/dog"), "{err}");
    }
}
