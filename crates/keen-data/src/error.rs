//! The one error type of keen-data.
//!
//! Every variant carries the file (or URL, or dataset name) it is about, so a user
//! reading the message knows which file to fix without re-running under a debugger.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while finding, reading or checking a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to read or write a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file starts with the gzip magic but does not decompress.
    #[error("{}: corrupt or truncated gzip data (a partial download?): {source}", path.display())]
    Decompress {
        /// The gzip file.
        path: PathBuf,
        /// What the decoder reported.
        #[source]
        source: std::io::Error,
    },

    /// A file's magic number is not the one its format requires.
    #[error("{}: bad magic number 0x{found:08x}, expected 0x{expected:08x} (wrong file or wrong format?)", path.display())]
    BadMagic {
        /// The file with the wrong header.
        path: PathBuf,
        /// The magic the format requires.
        expected: u32,
        /// The magic the file has.
        found: u32,
    },

    /// A file is shorter than its header says it must be.
    #[error("{}: truncated, header implies {expected_bytes} bytes but found {found_bytes}", path.display())]
    Truncated {
        /// The short file (after decompression, for gzip files).
        path: PathBuf,
        /// Bytes the header promises.
        expected_bytes: u64,
        /// Bytes actually present.
        found_bytes: u64,
    },

    /// A file is structurally wrong in a way no narrower variant describes.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A record-based file (CIFAR binary) whose length is not a whole number of records.
    #[error("{}: length {length_bytes} bytes is not a multiple of the {record_bytes}-byte record size", path.display())]
    BadRecordLength {
        /// The offending file.
        path: PathBuf,
        /// Its length in bytes.
        length_bytes: u64,
        /// The size of one record in bytes.
        record_bytes: u64,
    },

    /// Image and label files disagree on how many samples there are.
    #[error("{}: {images} images but {labels} labels", path.display())]
    CountMismatch {
        /// The label file (the images file is its sibling).
        path: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not a valid class index.
    #[error("{}: sample {index} has label {label}, but there are only {num_classes} classes", path.display())]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// Index of the sample within the file.
        index: usize,
        /// The label found.
        label: u32,
        /// Number of classes the dataset declares.
        num_classes: usize,
    },

    /// An image file could not be decoded.
    #[error("{}: cannot use image: {reason}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// Why decoding failed.
        reason: String,
    },

    /// An image folder holds no usable images.
    #[error("{}: no images found (expected ROOT/CLASS/*.png|jpg|jpeg)", path.display())]
    NoImages {
        /// The folder that was searched.
        path: PathBuf,
    },

    /// A named dataset was not found anywhere keen looks.
    #[error(
        "dataset `{name}` not found; searched:{}\n{hint}",
        list_paths(searched)
    )]
    NotFound {
        /// Dataset name, e.g. `fashion-mnist`.
        name: String,
        /// Every folder that was looked at, in order.
        searched: Vec<PathBuf>,
        /// How to get the files.
        hint: String,
    },

    /// A file's SHA-256 is not the published one.
    #[error("{}: SHA-256 mismatch, expected {expected}, found {found}", path.display())]
    Checksum {
        /// The file whose content was hashed.
        path: PathBuf,
        /// The published hash (hex).
        expected: String,
        /// The hash of what is on disk (hex).
        found: String,
    },

    /// A download failed.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The URL that failed.
        url: String,
        /// Why.
        reason: String,
    },

    /// A dataset specification (e.g. from `--dataset`) could not be parsed.
    #[error("bad dataset spec: {0}")]
    BadSpec(String),

    /// A labelled subset asks for more images of a class than the split holds.
    #[error("{dataset}: class '{class}' has {available} training images, fewer than the {wanted} labelled ones asked for")]
    TooFewLabelled {
        /// The dataset.
        dataset: String,
        /// The class that is short.
        class: String,
        /// Images of that class in the split.
        available: usize,
        /// Images per class asked for.
        wanted: usize,
    },
}

impl DataError {
    /// Wraps an I/O error with the file it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// The file this error is about, when it is about one file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::Decompress { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::Malformed { path, .. }
            | DataError::BadRecordLength { path, .. }
            | DataError::CountMismatch { path, .. }
            | DataError::LabelOutOfRange { path, .. }
            | DataError::Image { path, .. }
            | DataError::NoImages { path }
            | DataError::Checksum { path, .. } => Some(path),
            DataError::NotFound { .. }
            | DataError::Download { .. }
            | DataError::BadSpec(_)
            | DataError::TooFewLabelled { .. } => None,
        }
    }
}

/// Formats searched folders one per line so a long list stays readable.
fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return " (nowhere)".to_string();
    }
    paths
        .iter()
        .map(|p| format!("\n  {}", p.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file() {
        let e = DataError::Truncated {
            path: PathBuf::from("/x/train-images-idx3-ubyte"),
            expected_bytes: 100,
            found_bytes: 50,
        };
        let msg = e.to_string();
        assert!(msg.contains("/x/train-images-idx3-ubyte"), "{msg}");
        assert!(msg.contains("100") && msg.contains("50"), "{msg}");
        assert_eq!(e.path(), Some(Path::new("/x/train-images-idx3-ubyte")));
    }

    #[test]
    fn not_found_lists_every_searched_folder() {
        let e = DataError::NotFound {
            name: "mnist".into(),
            searched: vec![PathBuf::from("/a"), PathBuf::from("/b")],
            hint: "get it".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("\n  /a\n  /b\nget it"), "{msg}");
        assert!(e.path().is_none());
    }
}
