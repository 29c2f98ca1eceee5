//! Small-data regularisers in the training loop: mixup/CutMix and stochastic depth.

use std::cell::Cell;

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use keen_data::augment::AugmentConfig;
use keen_models::{ImageClassifier, KeenModel};
use keen_train::mixup::MixConfig;
use keen_train::schedule::Decay;
use keen_train::{
    train, train_with, LossInputs, OptimizerKind, ShardInputs, TrainConfig, TrainHooks,
    TrainOptions,
};

fn vit_config() -> TrainConfig {
    TrainConfig {
        model: "vit-tiny".into(),
        dataset: "halves".into(),
        epochs: 2,
        batch_size: 16,
        optimizer: OptimizerKind::AdamW,
        lr: 1e-3,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.05,
        warmup_epochs: 0.5,
        decay: Decay::Cosine { min_factor: 0.0 },
        label_smoothing: 0.1,
        seed: 5,
        val_fraction: 0.25,
        augment: AugmentConfig::none(),
        max_train_images: None,
        mix: MixConfig {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            ..MixConfig::default()
        },
        drop_path: 0.1,
        steps_per_epoch: None,
        labels_per_class: None,
        fixmatch: None,
        ema_decay: None,
    }
}

fn options(dir: &std::path::Path) -> TrainOptions {
    TrainOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        device: Device::flex(),
        extra_devices: vec![],
        progress: false,
        stop_after_epochs: None,
    }
}

#[test]
fn a_vit_trains_with_mixup_cutmix_and_drop_path() {
    let data = keen_data::toy::halves_dataset(96, 2, keen_data::toy::Halves::LeftRight);
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = train(&vit_config(), &data, &options(dir.path())).expect("train");
    assert!(summary.finished);
    for record in &summary.history {
        assert!(record.train_loss.is_finite() && record.val_loss.is_some_and(f64::is_finite));
    }
    // The run's config keeps the settings, so --resume refuses other ones.
    let stored: TrainConfig =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).expect("config"))
            .expect("parse");
    assert_eq!(stored, vit_config());
}

#[test]
fn drop_path_on_a_model_without_blocks_is_a_clear_error() {
    let data = keen_data::toy::halves_dataset(32, 3, keen_data::toy::Halves::LeftRight);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TrainConfig {
        model: "cnn-small".into(),
        mix: MixConfig::default(),
        ..vit_config()
    };
    let err = train(&config, &data, &options(dir.path())).expect_err("must refuse");
    assert!(err.to_string().contains("drop-path"), "{err}");
    let bad_mix = TrainConfig {
        mix: MixConfig {
            prob: 1.5,
            ..vit_config().mix
        },
        drop_path: 0.0,
        ..vit_config()
    };
    let err = train(&bad_mix, &data, &options(dir.path())).expect_err("must refuse");
    assert!(err.to_string().contains("probability"), "{err}");
}

#[test]
fn run_configs_written_before_mixup_still_load() {
    let mut old = serde_json::to_value(vit_config()).expect("json");
    let fields = old.as_object_mut().expect("object");
    fields.remove("mix");
    fields.remove("drop_path");
    let config: TrainConfig = serde_json::from_value(old).expect("old config loads");
    assert_eq!(config.mix, MixConfig::default());
    assert!(!config.mix.is_active());
    assert_eq!(config.drop_path, 0.0);
}

/// Counts which of its methods the trainer reaches.
struct CountingHooks {
    mixes: bool,
    forward_calls: Cell<usize>,
    loss_calls: Cell<usize>,
}

impl TrainHooks for CountingHooks {
    fn loss(&self, inputs: LossInputs<'_>, cross_entropy: &CrossEntropyLoss) -> Tensor<1> {
        self.loss_calls.set(self.loss_calls.get() + 1);
        cross_entropy.forward(inputs.logits, inputs.labels)
    }

    fn forward_loss(
        &self,
        model: &KeenModel,
        shard: ShardInputs<'_>,
        cross_entropy: &CrossEntropyLoss,
    ) -> (Tensor<2>, Tensor<1>) {
        self.forward_calls.set(self.forward_calls.get() + 1);
        let logits = model.forward(shard.images.clone());
        let loss = cross_entropy.forward(logits.clone(), shard.labels);
        (logits, loss)
    }

    fn mixes_batches(&self) -> bool {
        self.mixes
    }
}

#[test]
fn hooks_that_mix_for_themselves_are_not_wrapped_in_the_generic_mixing() {
    let data = keen_data::toy::halves_dataset(32, 3, keen_data::toy::Halves::LeftRight);
    let config = TrainConfig {
        epochs: 1,
        ..vit_config()
    };
    for mixes in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hooks = CountingHooks {
            mixes,
            forward_calls: Cell::new(0),
            loss_calls: Cell::new(0),
        };
        train_with(&config, &data, &options(dir.path()), None, &mut hooks).expect("train");
        let (forward, loss) = (hooks.forward_calls.get(), hooks.loss_calls.get());
        if mixes {
            // The hooks see every batch through forward_loss and mix it themselves.
            assert!(forward > 0 && loss == 0, "forward {forward}, loss {loss}");
        } else {
            // Every batch is mixed (prob 1): the wrapper calls the hooks' loss, twice a batch.
            assert!(
                forward == 0 && loss > 0 && loss % 2 == 0,
                "forward {forward}, loss {loss}"
            );
        }
    }
}
