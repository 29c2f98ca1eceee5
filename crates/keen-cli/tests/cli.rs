//! The `keen` binary end to end: help, errors on bad input, and kill -9 then --resume.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn keen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keen"));
    // Never reach for the network or a user's data folder from a test.
    cmd.env("KEEN_NO_DOWNLOAD", "1").env_remove("KEEN_DATA");
    cmd
}

fn run(args: &[&str]) -> Output {
    keen().args(args).output().expect("run keen")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_fails_with(args: &[&str], needles: &[&str]) {
    let output = run(args);
    assert!(!output.status.success(), "keen {args:?} should fail");
    assert_eq!(
        output.status.code(),
        Some(1),
        "keen {args:?}: a clean error exit, not a panic"
    );
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "keen {args:?} panicked: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "keen {args:?}: '{needle}' not in: {err}"
        );
    }
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in [
        &["train"][..],
        &["eval"],
        &["predict"],
        &["explain"],
        &["info"],
        &["datasets"],
        &["bench-train"],
        &["distill"],
        &["quantize"],
        &["qat"],
        &["prune"],
        &["compress"],
        &["export"],
        &["eval-runtime"],
        &["bench"],
        &["robust", "calibrate"],
        &["robust", "ood"],
        &["robust", "attack"],
        &["robust", "corruptions"],
        &["report"],
        &["serve"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let output = run(&args);
        let sub = sub.join(" ");
        assert!(output.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("Example"),
            "{sub} --help shows no example:\n{text}"
        );
    }
}

#[test]
fn info_lists_the_registry_and_describes_models() {
    let output = run(&["info", "--list"]);
    let text = String::from_utf8_lossy(&output.stdout);
    for name in [
        "cnn-small",
        "resnet8",
        "resnet20",
        "mobilenet-v2-tiny",
        "vit-tiny",
    ] {
        assert!(text.contains(name), "{name} not listed");
    }
    let output = run(&["info", "cnn-small", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(info["parameters"], 421_642);
    assert!(info["flops"].as_u64().expect("flops") > 0);
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.safetensors");
    let missing = missing.to_str().expect("utf8");
    assert_fails_with(&["eval", missing], &["nope.safetensors"]);
    assert_fails_with(&["info", missing], &["nope.safetensors"]);
    assert_fails_with(&["quantize", missing], &["nope.safetensors"]);
    assert_fails_with(
        &["export", missing, "--format", "fp16"],
        &["nope.safetensors"],
    );
    assert_fails_with(&["eval-runtime", missing], &["nope.safetensors"]);
    assert_fails_with(&["bench", missing], &["nope.safetensors"]);
    assert_fails_with(
        &["compress", "--recipe", "no-such-recipe.toml"],
        &["no-such-recipe.toml"],
    );

    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").expect("write");
    assert_fails_with(
        &["eval", corrupt.to_str().expect("utf8")],
        &["corrupt.safetensors"],
    );

    assert_fails_with(
        &["train", "--model", "resnet9000"],
        &["unknown model", "resnet20"],
    );
    assert_fails_with(&["train", "--dataset", "imagenet"], &["imagenet"]);
    assert_fails_with(&["train", "--randaugment", "two"], &["--randaugment"]);
    assert_fails_with(&["train", "--device", "tpu"], &["unknown device"]);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    assert_fails_with(
        &[
            "train",
            "--dataset",
            "mnist",
            "--data",
            empty.to_str().expect("utf8"),
        ],
        &["MNIST", "--data"],
    );
    assert_fails_with(&["bench-train", "--steps", "0"], &["--steps"]);
}

/// Writes a small Fashion-MNIST look-alike (IDX, gzipped) that cnn-small learns in seconds.
fn write_toy_idx(dir: &Path, train: usize, test: usize) {
    use flate2::write::GzEncoder;
    let write = |name: &str, bytes: Vec<u8>| {
        let file = std::fs::File::create(dir.join(name)).expect("create");
        let mut gz = GzEncoder::new(file, flate2::Compression::fast());
        gz.write_all(&bytes).expect("write");
        gz.finish().expect("finish");
    };
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let mut images = vec![0, 0, 8, 3];
        for dim in [n as u32, 28, 28] {
            images.extend(dim.to_be_bytes());
        }
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let label = (i % 10) as u8;
            labels.push(label);
            // Class k lights up row band k: trivially separable.
            for y in 0..28 {
                for x in 0..28 {
                    let on = y / 3 == label as usize;
                    images.push(if on {
                        200
                    } else {
                        ((x * 7 + y * 13 + i) % 40) as u8
                    });
                }
            }
        }
        write(&format!("{prefix}-images-idx3-ubyte.gz"), images);
        write(&format!("{prefix}-labels-idx1-ubyte.gz"), labels);
    }
}

