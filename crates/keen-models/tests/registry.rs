//! Registry-driven tests: every registered model gets the same checks, so a new model is tested
//! with no new test code.

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use keen_models::weights;
use keen_models::{
    available_models, build_model, find_model, ImageClassifier, KeenModel, ModelError, ModelSpec,
};

/// Shapes every model must accept: Fashion-MNIST-like grayscale and CIFAR-like RGB.
const INPUTS: [[usize; 3]; 2] = [[1, 28, 28], [3, 32, 32]];

#[test]
fn registry_has_the_models_the_foundation_promises() {
    for name in [
        "cnn-small",
        "resnet8",
        "resnet20",
        "mobilenet-v2-tiny",
        "vit-tiny",
    ] {
        assert!(find_model(name).is_ok(), "{name} missing from the registry");
    }
    let err = find_model("resnet9000")
        .err()
        .expect("unknown name must fail");
    assert!(matches!(err, ModelError::UnknownModel { .. }));
    assert!(
        err.to_string().contains("resnet20"),
        "error should list known models: {err}"
    );
}

#[test]
fn every_model_runs_forward_and_backward_on_every_input() {
    let device = Device::flex().autodiff();
    for entry in available_models() {
        for input in INPUTS {
            let spec = ModelSpec::new(entry.name, input, 10);
            let model = build_model(&spec, &device).expect("build");
            let images = Tensor::<4>::random(
                [2, input[0], input[1], input[2]],
                Distribution::Default,
                &device,
            );
            let logits = model.forward(images);
            assert_eq!(logits.dims(), [2, 10], "{} on {input:?}", entry.name);
            let loss = logits.powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            // Every parameter tensor must receive a gradient: none is disconnected.
            let mut params = 0usize;
            model.visit(&mut CountParams(&mut params));
            assert_eq!(
                grads.len(),
                params,
                "{}: a parameter got no gradient",
                entry.name
            );
            assert!(model.num_params() > 0);
            assert!(model.macs(input) > 0);
        }
    }
}

struct CountParams<'a>(&'a mut usize);

impl burn::module::ModuleVisitor for CountParams<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        // Batch-norm running statistics are module state, not trainable parameters.
        if param.val().is_require_grad() {
            *self.0 += 1;
        }
    }
}

#[test]
fn every_model_survives_save_and_load() {
    let device = Device::flex();
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in available_models() {
        let spec = ModelSpec::new(entry.name, [1, 28, 28], 10);
        device.seed(1);
        let model = build_model(&spec, &device).expect("build");
        let mut metadata = BTreeMap::new();
        metadata.insert("keen.note".to_string(), "hello".to_string());
        let path = dir.path().join(format!("{}.safetensors", entry.name));
        weights::save(&model, &spec, &metadata, &path).expect("save");

        let loaded = weights::load(&path, &device).expect("load");
        assert_eq!(loaded.spec, spec);
        assert_eq!(
            loaded.metadata.get("keen.note").map(String::as_str),
            Some("hello")
        );
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let expected = model.valid().forward(images.clone()).into_data();
        let actual = loaded.model.valid().forward(images).into_data();
        actual.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
    }
}

#[test]
fn reset_classifier_changes_the_class_count() {
    let device = Device::flex();
    for entry in available_models() {
        let spec = ModelSpec::new(entry.name, [1, 28, 28], 10);
        let model = build_model(&spec, &device)
            .expect("build")
            .reset_classifier(3, &device);
        assert_eq!(model.num_classes(), 3);
        let features = model.forward_features(Tensor::zeros([2, 1, 28, 28], &device));
        assert_eq!(features.dims(), [2, model.num_features()]);
        assert_eq!(model.forward_head(features).dims(), [2, 3]);
    }
}

#[test]
fn reference_models_have_the_documented_sizes() {
    let device = Device::flex();
    let count = |name: &str| {
        build_model(&ModelSpec::new(name, [1, 28, 28], 10), &device)
            .expect("build")
            .num_params()
    };
    // Conv(1,32,3) + Conv(32,64,3) + Linear(3136,128) + Linear(128,10), with biases.
    assert_eq!(count("cnn-small"), 320 + 18_496 + 401_536 + 1_290);
    // resnet20 is ~0.27M parameters (He et al. report 0.27M for CIFAR).
    let resnet20 = count("resnet20");
    assert!(
        (265_000..285_000).contains(&resnet20),
        "resnet20 has {resnet20}"
    );
    assert!(count("resnet8") < resnet20);
}

