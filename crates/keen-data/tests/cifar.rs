//! CIFAR-10 / CIFAR-100 binary reading.

mod common;

use common::*;
use keen_data::cifar::{read_cifar100_bin, read_cifar10_bin, Cifar100Labels};
use keen_data::DataError;

#[test]
fn cifar10_batches_concatenate_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "data_batch_1.bin", &cifar10_records(&[0, 9, 3]));
    // Gzipped batches are accepted too.
    let b = write(
        dir.path(),
        "data_batch_2.bin",
        &gzip(&cifar10_records(&[7])),
    );
    let ds = read_cifar10_bin(&[&a, &b]).expect("cifar10");
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.image_shape(), [3, 32, 32]);
    assert_eq!(ds.labels, vec![0, 9, 3, 7]);
    assert_eq!(ds.class_names[9], "truck");
    // Pixels are copied as stored: record 1's first byte is (1 + 0) % 256.
    assert_eq!(ds.image(1)[0], 1);
    assert_eq!(ds.image(1)[3071], ((1 + 3071) % 256) as u8);
    ds.validate(dir.path()).expect("valid");
}

#[test]
fn cifar10_length_must_be_whole_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = cifar10_records(&[1, 2]);
    bytes.pop();
    let path = write(dir.path(), "data_batch_1.bin", &bytes);
    let err = read_cifar10_bin(&[&path]).expect_err("bad length");
    assert!(
        matches!(
            err,
            DataError::BadRecordLength {
                length_bytes: 6145,
                record_bytes: 3073,
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

#[test]
fn cifar10_label_must_be_below_ten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "test_batch.bin", &cifar10_records(&[4, 4, 10]));
    let err = read_cifar10_bin(&[&path]).expect_err("bad label");
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 2,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.path(), Some(path.as_path()));
}

#[test]
fn cifar100_keeps_fine_or_coarse_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "train.bin",
        &cifar100_records(&[(4, 0), (19, 99)]),
    );
    let fine = read_cifar100_bin(&[&path], Cifar100Labels::Fine).expect("fine");
    assert_eq!(
        (fine.labels.clone(), fine.num_classes()),
        (vec![0, 99], 100)
    );
    let coarse = read_cifar100_bin(&[&path], Cifar100Labels::Coarse).expect("coarse");
    assert_eq!(
        (coarse.labels.clone(), coarse.num_classes()),
        (vec![4, 19], 20)
    );
    assert_eq!(fine.images, coarse.images);
    assert_eq!(fine.image(1)[0], 3);
}

#[test]
fn cifar100_rejects_bad_labels_and_lengths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_fine = write(dir.path(), "bad_fine.bin", &cifar100_records(&[(0, 100)]));
    // The fine label is checked even when the coarse one is kept.
    for which in [Cifar100Labels::Fine, Cifar100Labels::Coarse] {
        let err = read_cifar100_bin(&[&bad_fine], which).expect_err("fine 100");
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    label: 100,
                    num_classes: 100,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let bad_coarse = write(dir.path(), "bad_coarse.bin", &cifar100_records(&[(20, 0)]));
    let err = read_cifar100_bin(&[&bad_coarse], Cifar100Labels::Fine).expect_err("coarse 20");
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                label: 20,
                num_classes: 20,
                ..
            }
        ),
        "{err:?}"
    );
    // A CIFAR-10 file is one byte per record short of CIFAR-100's record size.
    let wrong = write(dir.path(), "cifar10.bin", &cifar10_records(&[1, 2]));
    let err = read_cifar100_bin(&[&wrong], Cifar100Labels::Fine).expect_err("wrong format");
    assert!(
        matches!(
            err,
            DataError::BadRecordLength {
                record_bytes: 3074,
                ..
            }
        ),
        "{err:?}"
    );
}