/// A temporary folder with a toy dataset of `train` and `test` images in `data/` and a run
/// folder path `run/`: (the folder, which removes both when dropped; the data path; the run path).
fn toy_run(train: usize, test: usize) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    write_toy_idx(&data, train, test);
    let data = data.to_str().expect("utf-8").to_string();
    let out = dir.path().join("run").to_str().expect("utf-8").to_string();
    (dir, data, out)
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        "cnn-small",
        "--data",
        data,
        "--out",
        out,
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--no-progress",
    ]
}

fn model_values(path: &PathBuf) -> Vec<u8> {
    // The tensor payload after the safetensors header, which holds the tensors in name order.
    let bytes = std::fs::read(path).expect("model file");
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[8 + header..].to_vec()
}

#[test]
fn kill_9_during_training_then_resume_finishes_with_the_same_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    write_toy_idx(&data, 1_200, 200);
    let data = data.to_str().expect("utf8");

    // Uninterrupted reference run.
    let straight = dir.path().join("straight");
    let output = keen()
        .args(train_args(data, straight.to_str().expect("utf8")))
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("test accuracy"), "{text}");

    // Killed run: SIGKILL as soon as the first epoch is committed, mid-way through the second.
    let killed = dir.path().join("killed");
    let mut child = keen()
        .args(train_args(data, killed.to_str().expect("utf8")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(&killed.join("state.json"), Duration::from_secs(120)),
        "no checkpoint appeared"
    );
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        !killed.join("model.safetensors").exists(),
        "the run was meant to be cut short"
    );

    let mut args = train_args(data, killed.to_str().expect("utf8"));
    args.push("--resume");
    let output = keen().args(args).output().expect("resume");
    assert!(
        output.status.success(),
        "resume failed: {}",
        stderr(&output)
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["completed_epochs"], 4);
    assert_eq!(
        std::fs::read_to_string(killed.join("log.jsonl"))
            .expect("log")
            .lines()
            .count(),
        4,
        "one log line per epoch, none lost or doubled"
    );
    assert_eq!(
        model_values(&straight.join("model.safetensors")),
        model_values(&killed.join("model.safetensors")),
        "resumed run must end with the uninterrupted run's weights"
    );

    // The finished model evaluates and predicts from its file alone.
    let model = killed.join("model.safetensors");
    let output = run(&[
        "eval",
        model.to_str().expect("utf8"),
        "--data",
        data,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(
        report["accuracy"].as_f64().expect("accuracy") > 0.9,
        "{report}"
    );
    assert_eq!(
        report["confusion"]["counts"]
            .as_array()
            .expect("matrix")
            .len(),
        10
    );

    let png = dir.path().join("band3.png");
    let mut img = image::GrayImage::new(28, 28);
    for (x, y, p) in img.enumerate_pixels_mut() {
        p.0 = [if y / 3 == 3 {
            200
        } else {
            ((x * 7 + y * 13) % 40) as u8
        }];
    }
    img.save(&png).expect("png");
    let output = run(&[
        "predict",
        "--model",
        model.to_str().expect("utf8"),
        png.to_str().expect("utf8"),
        "--json",
        "--top-k",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let predictions: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(predictions[0]["top"][0]["index"], 3, "{predictions}");

    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, b"hello").expect("write");
    assert_fails_with(
        &[
            "predict",
            "--model",
            model.to_str().expect("utf8"),
            not_image.to_str().expect("utf8"),
        ],
        &["notes.png"],
    );
}

#[test]
fn kill_9_during_a_recipe_then_rerun_finishes_without_redoing_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    write_toy_idx(&data, 1_200, 200);
    let recipe = dir.path().join("toy.toml");
    std::fs::write(
        &recipe,
        "dataset = \"fashion-mnist\"\nseed = 1\n\
         [teacher]\nmodel = \"cnn-small\"\nepochs = 1\n\
         [distill]\nstudent = \"resnet8-slim\"\nepochs = 3\nlr = 0.05\n\
         [quantize]\nbatches = 2\n",
    )
    .expect("recipe");
    let out = dir.path().join("out");
    let args = [
        "compress",
        "--recipe",
        recipe.to_str().expect("utf8"),
        "--data",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--no-progress",
    ];
    // SIGKILL once the distillation has committed its first epoch.
    let mut child = keen()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for(&out.join("distill/state.json"), Duration::from_secs(300)),
        "the distillation never checkpointed"
    );
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(!out.join("distill/stage.json").exists(), "killed mid-stage");
    let teacher_done = out.join("teacher/stage.json");
    let before = std::fs::read(&teacher_done).expect("teacher finished before the kill");

    let output = keen().args(args).output().expect("rerun");
    assert!(output.status.success(), "rerun failed: {}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("stage teacher: done earlier"), "{log}");
    assert_eq!(
        std::fs::read(&teacher_done).expect("teacher"),
        before,
        "the finished teacher is kept as it was"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stages.json")).expect("table"))
            .expect("json");
    let stages: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["stage"].as_str().expect("name"))
        .collect();
    assert_eq!(stages, ["teacher", "distill", "ptq"]);
    assert!(out.join("ptq/model.safetensors").exists());
}

#[test]
fn calibrate_writes_reliability_pngs_and_a_risk_coverage_curve() {
    let (_dir, data, out) = toy_run(400, 200);
    let data = data.as_str();
    // One epoch is enough: the test checks what calibrate writes, not how well it calibrates.
    let mut args = train_args(data, &out);
    let epochs = 1 + args
        .iter()
        .position(|a| *a == "--epochs")
        .expect("--epochs");
    args[epochs] = "1";
    let trained = run(&args);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let model = format!("{out}/model.safetensors");
    let cal = format!("{out}/cal");
    let output = run(&["robust", "calibrate", &model, "--data", data, "--out", &cal]);
    assert!(output.status.success(), "{}", stderr(&output));
    let cal = Path::new(&cal);
    for name in ["reliability-before.png", "reliability-after.png"] {
        let bytes = std::fs::read(cal.join(name)).expect(name);
        assert_eq!(&bytes[1..4], b"PNG", "{name} is a PNG");
    }
    let svg = std::fs::read_to_string(cal.join("risk-coverage.svg")).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("AURC"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cal.join("calibration.json")).expect("json"))
            .expect("valid JSON");
    let curve = json["test_risk_coverage"].as_array().expect("curve");
    assert!(!curve.is_empty() && curve.len() <= 201);
    let last = curve.last().expect("a point");
    assert!((last["coverage"].as_f64().expect("coverage") - 1.0).abs() < 1e-9);
    let aurc = json["test_aurc"].as_f64().expect("aurc");
    assert!((0.0..=1.0).contains(&aurc));
}

