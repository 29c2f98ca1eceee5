//! FixMatch end to end on the toy task: it trains, logs its figures, and resumes exactly.

use burn::prelude::*;
use keen_data::augment::AugmentConfig;
use keen_data::toy::{halves_dataset, Halves};
use keen_models::weights;
use keen_train::checkpoint::RunDir;
use keen_train::fixmatch::{FixMatchConfig, PseudoLabeller};
use keen_train::schedule::Decay;
use keen_train::{train, OptimizerKind, TrainConfig, TrainOptions};

fn fixmatch_config() -> TrainConfig {
    TrainConfig {
        model: "cnn-small".into(),
        dataset: "halves".into(),
        epochs: 3,
        batch_size: 8,
        optimizer: OptimizerKind::AdamW,
        lr: 3e-3,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
        warmup_epochs: 0.0,
        decay: Decay::Cosine { min_factor: 0.0 },
        label_smoothing: 0.0,
        seed: 5,
        val_fraction: 0.2,
        // Top/bottom halves survive the weak view's flips.
        augment: AugmentConfig {
            random_crop_padding: 1,
            horizontal_flip: true,
            rand_augment: None,
        },
        max_train_images: None,
        mix: Default::default(),
        drop_path: 0.0,
        steps_per_epoch: Some(6),
        labels_per_class: Some(4),
        fixmatch: Some(FixMatchConfig {
            mu: 3,
            threshold: 0.9,
            ..FixMatchConfig::default()
        }),
        ema_decay: None,
    }
}

fn options(dir: &std::path::Path, resume: bool, stop_after_epochs: Option<usize>) -> TrainOptions {
    TrainOptions {
        out_dir: dir.to_path_buf(),
        resume,
        device: Device::flex(),
        extra_devices: vec![],
        progress: false,
        stop_after_epochs,
    }
}

fn weights_of(dir: &std::path::Path) -> Vec<f32> {
    let loaded = weights::load(&RunDir::new(dir).model_path(), &Device::flex()).expect("model");
    let mut values = Vec::new();
    burn::module::Module::visit(&loaded.model, &mut Collect(&mut values));
    values
}

/// The largest difference between two saved runs' weights.
fn max_weight_difference(a: &std::path::Path, b: &std::path::Path) -> f32 {
    weights_of(a)
        .iter()
        .zip(&weights_of(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

struct Collect<'a>(&'a mut Vec<f32>);

impl burn::module::ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0.extend(keen_train::tensors::to_f32_vec(param.val()));
    }
}

#[test]
fn fixmatch_trains_on_eight_labels_and_logs_mask_rate_and_pseudo_label_accuracy() {
    let data = halves_dataset(200, 3, Halves::TopBottom);
    let dir = tempfile::tempdir().expect("tempdir");
    let summary =
        train(&fixmatch_config(), &data, &options(dir.path(), false, None)).expect("fixmatch run");
    assert!(summary.finished);
    let last = summary.history.last().expect("history");
    assert!(
        last.val_accuracy.expect("validation") >= 0.9,
        "{:?}",
        summary.history
    );
    // Every epoch logs the unlabelled figures; by the end the easy task passes τ.
    for record in &summary.history {
        let mask_rate = record.extra["mask_rate"];
        assert!((0.0..=1.0).contains(&mask_rate), "{record:?}");
        assert!(record.extra.contains_key("pseudo_label_accuracy_all"));
    }
    assert!(last.extra["mask_rate"] > 0.0, "{last:?}");
    assert!(last.extra["pseudo_label_accuracy"] >= 0.9, "{last:?}");
    // Six steps of 8 labelled images per epoch, the 8 labelled images cycled.
    assert!(last.images_per_sec > 0.0);
    let log = std::fs::read_to_string(RunDir::new(dir.path()).log_path()).expect("log");
    let line: serde_json::Value =
        serde_json::from_str(log.lines().last().expect("a line")).expect("JSON");
    assert!(line["mask_rate"].as_f64().is_some(), "{line}");
}

