//! Training-loop behaviour: learning, exact resume, atomic run files, real-data accuracy.

use burn::prelude::*;
use keen_data::augment::AugmentConfig;
use keen_data::dataset::ImageDataset;
use keen_data::loader::Normalization;
use keen_data::source::{DataLocator, DatasetSpec, SplitName};
use keen_models::weights;
use keen_train::checkpoint::RunDir;
use keen_train::schedule::Decay;
use keen_train::{evaluate, train, OptimizerKind, TrainConfig, TrainOptions};

/// A learnable toy task: class 0 is a bright left half, class 1 a bright right half, with noise.
fn halves_dataset(n: usize, seed: u64) -> ImageDataset {
    keen_data::toy::halves_dataset(n, seed, keen_data::toy::Halves::LeftRight)
}

fn toy_config() -> TrainConfig {
    TrainConfig {
        model: "cnn-small".into(),
        dataset: "halves".into(),
        epochs: 3,
        batch_size: 16,
        optimizer: OptimizerKind::AdamW,
        lr: 1e-3,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
        warmup_epochs: 0.5,
        decay: Decay::Cosine { min_factor: 0.0 },
        label_smoothing: 0.1,
        seed: 7,
        val_fraction: 0.2,
        augment: AugmentConfig {
            random_crop_padding: 1,
            horizontal_flip: false,
            rand_augment: None,
        },
        max_train_images: None,
        mix: Default::default(),
        drop_path: 0.0,
        steps_per_epoch: None,
        labels_per_class: None,
        fixmatch: None,
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

fn tensors_of(path: &std::path::Path) -> Vec<f32> {
    let loaded = weights::load(path, &Device::flex()).expect("load model");
    flat_weights(&loaded.model)
}

/// Every float tensor of a model, flattened in visiting order.
fn flat_weights(model: &keen_models::KeenModel) -> Vec<f32> {
    let mut values = Vec::new();
    burn::module::Module::visit(model, &mut Collect(&mut values));
    values
}

struct Collect<'a>(&'a mut Vec<f32>);

impl burn::module::ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0.extend(keen_train::tensors::to_f32_vec(param.val()));
    }
}

#[test]
fn training_learns_a_toy_task_and_writes_its_run_files() {
    let data = halves_dataset(320, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = train(&toy_config(), &data, &options(dir.path(), false, None)).expect("train");
    assert!(summary.finished);
    assert_eq!(summary.history.len(), 3);
    let last = summary.history.last().expect("history");
    assert!(
        last.val_accuracy.expect("val split") > 0.95,
        "val accuracy {:?}",
        last.val_accuracy
    );
    let run = RunDir::new(dir.path());
    for file in [
        run.config_path(),
        run.state_path(),
        run.log_path(),
        run.model_path(),
        run.curves_path(),
    ] {
        assert!(file.exists(), "{} missing", file.display());
    }
    let log = std::fs::read_to_string(run.log_path()).expect("log");
    assert_eq!(log.lines().count(), 3, "one JSON line per epoch");
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert!(record["images_per_sec"].as_f64().expect("img/s") > 0.0);
    }
    // Only the last two epoch checkpoints are kept.
    assert!(!run.checkpoint_model(&RunDir::checkpoint_stem(1)).exists());
    assert!(run.checkpoint_model(&RunDir::checkpoint_stem(3)).exists());
}

#[test]
fn resume_ends_where_an_uninterrupted_run_ends() {
    assert_resume_ends_where_an_uninterrupted_run_ends(&toy_config());
}

/// The average is state of its own: a resumed run must reload it, not restart it.
#[test]
fn resume_with_a_weight_average_ends_where_an_uninterrupted_run_ends() {
    assert_resume_ends_where_an_uninterrupted_run_ends(&TrainConfig {
        ema_decay: Some(0.9),
        ..toy_config()
    });
}

