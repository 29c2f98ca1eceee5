//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! Layout (big-endian): a 4-byte magic `0x00000803` (u8 data, 3 dims) for images or
//! `0x00000801` (u8, 1 dim) for labels, then one u32 per dimension, then the data.
//! Whether a file is gzipped is decided by its first bytes, not its name.

use std::path::Path;

use crate::dataset::ImageDataset;
use crate::error::DataError;
use crate::gzip::read_maybe_gzip;

/// Magic number of a u8 image file with dimensions (n, rows, cols).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of a u8 label file with dimension (n).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an IDX image file. Returns `(pixels, n, rows, cols)` with the pixels of all
/// `n` images back to back, row-major (which is CHW for one channel).
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let dims = parse_header(path, &bytes, IDX_IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if n > 0 && (rows == 0 || cols == 0) {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            reason: format!("{n} images of degenerate size {rows}x{cols}"),
        });
    }
    let header = 4 + 4 * 3;
    let body = take_body(path, bytes, header, &[n, rows, cols])?;
    Ok((body, n, rows, cols))
}

/// Reads an IDX label file: one u8 label per sample.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let dims = parse_header(path, &bytes, IDX_LABELS_MAGIC, 1)?;
    take_body(path, bytes, 4 + 4, &dims)
}

/// Reads an image file and its label file into a dataset, checking that the counts
/// agree and that every label is `< class_names.len()`.
pub fn read_idx_dataset(
    images_path: &Path,
    labels_path: &Path,
    name: &str,
    class_names: Vec<String>,
) -> Result<ImageDataset, DataError> {
    let (images, n, rows, cols) = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            path: labels_path.to_path_buf(),
            images: n,
            labels: labels.len(),
        });
    }
    let ds = ImageDataset {
        name: name.to_string(),
        images,
        labels: labels.into_iter().map(u32::from).collect(),
        channels: 1,
        height: rows,
        width: cols,
        class_names,
    };
    // Labels are the only thing left that can be wrong; name the label file.
    ds.validate(labels_path)?;
    Ok(ds)
}

/// Checks the magic and returns the `ndims` dimensions that follow it.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    ndims: usize,
) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * ndims;
    // A file too short to hold even the magic can only be judged by its length.
    if bytes.len() < 4 {
        return Err(truncated(path, header_len as u64, bytes.len() as u64));
    }
    let found = be_u32(&bytes[0..4]);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
        });
    }
    if bytes.len() < header_len {
        return Err(truncated(path, header_len as u64, bytes.len() as u64));
    }
    Ok((0..ndims)
        .map(|d| be_u32(&bytes[4 + 4 * d..8 + 4 * d]) as usize)
        .collect())
}

/// Drops the header and checks the body is exactly the product of `dims` bytes.
fn take_body(
    path: &Path,
    mut bytes: Vec<u8>,
    header_len: usize,
    dims: &[usize],
) -> Result<Vec<u8>, DataError> {
    let body_len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| DataError::Malformed {
            path: path.to_path_buf(),
            reason: format!("dimensions {dims:?} overflow"),
        })?;
    let expected = header_len as u64 + body_len;
    let found = bytes.len() as u64;
    if found < expected {
        return Err(truncated(path, expected, found));
    }
    if found > expected {
        // Trailing bytes mean the header and the data disagree: better to refuse than to
        // silently train on a misaligned file.
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            reason: format!(
                "{} trailing bytes after the {expected} bytes the header describes",
                found - expected
            ),
        });
    }
    bytes.drain(..header_len);
    Ok(bytes)
}

fn truncated(path: &Path, expected_bytes: u64, found_bytes: u64) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        expected_bytes,
        found_bytes,
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_file(n: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
        let mut v = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, rows, cols] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_dims_are_parsed_big_endian() {
        let bytes = images_file(2, 3, 258, &[]);
        let dims = parse_header(Path::new("x"), &bytes, IDX_IMAGES_MAGIC, 3).expect("header");
        assert_eq!(dims, vec![2, 3, 258]);
    }

    #[test]
    fn short_header_is_truncated() {
        let bytes = images_file(1, 1, 1, &[]);
        let err = parse_header(Path::new("x"), &bytes[..9], IDX_IMAGES_MAGIC, 3)
            .expect_err("short header");
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected_bytes: 16,
                    found_bytes: 9,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let bytes = images_file(1, 1, 1, &[5, 6]);
        let err = take_body(Path::new("/t"), bytes, 16, &[1, 1, 1]).expect_err("trailing");
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn overflowing_dims_are_rejected_not_allocated() {
        let err =
            take_body(Path::new("/t"), vec![0; 16], 16, &[usize::MAX, 2, 2]).expect_err("overflow");
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
    }
}
