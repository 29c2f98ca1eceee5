//! Splits, augmentation and batching: shapes, coverage and, above all, determinism.

use std::sync::Arc;

use keen_data::augment::{AugmentConfig, RandAugment};
use keen_data::loader::build_batch;
use keen_data::{
    epoch_batches, epoch_batches_from, num_batches, train_val_split, Batch, ImageDataset,
    LoaderConfig, Normalization,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn dataset(n: usize, shape: [usize; 3]) -> ImageDataset {
    let len: usize = shape.iter().product();
    ImageDataset {
        name: "synthetic".into(),
        images: (0..n * len).map(|v| ((v * 13) % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 4) as u32).collect(),
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        class_names: (0..4).map(|c| format!("c{c}")).collect(),
    }
}

fn strong_augment() -> AugmentConfig {
    AugmentConfig {
        random_crop_padding: 2,
        horizontal_flip: true,
        rand_augment: Some(RandAugment { n: 2, m: 9 }),
    }
}

fn train_config(ds: &ImageDataset, batch_size: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        shuffle: true,
        drop_last: false,
        seed: 42,
        augment: strong_augment(),
        normalization: Normalization::fit(ds),
    }
}

#[test]
fn split_is_deterministic_disjoint_and_complete() {
    let (train, val) = train_val_split(1000, 0.2, 5);
    assert_eq!((train.len(), val.len()), (800, 200));
    assert_eq!(train_val_split(1000, 0.2, 5), (train.clone(), val.clone()));
    assert_ne!(
        train_val_split(1000, 0.2, 6).1,
        val,
        "another seed, another split"
    );
    assert!(train.windows(2).all(|w| w[0] < w[1]) && val.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>(), "disjoint and covering");
    let (train, val) = train_val_split(10, 0.0, 5);
    assert_eq!((train, val), ((0..10).collect(), vec![]));
}

#[test]
fn augmentation_keeps_shape_for_gray_and_rgb() {
    for shape in [[1, 28, 28], [3, 32, 32], [3, 7, 9]] {
        let ds = dataset(1, shape);
        for seed in 0..10 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = strong_augment().apply(ds.image(0), shape, &mut rng);
            assert_eq!(out.len(), ds.image_len(), "shape {shape:?}");
        }
    }
}

