//! Fixture writers shared by the integration tests: every test writes the files it
//! reads, so the suite needs no downloads and no data outside the repository.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{write::GzEncoder, Compression};

/// IDX image file bytes: magic 0x803, dims, then `pixels`.
pub fn idx_images_bytes(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = 0x0000_0803u32.to_be_bytes().to_vec();
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

/// IDX label file bytes: magic 0x801, count, then `labels`.
pub fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut v = 0x0000_0801u32.to_be_bytes().to_vec();
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("in-memory gzip");
    enc.finish().expect("in-memory gzip")
}

/// Writes `bytes` to `dir/name` (creating `dir`) and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create fixture dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// Pixels of `n` images of `len` bytes where image `i` is filled with a ramp starting
/// at `i`, so every image is distinguishable.
pub fn ramp_pixels(n: usize, len: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..len).map(move |j| ((i * 31 + j * 7) % 256) as u8))
        .collect()
}

/// Writes a tiny IDX dataset (both splits) into `dir`, gzipped or raw, with
/// `n_train`/`n_test` images of `rows x cols` and labels `i % 10`.
pub fn write_idx_dataset(
    dir: &Path,
    n_train: usize,
    n_test: usize,
    rows: usize,
    cols: usize,
    gz: bool,
) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let images = idx_images_bytes(
            n as u32,
            rows as u32,
            cols as u32,
            &ramp_pixels(n, rows * cols),
        );
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let labels = idx_labels_bytes(&labels);
        let (images, labels, ext) = if gz {
            (gzip(&images), gzip(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        write(dir, &format!("{prefix}-images-idx3-ubyte{ext}"), &images);
        write(dir, &format!("{prefix}-labels-idx1-ubyte{ext}"), &labels);
    }
}

/// CIFAR-10 binary records: one label byte then 3072 pixel bytes per image.
pub fn cifar10_records(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..3072).map(|j| ((i + j) % 256) as u8));
    }
    v
}

/// CIFAR-100 binary records: coarse and fine label bytes then 3072 pixel bytes.
pub fn cifar100_records(labels: &[(u8, u8)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &(coarse, fine)) in labels.iter().enumerate() {
        v.push(coarse);
        v.push(fine);
        v.extend((0..3072).map(|j| ((i * 3 + j) % 256) as u8));
    }
    v
}
