//! `keen explain` end to end: heat-map PNGs and explain.json for a saved ViT (attention
//! rollout), saved CNNs with and without a graph form (Grad-CAM) and a head-pruned ViT.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use burn::prelude::Device;
use keen_models::{build_model, weights, ModelSpec};
use keen_train::trainer::meta;

fn keen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keen"))
        .env("KEEN_NO_DOWNLOAD", "1")
        .env_remove("KEEN_DATA")
        .args(args)
        .output()
        .expect("run keen")
}

/// Saves a freshly initialised `model` for 28×28 grey images as keen would after training.
fn save_untrained(model: &str, path: &Path) {
    let device = Device::flex();
    let spec = ModelSpec::new(model, [1, 28, 28], 10);
    let built = build_model(&spec, &device).expect("build");
    let built = match model {
        "vit-tiny" if path.to_string_lossy().contains("pruned") => {
            let plan = keen_compress::prune::plan_transformer(&built, 0.5, 0.25).expect("plan");
            keen_compress::prune::prune_transformer(built, &plan).expect("prune")
        }
        _ => built,
    };
    let metadata = BTreeMap::from([(
        meta::NORMALIZATION.to_string(),
        r#"{"mean":[0.286],"std":[0.353]}"#.to_string(),
    )]);
    weights::save(&built, &spec, &metadata, path).expect("save");
}

fn write_image(path: &Path) {
    let mut img = image::GrayImage::new(28, 28);
    for (x, y, p) in img.enumerate_pixels_mut() {
        p.0 = [if (8..20).contains(&x) && (6..22).contains(&y) {
            220
        } else {
            10
        }];
    }
    img.save(path).expect("png");
}

#[test]
fn explain_writes_a_heat_map_per_image_for_vits_and_cnns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.png"));
            write_image(&path);
            path.to_string_lossy().into_owned()
        })
        .collect();
    // (model, method, --layer, the layer explain.json must name)
    for (model, method, layer, reported) in [
        ("vit-tiny", "attention-rollout", None, None),
        ("vit-tiny-pruned", "attention-rollout", None, None),
        ("deit-tiny", "attention-rollout", None, None),
        (
            "resnet8",
            "grad-cam",
            Some("blocks.0.relu2"),
            Some("blocks.0.relu2"),
        ),
        ("cnn-small", "grad-cam", None, Some("pool2")),
        // No graph form: Grad-CAM on the last spatial map through the features split.
        ("resnet20-se", "grad-cam", None, Some("blocks.8.relu2")),
        ("resnet20-gc", "grad-cam", None, Some("blocks.8.relu2")),
        ("resnet20-bot", "grad-cam", None, Some("bot_blocks.2.relu2")),
    ] {
        let file = dir.path().join(format!("{model}.safetensors"));
        save_untrained(model.trim_end_matches("-pruned"), &file);
        let out = dir.path().join(format!("out-{model}"));
        let mut args = vec![
            "explain",
            "--model",
            file.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--scale",
            "4",
        ];
        if let Some(layer) = layer {
            args.extend(["--layer", layer]);
        }
        args.extend(images.iter().map(String::as_str));
        let output = keen(&args);
        assert!(
            output.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("explain.json")).expect("json"))
                .expect("parse");
        assert_eq!(report["method"], method, "{report}");
        let listed = report["images"].as_array().expect("images");
        assert_eq!(listed.len(), 2);
        for entry in listed {
            let png = out.join(entry["heatmap"].as_str().expect("file"));
            let img = image::open(&png).expect("heat map png");
            assert_eq!((img.width(), img.height()), (112, 112), "{model}");
            let p = entry["probability"].as_f64().expect("probability");
            assert!((0.0..=1.0).contains(&p));
            assert!(entry["index"].as_u64().expect("index") < 10);
        }
        match reported {
            Some(layer) => assert_eq!(report["layer"], layer, "{model}"),
            None => assert!(report.get("layer").is_none(), "{model}"),
        }
    }

    // Wrong options give clean errors naming the problem.
    let resnet = dir.path().join("resnet8.safetensors");
    let output = keen(&[
        "explain",
        "--model",
        resnet.to_str().expect("utf8"),
        "--layer",
        "nope",
        &images[0],
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no feature map named 'nope'"));
    let gated = dir.path().join("resnet20-se.safetensors");
    let output = keen(&[
        "explain",
        "--model",
        gated.to_str().expect("utf8"),
        "--layer",
        "blocks.0.relu2",
        &images[0],
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("graph form") && stderr.contains("blocks.8.relu2"),
        "{stderr}"
    );
    let vit = dir.path().join("vit-tiny.safetensors");
    let output = keen(&[
        "explain",
        "--model",
        vit.to_str().expect("utf8"),
        "--class",
        "3",
        &images[0],
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Grad-CAM options"));
}
