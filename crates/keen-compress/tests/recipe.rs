//! The action plan end to end on a toy task: teacher → distil → prune → PTQ and QAT, the stage
//! table, and resuming at the first unfinished stage.

use std::path::Path;

use burn::prelude::*;
use keen_compress::recipe::{run_recipe, Recipe, RecipeOptions};
use keen_data::dataset::ImageDataset;

/// Class 0 is a bright top half, class 1 a bright bottom half (flips keep the labels).
fn halves(n: usize, seed: u64) -> ImageDataset {
    keen_data::toy::halves_dataset(n, seed, keen_data::toy::Halves::TopBottom)
}

const RECIPE: &str = r#"
dataset = "halves"
seed = 3
[teacher]
model = "resnet8"
epochs = 2
[distill]
student = "resnet8-slim"
epochs = 4
lr = 0.05
[distill.hint]
weight = 0.5
[prune]
sparsity = 0.5
epochs = 1
lr = 0.01
[quantize]
method = { method = "percentile", percentile = 99.9 }
batches = 2
[qat]
epochs = 1
lr = 0.01
"#;

#[test]
fn recipe_runs_every_stage_and_resumes_at_the_first_unfinished_one() {
    let recipe = Recipe::from_toml(RECIPE, Path::new("toy.toml")).expect("parse");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RecipeOptions {
        out_dir: dir.path().to_path_buf(),
        device: Device::flex(),
        progress: false,
    };
    let (train, test) = (halves(640, 1), halves(100, 2));
    let rows = run_recipe(&recipe, &train, &test, &options).expect("recipe");
    let stages: Vec<&str> = rows.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(stages, ["teacher", "distill", "prune", "ptq", "qat"]);
    for row in &rows {
        assert!(
            row.test_accuracy > 0.9,
            "{}: {}",
            row.stage,
            row.test_accuracy
        );
    }
    let teacher = &rows[0];
    let qat = &rows[4];
    // Hint distillation trained a regressor inside the student; the saved student is without it.
    let plain_student = keen_models::build_model(
        &keen_models::ModelSpec::new("resnet8-slim", train.image_shape(), train.num_classes()),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(
        rows[1].params,
        keen_models::trainable_params(&plain_student),
        "the distilled student has the student's architecture"
    );
    assert!(
        qat.params * 3 < teacher.params,
        "the student is much smaller"
    );
    assert!(
        (rows[2].nonzero_params as f64) < 0.7 * rows[2].params as f64,
        "pruned"
    );
    assert!(
        (qat.nonzero_params as f64) < 0.7 * qat.params as f64,
        "QAT keeps the pruned weights at zero"
    );
    assert!(qat.int8_bytes.is_some() && rows[3].int8_bytes.is_some());
    let table = std::fs::read_to_string(dir.path().join("stages.md")).unwrap();
    assert!(table.contains("| qat |") && table.contains("| teacher |"));

    // A kill during the QAT stage leaves it without its stage.json: a rerun redoes only it.
    let teacher_done = dir.path().join("teacher/stage.json");
    let before = std::fs::metadata(&teacher_done)
        .unwrap()
        .modified()
        .unwrap();
    std::fs::remove_file(dir.path().join("qat/stage.json")).unwrap();
    std::fs::remove_file(dir.path().join("qat/state.json")).unwrap();
    let rows = run_recipe(&recipe, &train, &test, &options).expect("resume");
    assert_eq!(rows.len(), 5);
    assert!(dir.path().join("qat/stage.json").exists());
    let after = std::fs::metadata(&teacher_done)
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "finished stages are not redone");

    // Other QAT settings: only QAT runs again, and the old QAT results are kept aside.
    let changed = Recipe::from_toml(
        &RECIPE.replace(
            "[qat]\nepochs = 1\nlr = 0.01",
            "[qat]\nepochs = 1\nlr = 0.02",
        ),
        Path::new("toy.toml"),
    )
    .expect("parse");
    assert_ne!(changed.qat, recipe.qat);
    let rows = run_recipe(&changed, &train, &test, &options).expect("rerun");
    assert_eq!(rows.len(), 5);
    assert!(dir.path().join("qat.previous/stage.json").exists());
    assert!(!dir.path().join("ptq.previous").exists());
    let after = std::fs::metadata(&teacher_done)
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        before, after,
        "stages before the changed one are not redone"
    );
}

#[test]
fn bad_recipes_are_clear_errors() {
    let err = Recipe::from_toml("[teacher]\nmodel = 1", Path::new("bad.toml")).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
    let both = RECIPE.replace("sparsity = 0.5", "sparsity = 0.5\nchannels = 0.5");
    let err = Recipe::from_toml(&both, Path::new("both.toml")).unwrap_err();
    assert!(err.to_string().contains("exactly one"), "{err}");
}

#[test]
fn shipped_recipes_parse() {
    for (name, text) in [
        (
            "fashion-mnist.toml",
            include_str!("../../../recipes/fashion-mnist.toml"),
        ),
        ("mnist.toml", include_str!("../../../recipes/mnist.toml")),
    ] {
        let recipe = Recipe::from_toml(text, Path::new(name)).expect(name);
        assert!(recipe.qat.is_some() && recipe.prune.is_some(), "{name}");
    }
}
