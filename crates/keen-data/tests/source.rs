//! Named datasets end to end: parsing specs, finding files, loading splits, checksums.
//! The environment is passed explicitly (`SearchEnv`), never set process-wide, so these
//! tests run in parallel without interfering.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use keen_data::source::{load_from_dir, sha256_bytes, verify_checksums, SearchEnv};
use keen_data::{DataError, DataLocator, DatasetSpec, SplitName};

/// An environment that only knows the folders a test gives it.
fn isolated(keen_data: Option<PathBuf>) -> SearchEnv {
    SearchEnv {
        keen_data,
        system_root: None,
        cache_root: None,
        no_download: true,
    }
}

fn locator(data_dir: &Path) -> DataLocator {
    DataLocator {
        data_dir: Some(data_dir.to_path_buf()),
        allow_download: false,
    }
}

#[test]
fn unknown_specs_are_rejected_with_the_valid_names() {
    let err = "imagenet".parse::<DatasetSpec>().expect_err("unknown");
    let msg = err.to_string();
    assert!(matches!(err, DataError::BadSpec(_)));
    for name in ["fashion-mnist", "mnist", "cifar10", "folder:PATH"] {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(matches!(
        "folder:".parse::<DatasetSpec>(),
        Err(DataError::BadSpec(_))
    ));
    assert!(matches!(
        "".parse::<DatasetSpec>(),
        Err(DataError::BadSpec(_))
    ));
    assert_eq!(
        "Fashion-MNIST".parse::<DatasetSpec>().ok(),
        Some(DatasetSpec::FashionMnist)
    );
    assert_eq!(
        "cifar-10".parse::<DatasetSpec>().ok(),
        Some(DatasetSpec::Cifar10)
    );
}

#[test]
fn fashion_mnist_loads_from_a_data_dir_subfolder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_idx_dataset(&tmp.path().join("fashion-mnist"), 30, 12, 28, 28, true);
    let loc = locator(tmp.path());
    let env = isolated(None);
    let spec = DatasetSpec::FashionMnist;
    assert_eq!(
        loc.locate_in(&spec, &env).expect("located"),
        tmp.path().join("fashion-mnist")
    );
    let train = loc.load_in(&spec, SplitName::Train, &env).expect("train");
    let test = loc.load_in(&spec, SplitName::Test, &env).expect("test");
    assert_eq!((train.len(), test.len()), (30, 12));
    assert_eq!(train.image_shape(), spec.image_shape());
    assert_eq!(train.name, "fashion-mnist");
    assert_eq!(train.class_names[0], "T-shirt/top");
    assert_eq!(train.class_names[9], "Ankle boot");
    assert_eq!(train.labels[..3], [0, 1, 2]);
}

#[test]
fn keen_data_is_used_when_no_data_dir_is_given_and_unpacked_files_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_idx_dataset(tmp.path(), 5, 3, 4, 4, false);
    let loc = DataLocator::default();
    let env = isolated(Some(tmp.path().to_path_buf()));
    let ds = loc
        .load_in(&DatasetSpec::Mnist, SplitName::Test, &env)
        .expect("mnist");
    assert_eq!((ds.len(), ds.image_shape()), (3, [1, 4, 4]));
    assert_eq!(ds.class_names[7], "7");
}

#[test]
fn data_dir_wins_over_keen_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (flag, env_dir) = (tmp.path().join("flag"), tmp.path().join("env"));
    write_idx_dataset(&flag, 2, 2, 3, 3, true);
    write_idx_dataset(&env_dir, 4, 4, 3, 3, true);
    let env = isolated(Some(env_dir));
    let ds = locator(&flag)
        .load_in(&DatasetSpec::Mnist, SplitName::Train, &env)
        .expect("load");
    assert_eq!(ds.len(), 2, "loaded from --data, not KEEN_DATA");
}