#[test]
fn with_a_weight_average_the_average_is_validated_and_saved() {
    let data = halves_dataset(160, 2);
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let plain = train(
        &toy_config(),
        &data,
        &options(plain_dir.path(), false, None),
    )
    .expect("plain");
    let averaged_dir = tempfile::tempdir().expect("tempdir");
    let config = TrainConfig {
        ema_decay: Some(0.9),
        ..toy_config()
    };
    let averaged = train(&config, &data, &options(averaged_dir.path(), false, None)).expect("ema");
    // The average does not change training: the trained weights' validation accuracy is the
    // plain run's, logged beside the average's.
    for (p, a) in plain.history.iter().zip(&averaged.history) {
        assert_eq!(a.extra.get("raw_val_accuracy").copied(), p.val_accuracy);
        assert_eq!(a.train_loss, p.train_loss);
    }
    // ...but the saved model is the average, not the last weights.
    let max_diff = saved_models_differ_by(plain_dir.path(), averaged_dir.path());
    assert!(max_diff > 1e-4, "the saved model is the last weights");
}

/// The largest difference between any two corresponding weights of the models two run folders
/// saved (which must have the same architecture).
fn saved_models_differ_by(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let a = tensors_of(&RunDir::new(a).model_path());
    let b = tensors_of(&RunDir::new(b).model_path());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn assert_resume_ends_where_an_uninterrupted_run_ends(config: &TrainConfig) {
    let data = halves_dataset(160, 2);
    let straight = tempfile::tempdir().expect("tempdir");
    train(config, &data, &options(straight.path(), false, None)).expect("straight run");

    let interrupted = tempfile::tempdir().expect("tempdir");
    let first =
        train(config, &data, &options(interrupted.path(), false, Some(1))).expect("first leg");
    assert!(!first.finished && first.completed_epochs == 1);
    let second =
        train(config, &data, &options(interrupted.path(), true, Some(1))).expect("second leg");
    assert_eq!(second.completed_epochs, 2);
    let last = train(config, &data, &options(interrupted.path(), true, None)).expect("last leg");
    assert!(last.finished);
    assert_eq!(
        last.history.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let max_diff = saved_models_differ_by(straight.path(), interrupted.path());
    assert!(max_diff <= 1e-6, "resumed weights differ by {max_diff}");
}

#[test]
fn resume_refuses_a_run_folder_with_another_config() {
    let data = halves_dataset(64, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    train(&toy_config(), &data, &options(dir.path(), false, Some(1))).expect("first leg");
    let other = TrainConfig {
        lr: 5e-3,
        ..toy_config()
    };
    let err = train(&other, &data, &options(dir.path(), true, None)).expect_err("must refuse");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn invalid_configs_are_rejected_before_training() {
    let data = halves_dataset(32, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        TrainConfig {
            epochs: 0,
            ..toy_config()
        },
        TrainConfig {
            batch_size: 0,
            ..toy_config()
        },
        TrainConfig {
            lr: -1.0,
            ..toy_config()
        },
        TrainConfig {
            val_fraction: 1.5,
            ..toy_config()
        },
        TrainConfig {
            ema_decay: Some(1.0),
            ..toy_config()
        },
        TrainConfig {
            model: "no-such-model".into(),
            ..toy_config()
        },
    ] {
        assert!(
            train(&bad, &data, &options(dir.path(), false, None)).is_err(),
            "{bad:?}"
        );
    }
}

/// A short real run: cnn-small, 10,000 Fashion-MNIST images, one epoch, must pass 80% on 2,000
/// test images. Needs the dataset (`apt-get install dataset-fashion-mnist`, done by
/// scripts/setup-data.sh), and fails with that hint when it is missing.
#[test]
fn short_fashion_mnist_run_reaches_80_percent() {
    let locator = DataLocator {
        data_dir: None,
        allow_download: false,
    };
    let spec = DatasetSpec::FashionMnist;
    let train_set = locator
        .load(&spec, SplitName::Train)
        .expect("Fashion-MNIST (run scripts/setup-data.sh)");
    let test_set = locator
        .load(&spec, SplitName::Test)
        .expect("Fashion-MNIST test split");
    let config = TrainConfig {
        epochs: 1,
        max_train_images: Some(10_000),
        batch_size: 64,
        warmup_epochs: 0.1,
        ..TrainConfig::preset("cnn-small")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = train(&config, &train_set, &options(dir.path(), false, None)).expect("train");
    let model_path = summary.model_path.expect("finished run has a model");
    let loaded = weights::load(&model_path, &Device::flex()).expect("load");
    let normalization = Normalization::fit(&train_set);
    let indices: Vec<usize> = (0..2_000).collect();
    let report = evaluate(
        &loaded.model,
        &test_set,
        &indices,
        &normalization,
        256,
        &Device::flex(),
    );
    assert!(
        report.accuracy >= 0.80,
        "test accuracy {:.4}",
        report.accuracy
    );
}

/// Data-parallel steps over two devices (here two handles of the CPU device) must compute the
/// same update as one step over the whole batch.
#[test]
fn data_parallel_step_matches_single_device_step() {
    use burn::optim::SgdConfig;
    use keen_data::loader::Batch;
    use keen_models::ModelSpec;
    use keen_train::step::{train_step, StepDevices};
    use keen_train::trainer::seeded_model;

    let data = halves_dataset(10, 5);
    let batch = || Batch {
        images: data.images.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: data.labels.clone(),
        indices: (0..10).collect(),
        shape: [10, 1, 12, 12],
    };
    let device = Device::flex().autodiff();
    let spec = ModelSpec::new("cnn-small", [1, 12, 12], 2);
    let run = |devices: usize| {
        let model = seeded_model(&spec, 3, &device).expect("model");
        let mut optimizer = SgdConfig::new().init();
        let step_devices = StepDevices::new(vec![device.clone(); devices], 0.0);
        let (model, outcome) = train_step(
            model,
            &mut optimizer,
            batch(),
            &step_devices,
            0.5,
            &keen_train::PlainTraining,
        );
        let mut values = Vec::new();
        burn::module::Module::visit(&model, &mut Collect(&mut values));
        (values, outcome)
    };
    let (single, single_outcome) = run(1);
    let (parallel, parallel_outcome) = run(2);
    assert!((single_outcome.loss - parallel_outcome.loss).abs() < 1e-5);
    assert_eq!(single_outcome.correct, parallel_outcome.correct);
    let max_diff = single
        .iter()
        .zip(&parallel)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff < 1e-5,
        "data-parallel update differs by {max_diff}"
    );
    let moved = single
        .iter()
        .zip(&tensors_before(&spec, &device))
        .any(|(a, b)| (a - b).abs() > 1e-6);
    assert!(moved, "the step must change the weights");
}

fn tensors_before(spec: &keen_models::ModelSpec, device: &Device) -> Vec<f32> {
    let model = keen_train::trainer::seeded_model(spec, 3, device).expect("model");
    flat_weights(&model)
}

/// Records every weight average the trainer hands to its hooks, flattened.
#[derive(Default)]
struct AverageWatcher {
    seen: Vec<Vec<f32>>,
}

impl keen_train::TrainHooks for AverageWatcher {
    fn weight_average_updated(&mut self, average: &keen_models::KeenModel) {
        self.seen.push(flat_weights(average));
    }
}

#[test]
fn hooks_get_the_weight_average_at_start_after_every_step_and_on_resume() {
    let data = halves_dataset(160, 2);
    let config = TrainConfig {
        epochs: 2,
        steps_per_epoch: Some(3),
        ema_decay: Some(0.9),
        ..toy_config()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first_leg = AverageWatcher::default();
    let run = |hooks: &mut AverageWatcher, resume, stop| {
        keen_train::train_with(
            &config,
            &data,
            &options(dir.path(), resume, stop),
            None,
            hooks,
        )
        .expect("train")
    };
    run(&mut first_leg, false, Some(1));
    // Once when the run starts, then after each of the epoch's 3 steps.
    assert_eq!(first_leg.seen.len(), 4);
    assert_ne!(
        first_leg.seen[0], first_leg.seen[3],
        "the average never moved"
    );
    let mut second_leg = AverageWatcher::default();
    run(&mut second_leg, true, None);
    assert_eq!(second_leg.seen.len(), 4);
    // The resumed run starts from the average the first leg saved, not a fresh one.
    assert_eq!(second_leg.seen[0], first_leg.seen[3]);
    // Without a weight average the hooks hear nothing.
    let plain = tempfile::tempdir().expect("tempdir");
    let mut none = AverageWatcher::default();
    let config = TrainConfig {
        epochs: 1,
        ..toy_config()
    };
    keen_train::train_with(
        &config,
        &data,
        &options(plain.path(), false, None),
        None,
        &mut none,
    )
    .expect("train");
    assert!(none.seen.is_empty());
}
