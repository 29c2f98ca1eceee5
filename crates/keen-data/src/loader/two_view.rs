//! Unlabelled batches seen twice — a weakly and a strongly augmented view of every image —
//! for FixMatch (Sohn et al. 2020).
//!
//! The stream is endless and indexed by optimizer step: batch `k` is batch `k % per_pass` of
//! pass `k / per_pass` over the unlabelled indices, each pass in its own seeded order, every
//! view drawn from a generator keyed by `(seed, pass, view, position)`. So the batch of a step
//! does not depend on where a run was interrupted, and a resumed run sees what an
//! uninterrupted one would. Batches are built on a background thread (each in parallel with
//! rayon), so augmentation runs on the CPU while the device trains.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::{keyed_rng, IntoSharedDataset, Normalization};
use crate::augment::{AugmentConfig, StrongAugment};
use crate::dataset::ImageDataset;

/// Batches built ahead of the consumer (the device step of FixMatch takes long enough that a
/// few in hand hide the jitter of building one).
const PREFETCH_TWO_VIEW: usize = 3;

/// Domains of the unlabelled stream's generators, apart from the labelled loader's.
const UNLABELLED_ORDER: u64 = 0x756e_6f72_6465; // "unorde"
const WEAK_VIEW: u64 = 0x7765_616b; // "weak"
const STRONG_VIEW: u64 = 0x7374_726f_6e67; // "strong"

/// How unlabelled images become two-view batches.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewConfig {
    /// Images per batch (FixMatch's μ·B); must be positive.
    pub batch_size: usize,
    /// Seed of the order and of every augmentation draw.
    pub seed: u64,
    /// The weak view (FixMatch: random crop and horizontal flip).
    pub weak: AugmentConfig,
    /// Applied after `weak`'s transforms (with their own draws) to make the strong view.
    pub strong: StrongAugment,
    /// Normalization applied to both views.
    pub normalization: Normalization,
}

/// One batch of unlabelled images in two views.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewBatch {
    /// Weak views, `B * C * H * W` values, NCHW, normalized.
    pub weak: Vec<f32>,
    /// Strong views of the same images, same layout.
    pub strong: Vec<f32>,
    /// The true labels: for measuring pseudo-label accuracy, never for training.
    pub labels: Vec<u32>,
    /// The dataset index of each image.
    pub indices: Vec<usize>,
    /// `[B, C, H, W]`.
    pub shape: [usize; 4],
}

/// Batches per pass over `n` unlabelled images (a final partial batch is dropped).
pub fn two_view_batches_per_pass(n: usize, cfg: &TwoViewConfig) -> usize {
    n.checked_div(cfg.batch_size).unwrap_or(0)
}

/// The order of pass `pass` over `indices`.
fn pass_order(indices: &[usize], cfg: &TwoViewConfig, pass: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    order.shuffle(&mut keyed_rng(cfg.seed, pass, UNLABELLED_ORDER, 0));
    order
}

/// Builds batch `within` of pass `pass`, whose order is `order`.
fn build(
    ds: &ImageDataset,
    order: &[usize],
    cfg: &TwoViewConfig,
    pass: usize,
    within: usize,
) -> TwoViewBatch {
    let start = within * cfg.batch_size;
    let indices = order[start..start + cfg.batch_size].to_vec();
    let shape = ds.image_shape();
    let chw = ds.image_len();
    let mut weak = vec![0f32; indices.len() * chw];
    let mut strong = vec![0f32; indices.len() * chw];
    weak.par_chunks_mut(chw)
        .zip(strong.par_chunks_mut(chw))
        .enumerate()
        .for_each(|(i, (weak_out, strong_out))| {
            let position = (start + i) as u64;
            let pixels = ds.image(indices[i]);
            let mut rng = keyed_rng(cfg.seed, pass, WEAK_VIEW, position);
            cfg.normalization
                .apply(&cfg.weak.apply(pixels, shape, &mut rng), weak_out);
            let mut rng = keyed_rng(cfg.seed, pass, STRONG_VIEW, position);
            let base = cfg.weak.apply(pixels, shape, &mut rng);
            cfg.normalization
                .apply(&cfg.strong.apply(&base, shape, &mut rng), strong_out);
        });
    TwoViewBatch {
        weak,
        strong,
        labels: indices.iter().map(|&i| ds.labels[i]).collect(),
        shape: [indices.len(), shape[0], shape[1], shape[2]],
        indices,
    }
}

/// The batch of step `step` (what [`two_view_batches`] yields for it), built on this thread.
///
/// # Panics
/// If a pass holds no batch (fewer than `cfg.batch_size` unlabelled images).
pub fn two_view_batch(
    ds: &ImageDataset,
    indices: &[usize],
    cfg: &TwoViewConfig,
    step: usize,
) -> TwoViewBatch {
    let per_pass = two_view_batches_per_pass(indices.len(), cfg);
    assert!(per_pass > 0, "fewer unlabelled images than one batch");
    let pass = step / per_pass;
    build(
        ds,
        &pass_order(indices, cfg, pass),
        cfg,
        pass,
        step % per_pass,
    )
}

