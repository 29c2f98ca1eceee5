//! keen-data: everything between files on disk and `f32` batches.
//!
//! It owns
//! - dataset formats: IDX ([`idx`], MNIST and Fashion-MNIST, raw or gzipped), CIFAR
//!   binary ([`cifar`]) and image folders ([`folder`]);
//! - where data lives: named datasets, their files, checksums and the search order
//!   `--data DIR` → `KEEN_DATA` → `/usr/share/datasets` → cache → download
//!   ([`source`]);
//! - the in-memory dataset ([`dataset`]), validation splits ([`split`]), labelled
//!   subsets for semi-supervised learning ([`subset`]), augmentation including
//!   RandAugment and FixMatch's strong view ([`augment`]) and deterministic, prefetching
//!   batching with normalization, including FixMatch's two-view unlabelled stream
//!   ([`loader`]);
//! - synthetic sets made in memory: a tiny learnable one ([`toy`]) and pure-noise images for
//!   OOD benchmarks ([`noise_images`]).
//!
//! It must not touch burn, models or training: it deals in plain `u8` and `f32`
//! buffers, so it builds fast, tests without an engine, and serves any backend.
//! Every failure is a [`DataError`] that names the file (or dataset) at fault.

#![warn(missing_docs)]

pub mod augment;
pub mod cifar;
pub mod corruptions;
pub mod dataset;
pub mod error;
pub mod folder;
mod gzip;
pub mod idx;
pub mod loader;
pub mod noise_images;
pub mod sampling;
pub mod source;
pub mod split;
pub mod subset;
pub mod toy;

pub use augment::{AugmentConfig, RandAugment};
pub use corruptions::{corrupt_dataset, corrupt_image, CorruptionError, Severity, CORRUPTIONS};
pub use dataset::ImageDataset;
pub use error::DataError;
pub use loader::{
    epoch_batches, epoch_batches_from, num_batches, Batch, EpochLoader, LoaderConfig, Normalization,
};
pub use source::{DataLocator, DatasetSpec, DatasetStatus, SplitName};
pub use split::train_val_split;
pub use subset::{labelled_subset, LabelledSplit};