#[test]
fn identity_config_returns_the_image_unchanged() {
    let ds = dataset(1, [3, 8, 8]);
    let cfg = AugmentConfig::none();
    assert!(cfg.is_identity());
    let out = cfg.apply(ds.image(0), [3, 8, 8], &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(out, ds.image(0));
}

#[test]
fn rand_augment_is_deterministic_by_seed() {
    let shape = [3, 16, 16];
    let ds = dataset(1, shape);
    let ra = RandAugment { n: 3, m: 10 };
    let run = |seed| ra.apply(ds.image(0), shape, &mut ChaCha8Rng::seed_from_u64(seed));
    assert_eq!(run(1), run(1));
    let distinct: std::collections::HashSet<Vec<u8>> = (0..8).map(run).collect();
    assert!(
        distinct.len() > 4,
        "seeds should give different augmentations"
    );
}

#[test]
fn augment_config_round_trips_through_json_with_defaults() {
    let cfg = strong_augment();
    let json = serde_json::to_string(&cfg).expect("serialize");
    let back: AugmentConfig = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, cfg);
    // Missing fields mean "off", so older configs keep loading.
    let partial: AugmentConfig =
        serde_json::from_str(r#"{"horizontal_flip":true}"#).expect("partial");
    assert_eq!(
        partial,
        AugmentConfig {
            horizontal_flip: true,
            ..AugmentConfig::none()
        }
    );
}

fn collect(ds: &Arc<ImageDataset>, idx: &[usize], cfg: &LoaderConfig, epoch: usize) -> Vec<Batch> {
    epoch_batches(ds, idx, cfg, epoch).collect()
}

#[test]
fn loader_is_a_pure_function_of_seed_and_epoch() {
    let ds = Arc::new(dataset(103, [1, 10, 10]));
    let (train, _) = train_val_split(ds.len(), 0.1, 0);
    let cfg = train_config(&ds, 8);
    let a = collect(&ds, &train, &cfg, 3);
    assert_eq!(a, collect(&ds, &train, &cfg, 3), "same seed and epoch");
    assert_ne!(a, collect(&ds, &train, &cfg, 4), "next epoch reshuffles");
    let other_seed = LoaderConfig {
        seed: 43,
        ..cfg.clone()
    };
    assert_ne!(a, collect(&ds, &train, &other_seed, 3));
    // Passing the dataset by reference (copied into the loader) changes nothing.
    let by_ref: Vec<Batch> = epoch_batches(&*ds, &train, &cfg, 3).collect();
    assert_eq!(a, by_ref);
}

#[test]
fn resuming_at_batch_k_sees_the_uninterrupted_batches() {
    let ds = Arc::new(dataset(50, [3, 6, 6]));
    let idx: Vec<usize> = (0..50).collect();
    let cfg = train_config(&ds, 7);
    let full = collect(&ds, &idx, &cfg, 2);
    assert_eq!(full.len(), num_batches(50, &cfg));
    for k in [0, 1, 4, full.len() - 1, full.len(), full.len() + 3] {
        let resumed: Vec<Batch> = epoch_batches_from(&ds, &idx, &cfg, 2, k).collect();
        assert_eq!(resumed, full[k.min(full.len())..].to_vec(), "resume at {k}");
    }
    // Iterator::skip agrees too (it just builds and drops the skipped batches).
    let skipped: Vec<Batch> = epoch_batches(&ds, &idx, &cfg, 2).skip(3).collect();
    assert_eq!(skipped, full[3..].to_vec());
    // And any batch can be built on its own.
    let order = keen_data::loader::epoch_order(&idx, &cfg, 2);
    assert_eq!(build_batch(&ds, &order, &cfg, 2, 5), full[5]);
}

#[test]
fn an_epoch_visits_every_index_once_with_correct_labels_and_shapes() {
    let ds = Arc::new(dataset(23, [1, 4, 4]));
    let idx: Vec<usize> = (3..23).collect();
    let cfg = LoaderConfig::eval(6, Normalization::identity(1));
    let batches = collect(&ds, &idx, &cfg, 0);
    assert_eq!(
        batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(),
        vec![6, 6, 6, 2]
    );
    let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen, idx, "eval keeps order");
    for b in &batches {
        assert_eq!(b.images.len(), b.shape.iter().product::<usize>());
        assert_eq!(&b.shape[1..], &[1, 4, 4]);
        for (j, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[j], ds.labels[i]);
            // No augmentation, identity normalization: x / 255 (to rounding).
            let got = &b.images[j * 16..(j + 1) * 16];
            for (g, &v) in got.iter().zip(ds.image(i)) {
                assert!((g - v as f32 / 255.0).abs() < 1e-6, "{g} vs {v}/255");
            }
        }
    }
    let shuffled = LoaderConfig {
        shuffle: true,
        drop_last: true,
        ..cfg
    };
    let batches = collect(&ds, &idx, &shuffled, 0);
    assert_eq!(batches.len(), 3, "drop_last drops the short batch");
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 18, "no index repeats within an epoch");
}

#[test]
fn dropping_a_loader_mid_epoch_stops_its_thread() {
    let ds = Arc::new(dataset(200, [1, 8, 8]));
    let idx: Vec<usize> = (0..200).collect();
    let cfg = train_config(&ds, 4);
    let mut loader = epoch_batches(&ds, &idx, &cfg, 0);
    assert_eq!(loader.len(), 50);
    let first = loader.next().expect("first batch");
    assert_eq!(first.shape, [4, 1, 8, 8]);
    assert_eq!(loader.len(), 49);
    drop(loader); // Must return promptly: the worker is blocked on a full channel.
    assert_eq!(Arc::strong_count(&ds), 1, "worker released the dataset");
}
