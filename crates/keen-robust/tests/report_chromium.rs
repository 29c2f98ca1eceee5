//! The report card renders in a real browser: headless Chromium (Debian's `chromium`, which
//! scripts/test.sh installs) loads the page from a file and its DOM holds the table, every chart
//! figure and their SVG drawings.

use std::path::PathBuf;
use std::process::Command;

use keen_robust::calibration::ReliabilityBin;
use keen_robust::report::{
    render_html, AdversarialSummary, CalibrationSummary, CorruptionSummary, ModelCard, OodSummary,
    ReportCard,
};

fn chromium() -> PathBuf {
    let candidates = ["chromium", "chromium-browser", "google-chrome", "chrome"];
    for name in candidates {
        if let Ok(path) = which(name) {
            return path;
        }
    }
    panic!(
        "headless Chromium is needed for this test: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does)"
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

fn model(name: &str, accuracy: f64) -> ModelCard {
    ModelCard {
        name: name.into(),
        file: format!("runs/{name}/model.safetensors"),
        int8: name == "qat",
        accuracy,
        params: 19_810,
        nonzero_params: 9_911,
        macs: 2_364_864,
        file_bytes: 84_064,
        int8_bytes: (name == "qat").then_some(20_888),
        latency_ms: 0.4,
        corruption: Some(CorruptionSummary {
            images: 1000,
            mean_accuracy: accuracy - 0.1,
            per_corruption: vec![
                ("gaussian_noise".into(), accuracy - 0.05),
                ("fog".into(), accuracy - 0.2),
            ],
            mce: Some(0.95),
            relative_mce: Some(1.1),
        }),
        adversarial: Some(AdversarialSummary {
            attack: "PGD-10 L∞".into(),
            images: 500,
            curve: vec![(0.0, accuracy), (0.02, 0.4), (0.05, 0.05)],
            masking_warnings: Vec::new(),
        }),
        ood: Some(OodSummary {
            dataset: "mnist".into(),
            msp_auroc: 0.8,
            energy_auroc: 0.87,
            msp_fpr95: 0.74,
            energy_fpr95: 0.48,
        }),
        calibration: Some(CalibrationSummary {
            ece: 0.02,
            ece_scaled: 0.008,
            temperature: 1.3,
            nll: 0.25,
            brier: 0.12,
            bins: (0..15)
                .map(|b| ReliabilityBin {
                    lower: b as f64 / 15.0,
                    upper: (b + 1) as f64 / 15.0,
                    count: 10,
                    mean_confidence: (b as f64 + 0.5) / 15.0,
                    accuracy: (b as f64 + 0.4) / 15.0,
                })
                .collect(),
        }),
    }
}

#[test]
fn the_report_card_renders_in_headless_chromium() {
    let card = ReportCard {
        title: "keen report card: fashion-mnist".into(),
        dataset: "fashion-mnist".into(),
        notes: vec!["synthetic figures for the rendering test".into()],
        models: vec![
            model("teacher", 0.9255),
            model("distill", 0.9175),
            model("qat", 0.9173),
        ],
    };
    let html = render_html(&card).expect("render");
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).expect("write");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", dir.path().join("profile").display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The DOM as the browser built it, not the file we wrote.
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("<h1>keen report card: fashion-mnist</h1>"),
        "{dom}"
    );
    for id in [
        "summary",
        "accuracy-size",
        "accuracy-latency",
        "corruption-heatmap",
        "epsilon-curve",
        "ood",
        "reliability-0",
        "reliability-1",
        "reliability-2",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "the page lacks #{id}"
        );
    }
    // Two scatter charts, the heat map, the ε curve and three reliability diagrams.
    assert_eq!(dom.matches("<svg").count(), 7, "charts in the DOM");
    assert_eq!(dom.matches("<tr>").count(), 1 + 3 + 1 + 3, "table rows");
    for name in ["teacher", "distill", "qat (INT8)"] {
        assert!(dom.contains(&format!("<td>{name}</td>")), "row for {name}");
    }
}