#[test]
fn truncated_and_foreign_weight_files_are_clear_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ModelSpec::new("cnn-small", [1, 28, 28], 10);
    let model = build_model(&spec, &device).expect("build");
    let path = dir.path().join("model.safetensors");
    weights::save(&model, &spec, &BTreeMap::new(), &path).expect("save");
    let bytes = std::fs::read(&path).expect("read");

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = weights::load(&truncated, &device)
        .err()
        .expect("truncated must fail")
        .to_string();
    assert!(
        err.contains("truncated.safetensors") && err.contains("truncated"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a model at all").expect("write");
    let err = weights::load(&garbage, &device)
        .err()
        .expect("garbage must fail")
        .to_string();
    assert!(err.contains("garbage.safetensors"), "{err}");

    let missing = dir.path().join("missing.safetensors");
    let err = weights::load(&missing, &device)
        .err()
        .expect("missing must fail")
        .to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
}

#[test]
fn every_cnn_lowers_to_an_equivalent_graph_that_survives_save_and_load() {
    let device = Device::flex();
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in available_models() {
        let spec = ModelSpec::new(entry.name, [1, 28, 28], 10);
        device.seed(3);
        let model = build_model(&spec, &device).expect("build");
        let graph = match model.to_graph(spec.input_shape()) {
            Ok(graph) => graph,
            Err(err) => {
                // Models with attention or gates may lack a graph, with a clear error.
                assert!(
                    matches!(err, ModelError::BadGraph { .. })
                        && err.to_string().contains("cannot be lowered"),
                    "{}: {err}",
                    entry.name
                );
                assert!(
                    !["cnn-small", "resnet8", "resnet20", "mobilenet-v2-tiny"]
                        .contains(&entry.name),
                    "{} must lower to a graph",
                    entry.name
                );
                continue;
            }
        };
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Default, &device);
        let expected = model.valid().forward(images.clone()).into_data();
        let graph = KeenModel::Graph(graph);
        let actual = graph.valid().forward(images.clone()).into_data();
        actual.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        assert_eq!(
            graph.macs([1, 28, 28]),
            model.macs([1, 28, 28]),
            "{}",
            entry.name
        );
        assert_eq!(graph.num_features(), model.num_features(), "{}", entry.name);
        assert_eq!(
            keen_models::trainable_params(&graph),
            keen_models::trainable_params(&model)
        );

        let path = dir.path().join(format!("{}-graph.safetensors", entry.name));
        weights::save(&graph, &spec, &BTreeMap::new(), &path).expect("save");
        let loaded = weights::load(&path, &device).expect("load");
        assert!(matches!(loaded.model, KeenModel::Graph(_)));
        let reloaded = loaded.model.valid().forward(images).into_data();
        reloaded.assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
    }
}

#[test]
fn every_cnn_gives_grad_cam_inputs_at_its_last_spatial_map() {
    let device = Device::flex();
    for entry in available_models() {
        let spec = ModelSpec::new(entry.name, [1, 28, 28], 10);
        device.seed(5);
        let model = build_model(&spec, &device).expect("build");
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let Some(spatial) = model.spatial_features() else {
            if let KeenModel::Graph(_) = model {
                // A model built as a graph (cnn-wong) explains itself through the graph path.
                let explained = model
                    .class_gradient(images, None, &[0, 1])
                    .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
                assert!(!explained.layer.is_empty(), "{}", entry.name);
                continue;
            }
            assert!(
                matches!(model, KeenModel::Vit(_) | KeenModel::Deit(_)),
                "{}: every CNN must expose its last spatial feature map",
                entry.name
            );
            assert!(model.class_gradient(images, None, &[0, 1]).is_err());
            continue;
        };
        // The split computes what forward does.
        let valid = model.valid();
        let spatial_valid = valid.spatial_features().expect("spatial");
        let map = spatial_valid.forward_feature_map(images.clone());
        spatial_valid
            .forward_head(spatial_valid.features_of_map(map.clone()))
            .into_data()
            .assert_approx_eq::<f32>(
                &valid.forward(images.clone()).into_data(),
                Tolerance::absolute(1e-5),
            );
        let explained = model
            .class_gradient(images.clone(), None, &[3, 7])
            .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        assert_eq!(
            explained.layer,
            spatial.feature_map_name(),
            "{}",
            entry.name
        );
        let dims = explained.gradient.activations.dims();
        assert_eq!(dims, map.dims(), "{}", entry.name);
        assert_eq!(explained.gradient.gradients.dims(), dims, "{}", entry.name);
        assert!(
            dims[2] > 1 && dims[3] > 1,
            "{}: {dims:?} is not spatial",
            entry.name
        );
        let gradients = explained
            .gradient
            .gradients
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert!(gradients.iter().all(|g| g.is_finite()), "{}", entry.name);
        assert!(
            gradients.iter().any(|&g| g != 0.0),
            "{}: the class score must depend on the map",
            entry.name
        );
        // A class the model does not have is an error, not a panic.
        assert!(model.class_gradient(images, None, &[0, 10]).is_err());
    }
}

#[test]
fn grad_cam_through_the_split_agrees_with_the_graph_form() {
    let device = Device::flex();
    for name in ["resnet20", "cnn-small", "mobilenet-v2-tiny"] {
        let spec = ModelSpec::new(name, [1, 28, 28], 10);
        device.seed(11);
        let model = build_model(&spec, &device).expect("build");
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let classes = [0, 4, 9];
        let split = model
            .class_gradient(images.clone(), None, &classes)
            .expect("split");
        // The same layer by name goes through the graph form.
        let graph = KeenModel::Graph(model.to_graph(spec.input_shape()).expect("graph"));
        let through_graph = graph
            .class_gradient(images, Some(&split.layer), &classes)
            .expect("graph");
        assert_eq!(split.layer, through_graph.layer, "{name}");
        for (a, b) in [
            (
                split.gradient.activations,
                through_graph.gradient.activations,
            ),
            (split.gradient.gradients, through_graph.gradient.gradients),
        ] {
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
        }
        split.gradient.logits.into_data().assert_approx_eq::<f32>(
            &through_graph.gradient.logits.into_data(),
            Tolerance::absolute(1e-5),
        );
    }
    // A named layer other than the default needs the graph form, which gated ResNets lack.
    let spec = ModelSpec::new("resnet20-se", [1, 28, 28], 10);
    let model = build_model(&spec, &device).expect("build");
    let images = Tensor::<4>::zeros([1, 1, 28, 28], &device);
    let err = model
        .class_gradient(images.clone(), Some("blocks.0.relu2"), &[0])
        .err()
        .expect("no graph form");
    assert!(err.to_string().contains("blocks.8.relu2"), "{err}");
    assert!(model
        .class_gradient(images, Some("blocks.8.relu2"), &[0])
        .is_ok());
}
