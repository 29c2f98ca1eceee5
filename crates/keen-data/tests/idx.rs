//! IDX reading: raw and gzipped files, and every way a file can be wrong.

mod common;

use std::path::Path;

use common::*;
use keen_data::idx::{read_idx_dataset, read_idx_images, read_idx_labels};
use keen_data::DataError;

fn classes() -> Vec<String> {
    (0..10).map(|i| i.to_string()).collect()
}

#[test]
fn raw_and_gzipped_files_read_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pixels = ramp_pixels(3, 4 * 5);
    let bytes = idx_images_bytes(3, 4, 5, &pixels);
    let raw = write(dir.path(), "images-raw", &bytes);
    // Gzip is detected by content: the name deliberately has no .gz.
    let gz = write(dir.path(), "images-gz", &gzip(&bytes));
    for path in [&raw, &gz] {
        let (data, n, rows, cols) = read_idx_images(path).expect("images");
        assert_eq!((n, rows, cols), (3, 4, 5));
        assert_eq!(data, pixels);
    }
    let labels = [3u8, 0, 9];
    let lraw = write(dir.path(), "labels", &idx_labels_bytes(&labels));
    let lgz = write(dir.path(), "labels.gz", &gzip(&idx_labels_bytes(&labels)));
    assert_eq!(read_idx_labels(&lraw).expect("raw labels"), labels);
    assert_eq!(read_idx_labels(&lgz).expect("gz labels"), labels);

    let ds = read_idx_dataset(&gz, &lgz, "tiny", classes()).expect("dataset");
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.image_shape(), [1, 4, 5]);
    assert_eq!(ds.labels, vec![3, 0, 9]);
    assert_eq!(ds.image(1), &pixels[20..40]);
}

#[test]
fn truncated_images_are_reported_with_sizes_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = idx_images_bytes(2, 3, 3, &[1; 17]); // one byte short of 18
    for (name, content) in [("short", bytes.clone()), ("short.gz", gzip(&bytes))] {
        let path = write(dir.path(), name, &content);
        let err = read_idx_images(&path).expect_err("truncated");
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected_bytes: 34,
                    found_bytes: 33,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    let labels = idx_labels_bytes(&[1, 2, 3]);
    let path = write(dir.path(), "labels-short", &labels[..labels.len() - 1]);
    let err = read_idx_labels(&path).expect_err("truncated labels");
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    // A file too short to hold the magic is truncated too.
    let path = write(dir.path(), "tiny", &[0, 0]);
    assert!(matches!(
        read_idx_images(&path),
        Err(DataError::Truncated { .. })
    ));
}

#[test]
fn wrong_magic_is_rejected_both_ways_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = write(dir.path(), "labels", &idx_labels_bytes(&[1, 2]));
    let images = write(dir.path(), "images", &idx_images_bytes(1, 1, 1, &[0]));
    let err = read_idx_images(&labels).expect_err("labels read as images");
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                expected: 0x803,
                found: 0x801,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&labels.display().to_string()));
    let err = read_idx_labels(&images).expect_err("images read as labels");
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                expected: 0x801,
                found: 0x803,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn count_mismatch_names_the_label_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = write(dir.path(), "images", &idx_images_bytes(3, 2, 2, &[0; 12]));
    let labels = write(dir.path(), "labels", &idx_labels_bytes(&[0, 1]));
    let err = read_idx_dataset(&images, &labels, "t", classes()).expect_err("mismatch");
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
    assert_eq!(err.path(), Some(labels.as_path()));
}

#[test]
fn label_out_of_range_is_reported_with_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = write(dir.path(), "images", &idx_images_bytes(3, 1, 1, &[0; 3]));
    let labels = write(dir.path(), "labels", &idx_labels_bytes(&[9, 10, 0]));
    let err = read_idx_dataset(&images, &labels, "t", classes()).expect_err("label 10");
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&labels.display().to_string()));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = read_idx_images(Path::new("/definitely/not/here-idx3")).expect_err("missing");
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/definitely/not/here-idx3"));
}

/// Runs on machines with the Debian package installed; elsewhere it checks nothing
/// more than the skip itself, and says so.
#[test]
fn debian_fashion_mnist_test_split_reads_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    if !images.is_file() || !labels.is_file() {
        eprintln!("skipping: {} not installed", dir.display());
        return;
    }
    let ds = read_idx_dataset(&images, &labels, "fashion-mnist", classes()).expect("fashion-mnist");
    assert_eq!((ds.len(), ds.image_shape()), (10_000, [1, 28, 28]));
    assert_eq!(ds.class_counts(), vec![1000; 10]);
}
