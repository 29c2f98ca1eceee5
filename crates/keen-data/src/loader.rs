//! Batching: shuffle, augment, normalize, and prefetch in the background.
//!
//! Reproducibility is the design constraint. The epoch's order and every augmentation
//! draw are pure functions of `(seed, epoch, sample position)`: the order comes from a
//! generator keyed by `(seed, epoch)`, and sample `p` of the epoch gets its own
//! generator keyed by `(seed, epoch, p)`. So batch `k` is the same whether it is built
//! first, last, on another thread, or after a resume that skipped batches `0..k`.
//!
//! Throughput: a background thread builds batches (each in parallel with rayon) and
//! keeps up to [`PREFETCH_BATCHES`] ready, so data work overlaps training.

mod cycle;
mod normalize;
mod two_view;

pub use cycle::{cycled_batches, CycledBatches};
pub use normalize::Normalization;
pub use two_view::{
    two_view_batch, two_view_batches, two_view_batches_per_pass, TwoViewBatch, TwoViewConfig,
    TwoViewStream,
};

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::augment::AugmentConfig;
use crate::dataset::ImageDataset;

/// Batches built ahead of the consumer.
pub const PREFETCH_BATCHES: usize = 2;

/// Keeps the shuffle generator's key apart from every per-sample key.
const ORDER_STREAM: u64 = 0x006f_7264_6572; // "order"
/// Domain of the per-sample augmentation generators.
const SAMPLE_STREAM: u64 = 0x7361_6d70_6c65; // "sample"

/// One batch of normalized images, ready to become a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `B * C * H * W` values, NCHW, normalized.
    pub images: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<u32>,
    /// The dataset index of each image (for per-sample logging and debugging).
    pub indices: Vec<usize>,
    /// `[B, C, H, W]`; `B` may be smaller for the last batch unless `drop_last`.
    pub shape: [usize; 4],
}

/// How one epoch is turned into batches.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch; must be positive.
    pub batch_size: usize,
    /// Shuffle the order each epoch (training) or keep it (evaluation).
    pub shuffle: bool,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of the order and of every augmentation draw.
    pub seed: u64,
    /// Augmentation applied to every image.
    pub augment: AugmentConfig,
    /// Normalization applied after augmentation.
    pub normalization: Normalization,
}

impl LoaderConfig {
    /// Evaluation settings: fixed order, every image, no augmentation.
    pub fn eval(batch_size: usize, normalization: Normalization) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            augment: AugmentConfig::none(),
            normalization,
        }
    }
}

/// How many batches an epoch over `n` images yields under `cfg` (0 if `batch_size` is 0).
pub fn num_batches(n: usize, cfg: &LoaderConfig) -> usize {
    match (cfg.batch_size, cfg.drop_last) {
        (0, _) => 0,
        (bs, true) => n / bs,
        (bs, false) => n.div_ceil(bs),
    }
}

/// The dataset indices of an epoch, in the order they will be batched.
pub fn epoch_order(indices: &[usize], cfg: &LoaderConfig, epoch: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    if cfg.shuffle {
        order.shuffle(&mut keyed_rng(cfg.seed, epoch, ORDER_STREAM, 0));
    }
    order
}

/// The generator of the augmentation draws for the sample at `position` of `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, position: usize) -> ChaCha8Rng {
    keyed_rng(seed, epoch, SAMPLE_STREAM, position as u64)
}

