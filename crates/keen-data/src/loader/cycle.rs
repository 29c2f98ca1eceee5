//! Batches from an endless cycle of passes over a split, for runs whose epochs are counted in
//! steps rather than passes (`--steps-per-epoch`, semi-supervised training with a small
//! labelled set that is seen many times per epoch).
//!
//! Batch `k` of the cycle is batch `k % per_pass` of pass `k / per_pass`, and pass `p` is
//! exactly epoch `p` of [`epoch_batches`](super::epoch_batches). So when an epoch is one pass,
//! the cycle yields the same batches as the plain loader, and batch `k` never depends on where
//! a run was interrupted.

use std::sync::Arc;

use super::{epoch_batches_from, num_batches, Batch, EpochLoader, IntoSharedDataset, LoaderConfig};
use crate::dataset::ImageDataset;

/// Batches `first_batch..first_batch + count` of the cycle of passes over `indices`.
///
/// # Panics
/// If `count > 0` but a pass holds no batch (fewer images than `cfg.batch_size` with
/// `drop_last`), or for the reasons [`epoch_batches`](super::epoch_batches) panics. Callers
/// reject such settings first.
pub fn cycled_batches(
    ds: impl IntoSharedDataset,
    indices: &[usize],
    cfg: &LoaderConfig,
    first_batch: usize,
    count: usize,
) -> CycledBatches {
    let per_pass = num_batches(indices.len(), cfg);
    assert!(
        count == 0 || per_pass > 0,
        "a pass over {} images yields no batch of {}",
        indices.len(),
        cfg.batch_size
    );
    CycledBatches {
        ds: ds.into_shared(),
        indices: indices.to_vec(),
        cfg: cfg.clone(),
        per_pass,
        next: first_batch,
        end: first_batch + count,
        current: None,
    }
}

/// An iterator over a stretch of the cycle; each pass is prefetched by an [`EpochLoader`].
#[derive(Debug)]
pub struct CycledBatches {
    ds: Arc<ImageDataset>,
    indices: Vec<usize>,
    cfg: LoaderConfig,
    per_pass: usize,
    next: usize,
    end: usize,
    current: Option<EpochLoader>,
}

impl Iterator for CycledBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            self.current = None;
            return None;
        }
        let (pass, within) = (self.next / self.per_pass, self.next % self.per_pass);
        let loader = self.current.get_or_insert_with(|| {
            epoch_batches_from(&self.ds, &self.indices, &self.cfg, pass, within)
        });
        let batch = loader.next()?;
        self.next += 1;
        if self.next.is_multiple_of(self.per_pass) {
            self.current = None;
        }
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for CycledBatches {}

#[cfg(test)]
mod tests {
    use super::super::{epoch_batches, Normalization};
    use super::*;
    use crate::augment::AugmentConfig;
    use crate::toy::{halves_dataset, Halves};

    fn cfg() -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            shuffle: true,
            drop_last: true,
            seed: 9,
            augment: AugmentConfig {
                random_crop_padding: 1,
                horizontal_flip: true,
                rand_augment: None,
            },
            normalization: Normalization::identity(1),
        }
    }

    #[test]
    fn the_cycle_is_the_plain_epochs_back_to_back_from_any_start() {
        let ds = Arc::new(halves_dataset(30, 1, Halves::TopBottom));
        let indices: Vec<usize> = (0..18).collect();
        // 18 images in batches of 4: 4 batches per pass, 2 images dropped.
        let plain: Vec<Batch> = (0..3)
            .flat_map(|pass| epoch_batches(&ds, &indices, &cfg(), pass))
            .collect();
        assert_eq!(plain.len(), 12);
        let cycled: Vec<Batch> = cycled_batches(&ds, &indices, &cfg(), 0, 12).collect();
        assert_eq!(cycled, plain);
        // Resuming mid-pass yields the same batches.
        let tail: Vec<Batch> = cycled_batches(&ds, &indices, &cfg(), 5, 7).collect();
        assert_eq!(tail, plain[5..]);
    }
}