/// The endless stream of batches from step `first_step` on, prefetched on a background thread.
///
/// # Panics
/// If a pass holds no batch, an index is out of range, or the normalization's channel count
/// differs from the dataset's: caller bugs, to be rejected before training starts.
pub fn two_view_batches(
    ds: impl IntoSharedDataset,
    indices: &[usize],
    cfg: &TwoViewConfig,
    first_step: usize,
) -> TwoViewStream {
    let ds = ds.into_shared();
    let per_pass = two_view_batches_per_pass(indices.len(), cfg);
    assert!(per_pass > 0, "fewer unlabelled images than one batch");
    assert_eq!(cfg.normalization.mean.len(), ds.channels);
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        panic!("index {bad} out of range for {} images", ds.len());
    }
    let (indices, cfg) = (indices.to_vec(), cfg.clone());
    let (tx, rx) = sync_channel(PREFETCH_TWO_VIEW);
    let worker = std::thread::Builder::new()
        .name("keen-unlabelled-loader".into())
        .spawn(move || {
            let mut order: Option<(usize, Vec<usize>)> = None;
            for step in first_step.. {
                let pass = step / per_pass;
                if order.as_ref().is_none_or(|(p, _)| *p != pass) {
                    order = Some((pass, pass_order(&indices, &cfg, pass)));
                }
                let Some((_, order)) = &order else {
                    unreachable!("the order was just set")
                };
                let batch = build(&ds, order, &cfg, pass, step % per_pass);
                if tx.send(batch).is_err() {
                    return; // The consumer dropped the stream.
                }
            }
        });
    match worker {
        Ok(handle) => TwoViewStream {
            rx: Some(rx),
            worker: Some(handle),
            next_step: first_step,
        },
        Err(e) => panic!("cannot spawn the unlabelled data loader thread: {e}"),
    }
}

/// The endless iterator [`two_view_batches`] returns; dropping it stops its thread.
#[derive(Debug)]
pub struct TwoViewStream {
    rx: Option<Receiver<TwoViewBatch>>,
    worker: Option<JoinHandle<()>>,
    next_step: usize,
}

impl TwoViewStream {
    /// The step whose batch the next call to `next` returns.
    pub fn next_step(&self) -> usize {
        self.next_step
    }
}

impl Iterator for TwoViewStream {
    type Item = TwoViewBatch;

    fn next(&mut self) -> Option<TwoViewBatch> {
        match self.rx.as_ref().and_then(|rx| rx.recv().ok()) {
            Some(batch) => {
                self.next_step += 1;
                Some(batch)
            }
            None => {
                // The worker ended without a batch: it panicked. Re-raise it here.
                self.rx = None;
                if let Some(handle) = self.worker.take() {
                    if let Err(panic) = handle.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }
}

impl Drop for TwoViewStream {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(handle) = self.worker.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::{halves_dataset, Halves};
    use std::sync::Arc;

    fn cfg() -> TwoViewConfig {
        TwoViewConfig {
            batch_size: 6,
            seed: 3,
            weak: AugmentConfig {
                random_crop_padding: 2,
                horizontal_flip: true,
                rand_augment: None,
            },
            strong: StrongAugment::default(),
            normalization: Normalization::identity(1),
        }
    }

    #[test]
    fn the_stream_is_a_function_of_the_step_and_covers_each_pass_once() {
        let ds = Arc::new(halves_dataset(40, 2, Halves::TopBottom));
        let indices: Vec<usize> = (5..40).collect();
        // 35 images in batches of 6: 5 per pass.
        let from_start: Vec<TwoViewBatch> = two_view_batches(&ds, &indices, &cfg(), 0)
            .take(12)
            .collect();
        let resumed: Vec<TwoViewBatch> =
            two_view_batches(&ds, &indices, &cfg(), 7).take(5).collect();
        assert_eq!(resumed, from_start[7..]);
        assert_eq!(from_start[9], two_view_batch(&ds, &indices, &cfg(), 9));
        let mut first_pass: Vec<usize> = from_start[..5]
            .iter()
            .flat_map(|b| b.indices.clone())
            .collect();
        first_pass.sort_unstable();
        first_pass.dedup();
        assert_eq!(first_pass.len(), 30);
        assert!(first_pass.iter().all(|i| indices.contains(i)));
        // Passes are shuffled differently, and the two views differ.
        assert_ne!(from_start[0].indices, from_start[5].indices);
        for batch in &from_start {
            assert_ne!(batch.weak, batch.strong);
            assert_eq!(batch.labels.len(), 6);
        }
    }
}