#[test]
fn a_weight_average_decay_outside_zero_to_one_is_a_clear_error() {
    let (_dir, data, out) = toy_run(64, 32);
    let mut args = train_args(&data, &out);
    args.extend(["--ema-decay", "1.5"]);
    assert_fails_with(&args, &["decay", "(0, 1)", "1.5"]);
}

#[test]
fn augmix_consistency_training_learns_and_refuses_combinations() {
    let (_dir, data, out) = toy_run(400, 200);
    let data = data.as_str();
    let mut args = train_args(data, &out);
    args.extend(["--augmix", "--augmix-lambda", "6"]);
    let trained = run(&args);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let hooks = std::fs::read_to_string(format!("{out}/hooks.json")).expect("hooks.json");
    assert!(
        hooks.contains("augmix_consistency") && hooks.contains("6.0"),
        "{hooks}"
    );
    let eval: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{out}/eval.json")).expect("eval.json"),
    )
    .expect("valid JSON");
    // The toy classes are bands of bright rows: the consistency term must not stop the model
    // from learning them (AugMix's rotations and shears move the bands only a little).
    let accuracy = eval["accuracy"].as_f64().expect("accuracy");
    assert!(accuracy > 0.8, "test accuracy {accuracy}");
    assert_fails_with(
        &[
            "train", "--data", data, "--augmix", "--mixup", "0.8", "--epochs", "1",
        ],
        &["--augmix", "--mixup"],
    );
    // A setting of AugMix without --augmix is a usage error (clap's exit code 2).
    let output = run(&["train", "--data", data, "--augmix-lambda", "3"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--augmix"), "{}", stderr(&output));
}