#[test]
fn broken_file_in_a_located_folder_names_that_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_idx_dataset(tmp.path(), 5, 3, 4, 4, false);
    let labels = write(
        tmp.path(),
        "t10k-labels-idx1-ubyte",
        &idx_labels_bytes(&[0, 1]),
    );
    let err = locator(tmp.path())
        .load_in(&DatasetSpec::Mnist, SplitName::Test, &isolated(None))
        .expect_err("count mismatch");
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&labels.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_fashion_mnist_says_how_to_install_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let loc = DataLocator {
        data_dir: Some(tmp.path().to_path_buf()),
        allow_download: true,
    };
    let env = SearchEnv {
        cache_root: Some(tmp.path().join("cache")),
        ..isolated(Some(tmp.path().join("env")))
    };
    let err = loc
        .load_in(&DatasetSpec::FashionMnist, SplitName::Train, &env)
        .expect_err("missing");
    let DataError::NotFound {
        name,
        searched,
        hint,
    } = &err
    else {
        panic!("expected NotFound, got {err:?}");
    };
    assert_eq!(name, "fashion-mnist");
    assert_eq!(searched.first(), Some(&tmp.path().to_path_buf()));
    assert!(searched.contains(&tmp.path().join("env/fashion-mnist")));
    assert!(searched.contains(&tmp.path().join("cache/fashion-mnist")));
    assert!(
        hint.contains("apt-get install dataset-fashion-mnist"),
        "{hint}"
    );
    assert!(hint.contains("KEEN_DATA"), "{hint}");
    // Nothing was written: KEEN_NO_DOWNLOAD (no_download) was honoured.
    assert!(!tmp.path().join("cache").exists());
}

#[test]
fn missing_cifar10_says_how_to_extract_the_archive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = locator(tmp.path())
        .locate_in(&DatasetSpec::Cifar10, &isolated(None))
        .expect_err("missing");
    let msg = err.to_string();
    assert!(
        msg.contains("cifar-10-binary.tar.gz") && msg.contains("tar xzf"),
        "{msg}"
    );
}

#[test]
fn cifar10_loads_from_the_extracted_archive_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cifar-10-batches-bin");
    for i in 1..=5 {
        write(
            &dir,
            &format!("data_batch_{i}.bin"),
            &cifar10_records(&[i as u8, 0]),
        );
    }
    write(&dir, "test_batch.bin", &cifar10_records(&[9, 8, 7]));
    let loc = locator(tmp.path());
    let train = loc
        .load_in(&DatasetSpec::Cifar10, SplitName::Train, &isolated(None))
        .expect("train");
    assert_eq!(train.labels, vec![1, 0, 2, 0, 3, 0, 4, 0, 5, 0]);
    let test = loc
        .load_in(&DatasetSpec::Cifar10, SplitName::Test, &isolated(None))
        .expect("test");
    assert_eq!((test.len(), test.image_shape()), (3, [3, 32, 32]));
}

#[test]
fn checksums_are_verified_on_decompressed_content() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_idx_dataset(tmp.path(), 2, 2, 2, 2, true);
    let err = verify_checksums(&DatasetSpec::Mnist, tmp.path()).expect_err("not real mnist");
    let DataError::Checksum { path, found, .. } = &err else {
        panic!("expected Checksum, got {err:?}");
    };
    assert_eq!(path, &tmp.path().join("train-images-idx3-ubyte.gz"));
    let content = idx_images_bytes(2, 2, 2, &ramp_pixels(2, 4));
    assert_eq!(
        found,
        &sha256_bytes(&content),
        "hash of the decompressed bytes"
    );
}

#[test]
fn load_from_dir_reports_a_missing_split_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_idx_dataset(tmp.path(), 2, 2, 2, 2, true);
    std::fs::remove_file(tmp.path().join("t10k-labels-idx1-ubyte.gz")).expect("rm");
    let err = load_from_dir(&DatasetSpec::Mnist, tmp.path(), SplitName::Test).expect_err("missing");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
}

/// Checks keen's hard-coded hashes and the system search rule against the real
/// Debian package where it is installed; elsewhere it only reports the skip.
#[test]
fn installed_debian_fashion_mnist_is_found_and_verifies() {
    let system = Path::new("/usr/share/datasets");
    if !system
        .join("fashion-mnist/t10k-images-idx3-ubyte.gz")
        .is_file()
    {
        eprintln!("skipping: dataset-fashion-mnist not installed");
        return;
    }
    let env = SearchEnv {
        system_root: Some(system.to_path_buf()),
        ..isolated(None)
    };
    let dir = DataLocator::default()
        .locate_in(&DatasetSpec::FashionMnist, &env)
        .expect("found");
    assert_eq!(dir, system.join("fashion-mnist"));
    verify_checksums(&DatasetSpec::FashionMnist, &dir).expect("published checksums match");
}