/// A ChaCha generator whose 256-bit key is the tuple itself: distinct tuples give
/// independent streams without any hashing that could collide.
fn keyed_rng(seed: u64, epoch: usize, stream: u64, position: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key
        .chunks_exact_mut(8)
        .zip([seed, epoch as u64, stream, position])
    {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Builds batch `k` of an epoch whose order is `order` (from [`epoch_order`]),
/// augmenting and normalizing its images in parallel.
///
/// # Panics
/// If `k` is past the end of the epoch or an index is out of range for `ds`.
pub fn build_batch(
    ds: &ImageDataset,
    order: &[usize],
    cfg: &LoaderConfig,
    epoch: usize,
    k: usize,
) -> Batch {
    let start = k * cfg.batch_size;
    let end = (start + cfg.batch_size).min(order.len());
    assert!(start < end, "batch {k} is past the end of the epoch");
    let shape = ds.image_shape();
    let chw = ds.image_len();
    let mut images = vec![0f32; (end - start) * chw];
    images.par_chunks_mut(chw).enumerate().for_each(|(i, out)| {
        let position = start + i;
        let pixels = ds.image(order[position]);
        if cfg.augment.is_identity() {
            cfg.normalization.apply(pixels, out);
        } else {
            let mut rng = sample_rng(cfg.seed, epoch, position);
            cfg.normalization
                .apply(&cfg.augment.apply(pixels, shape, &mut rng), out);
        }
    });
    let indices = order[start..end].to_vec();
    Batch {
        images,
        labels: indices.iter().map(|&i| ds.labels[i]).collect(),
        shape: [end - start, shape[0], shape[1], shape[2]],
        indices,
    }
}

/// Something the loader can share with its background thread.
///
/// Pass `&Arc<ImageDataset>` to share without copying; `&ImageDataset` also works but
/// copies the dataset once per epoch (cheap next to an epoch of training, but not free).
pub trait IntoSharedDataset {
    /// The dataset behind an `Arc`.
    fn into_shared(self) -> Arc<ImageDataset>;
}

impl IntoSharedDataset for &Arc<ImageDataset> {
    fn into_shared(self) -> Arc<ImageDataset> {
        Arc::clone(self)
    }
}

impl IntoSharedDataset for Arc<ImageDataset> {
    fn into_shared(self) -> Arc<ImageDataset> {
        self
    }
}

impl IntoSharedDataset for &ImageDataset {
    fn into_shared(self) -> Arc<ImageDataset> {
        Arc::new(self.clone())
    }
}

/// Batches of one epoch over `indices` (positions into `ds`, e.g. a train split).
///
/// # Panics
/// If `cfg.batch_size` is 0, the normalization's channel count differs from the
/// dataset's, or an index is out of range. These are caller bugs: reject a user-given
/// batch size of 0 before building the config.
pub fn epoch_batches(
    ds: impl IntoSharedDataset,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: usize,
) -> EpochLoader {
    epoch_batches_from(ds, indices, cfg, epoch, 0)
}

/// Like [`epoch_batches`] but starting at batch `first_batch`: what a run resumed
/// mid-epoch uses. Yields exactly the batches `first_batch..` an uninterrupted run
/// would, without building the skipped ones.
pub fn epoch_batches_from(
    ds: impl IntoSharedDataset,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: usize,
    first_batch: usize,
) -> EpochLoader {
    let ds = ds.into_shared();
    assert!(cfg.batch_size > 0, "batch_size must be positive");
    assert_eq!(
        cfg.normalization.mean.len(),
        ds.channels,
        "normalization has {} channels but the dataset has {}",
        cfg.normalization.mean.len(),
        ds.channels
    );
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        panic!(
            "index {bad} out of range for a dataset of {} images",
            ds.len()
        );
    }
    let total = num_batches(indices.len(), cfg);
    let first = first_batch.min(total);
    let order = epoch_order(indices, cfg, epoch);
    let cfg = cfg.clone();
    let (tx, rx) = sync_channel(PREFETCH_BATCHES);
    let worker = std::thread::Builder::new()
        .name(format!("keen-loader-epoch-{epoch}"))
        .spawn(move || {
            for k in first..total {
                let batch = build_batch(&ds, &order, &cfg, epoch, k);
                if tx.send(batch).is_err() {
                    return; // The consumer dropped the loader: stop early.
                }
            }
        });
    match worker {
        Ok(handle) => EpochLoader {
            rx: Some(rx),
            worker: Some(handle),
            remaining: total - first,
        },
        // Without a thread there is nothing to prefetch on; that is fatal for training.
        Err(e) => panic!("cannot spawn the data loader thread: {e}"),
    }
}

/// An iterator over one epoch's batches, produced on a background thread.
///
/// Dropping it early stops the thread after the batch it is building.
#[derive(Debug)]
pub struct EpochLoader {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl EpochLoader {
    /// Joins the worker, re-raising its panic on this thread so a bug in batch building
    /// is not mistaken for the end of the epoch.
    fn finish(&mut self) {
        self.rx = None;
        if let Some(handle) = self.worker.take() {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Iterator for EpochLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            self.finish();
            return None;
        }
        let received = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        match received {
            Some(batch) => {
                self.remaining -= 1;
                Some(batch)
            }
            None => {
                self.remaining = 0;
                self.finish();
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for EpochLoader {}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        // Unblock a worker waiting on a full channel, then wait for it; a worker panic
        // is not re-raised here because panicking in drop would abort.
        self.rx = None;
        if let Some(handle) = self.worker.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batch_size: usize, drop_last: bool) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last,
            seed: 1,
            augment: AugmentConfig::none(),
            normalization: Normalization::identity(1),
        }
    }

    #[test]
    fn batch_counts() {
        assert_eq!(num_batches(10, &cfg(3, false)), 4);
        assert_eq!(num_batches(10, &cfg(3, true)), 3);
        assert_eq!(num_batches(9, &cfg(3, false)), 3);
        assert_eq!(num_batches(0, &cfg(3, false)), 0);
        assert_eq!(num_batches(10, &cfg(0, false)), 0);
    }

    #[test]
    fn order_is_a_permutation_that_changes_with_the_epoch() {
        let idx: Vec<usize> = (0..50).collect();
        let c = cfg(4, false);
        let (a, b) = (epoch_order(&idx, &c, 0), epoch_order(&idx, &c, 1));
        assert_ne!(a, b);
        assert_eq!(a, epoch_order(&idx, &c, 0));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, idx);
        let fixed = LoaderConfig {
            shuffle: false,
            ..c
        };
        assert_eq!(epoch_order(&idx, &fixed, 3), idx);
    }

    #[test]
    fn sample_generators_differ_by_every_key_part() {
        use rand::Rng;
        let draw = |s, e, p| sample_rng(s, e, p).random::<u64>();
        let base = draw(1, 2, 3);
        assert_eq!(base, draw(1, 2, 3));
        assert_ne!(base, draw(0, 2, 3));
        assert_ne!(base, draw(1, 0, 3));
        assert_ne!(base, draw(1, 2, 0));
    }
}