fn ema_pseudo_labels() -> TrainConfig {
    let base = fixmatch_config();
    TrainConfig {
        // τ 0: every weak view is pseudo-labelled, so the labeller's argmax alone sets the
        // targets.
        fixmatch: base.fixmatch.map(|f| FixMatchConfig {
            pseudo_labeller: PseudoLabeller::Ema,
            threshold: 0.0,
            ..f
        }),
        ema_decay: Some(0.9),
        ..base
    }
}

#[test]
fn pseudo_labels_from_the_weight_average_train_and_change_the_run() {
    let data = halves_dataset(200, 3, Halves::TopBottom);
    let ema = tempfile::tempdir().expect("tempdir");
    let summary = train(
        &ema_pseudo_labels(),
        &data,
        &options(ema.path(), false, None),
    )
    .expect("ema run");
    let last = summary.history.last().expect("history");
    assert!(last.val_accuracy.expect("validation") >= 0.9, "{last:?}");
    assert!(last.extra["pseudo_label_accuracy"] >= 0.9, "{last:?}");
    // The same run with the model's own pseudo-labels (and the same average) ends elsewhere:
    // the average's targets reached the loss.
    let model = tempfile::tempdir().expect("tempdir");
    let ema_config = ema_pseudo_labels();
    let own = TrainConfig {
        fixmatch: ema_config.fixmatch.map(|f| FixMatchConfig {
            pseudo_labeller: PseudoLabeller::Model,
            ..f
        }),
        ..ema_config
    };
    train(&own, &data, &options(model.path(), false, None)).expect("model run");
    let max_diff = max_weight_difference(ema.path(), model.path());
    assert!(
        max_diff > 1e-4,
        "pseudo-labeller changed nothing: {max_diff}"
    );
}

#[test]
fn a_resumed_fixmatch_run_ends_where_an_uninterrupted_one_ends() {
    for config in [fixmatch_config(), ema_pseudo_labels()] {
        resumed_run_ends_where_an_uninterrupted_one_ends(config);
    }
}

fn resumed_run_ends_where_an_uninterrupted_one_ends(config: TrainConfig) {
    let data = halves_dataset(120, 4, Halves::TopBottom);
    let config = TrainConfig {
        epochs: 2,
        steps_per_epoch: Some(3),
        ..config
    };
    let straight = tempfile::tempdir().expect("tempdir");
    train(&config, &data, &options(straight.path(), false, None)).expect("straight run");
    let interrupted = tempfile::tempdir().expect("tempdir");
    train(&config, &data, &options(interrupted.path(), false, Some(1))).expect("first leg");
    let last = train(&config, &data, &options(interrupted.path(), true, None)).expect("resume");
    assert!(last.finished);
    let max_diff = max_weight_difference(straight.path(), interrupted.path());
    assert!(
        max_diff <= 1e-6,
        "resumed weights differ by {max_diff} ({:?})",
        config.fixmatch
    );
}

#[test]
fn fixmatch_settings_are_checked_before_training() {
    let data = halves_dataset(60, 1, Halves::TopBottom);
    let dir = tempfile::tempdir().expect("tempdir");
    let without_subset = TrainConfig {
        labels_per_class: None,
        ..fixmatch_config()
    };
    let err =
        train(&without_subset, &data, &options(dir.path(), false, None)).expect_err("no subset");
    assert!(err.to_string().contains("--labels-per-class"), "{err}");
    // 48 training images, 8 labelled: 40 unlabelled, fewer than μ·B = 6·8.
    let too_few = TrainConfig {
        fixmatch: Some(FixMatchConfig {
            mu: 6,
            ..FixMatchConfig::default()
        }),
        ..fixmatch_config()
    };
    let err = train(&too_few, &data, &options(dir.path(), false, None)).expect_err("too few");
    assert!(err.to_string().contains("unlabelled images"), "{err}");
    let bad_threshold = TrainConfig {
        fixmatch: Some(FixMatchConfig {
            threshold: 1.5,
            ..FixMatchConfig::default()
        }),
        ..fixmatch_config()
    };
    assert!(train(&bad_threshold, &data, &options(dir.path(), false, None)).is_err());
    let no_average = TrainConfig {
        ema_decay: None,
        ..ema_pseudo_labels()
    };
    let err = train(&no_average, &data, &options(dir.path(), false, None)).expect_err("no EMA");
    assert!(err.to_string().contains("--ema-decay"), "{err}");
}
