//! The in-memory dataset every reader produces and every consumer takes.

use std::path::Path;

use crate::error::DataError;

/// A labelled image classification dataset held in memory as `u8` pixels.
///
/// Images are stored back to back, each in CHW order (channel planes), because that is
/// the layout the models consume; keeping `u8` (not `f32`) makes Fashion-MNIST's 60k
/// training images 47 MB instead of 188 MB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDataset {
    /// Human-readable name, e.g. `fashion-mnist`.
    pub name: String,
    /// `len() * channels * height * width` bytes, CHW per image.
    pub images: Vec<u8>,
    /// One class index per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Channels per image (1 grayscale, 3 RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Name of each class, indexed by label.
    pub class_names: Vec<String>,
}

impl ImageDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (the length of `class_names`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, CHW.
    ///
    /// # Panics
    /// If `i >= self.len()` (an indexing bug in the caller, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// `[channels, height, width]`.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// A new dataset holding copies of the images at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is out of range (indices come from [`crate::split`], not from users).
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageDataset {
            name: self.name.clone(),
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }

    /// How many images each class has, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Checks the invariants the rest of keen relies on: a non-degenerate image shape,
    /// a pixel buffer of exactly `len * C * H * W` bytes and every label `< num_classes`.
    /// `path_for_errors` names the file or folder the data came from in any error.
    pub fn validate(&self, path_for_errors: &Path) -> Result<(), DataError> {
        let malformed = |reason: String| DataError::Malformed {
            path: path_for_errors.to_path_buf(),
            reason,
        };
        if self.image_len() == 0 {
            return Err(malformed(format!(
                "degenerate image shape {}x{}x{} (CxHxW)",
                self.channels, self.height, self.width
            )));
        }
        let expected = self.len().checked_mul(self.image_len());
        if expected != Some(self.images.len()) {
            return Err(malformed(format!(
                "{} pixel bytes for {} images of {}x{}x{} (CxHxW)",
                self.images.len(),
                self.len(),
                self.channels,
                self.height,
                self.width
            )));
        }
        let num_classes = self.num_classes();
        if let Some((index, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: path_for_errors.to_path_buf(),
                index,
                label,
                num_classes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageDataset {
        ImageDataset {
            name: "tiny".into(),
            images: (0..4 * 2 * 2).map(|v| v as u8).collect(),
            labels: vec![0, 1, 1, 0],
            channels: 1,
            height: 2,
            width: 2,
            class_names: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn image_and_subset_pick_the_right_pixels() {
        let ds = tiny();
        assert_eq!(ds.len(), 4);
        assert!(!ds.is_empty());
        assert_eq!(ds.image(2), &[8, 9, 10, 11]);
        let sub = ds.subset(&[3, 1]);
        assert_eq!(sub.labels, vec![0, 1]);
        assert_eq!(sub.image(0), &[12, 13, 14, 15]);
        assert_eq!(sub.image_shape(), [1, 2, 2]);
        assert_eq!(ds.class_counts(), vec![2, 2]);
        ds.validate(Path::new("tiny")).expect("valid");
    }

    #[test]
    fn validate_rejects_bad_labels_and_sizes() {
        let mut ds = tiny();
        ds.labels[2] = 5;
        let err = ds.validate(Path::new("/f/labels")).expect_err("bad label");
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    index: 2,
                    label: 5,
                    num_classes: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/f/labels"));

        let mut ds = tiny();
        ds.images.pop();
        let err = ds.validate(Path::new("/f/images")).expect_err("bad size");
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("/f/images"));
    }
}
