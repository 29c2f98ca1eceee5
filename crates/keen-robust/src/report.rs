//! The report card: for each model (e.g. every stage of a compression recipe) clean accuracy,
//! size, latency, corruption accuracy and mCE, adversarial accuracy, OOD detection and
//! calibration, as one self-contained HTML page with inline SVG charts, plus JSON.
//!
//! The page has no scripts and no external resources: it opens from a file, in a mail client
//! or a CI artifact viewer alike. Every chart is an `<svg>` inside a `<figure>` with an id, so
//! that tests (and people) can find them.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::calibration::ReliabilityBin;
use crate::charts::svg::escape;
use crate::charts::{
    heat_map, line_chart, reliability_diagram, scatter_chart, HeatMap, LineChart, ScatterChart,
    ScatterPoint, Series,
};
use crate::error::RobustError;

/// Corruption robustness of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionSummary {
    /// Test images evaluated.
    pub images: usize,
    /// Mean accuracy over every corruption and severity.
    pub mean_accuracy: f64,
    /// Mean accuracy over the severities, per corruption (table order).
    pub per_corruption: Vec<(String, f64)>,
    /// mCE against the report's baseline (its first model); 1.0 = as bad as the baseline.
    pub mce: Option<f64>,
    /// Relative mCE against the baseline.
    pub relative_mce: Option<f64>,
}

/// Adversarial robustness of one model: accuracy at each ε of one attack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdversarialSummary {
    /// The attack, e.g. `PGD-10 L∞`.
    pub attack: String,
    /// Test images attacked.
    pub images: usize,
    /// `(ε, accuracy)`, ε ascending, starting at 0 (clean).
    pub curve: Vec<(f64, f64)>,
    /// Problems the gradient-masking checks found (empty when they pass).
    pub masking_warnings: Vec<String>,
}

/// Out-of-distribution detection of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodSummary {
    /// The out-of-distribution test set.
    pub dataset: String,
    /// AUROC of the maximum softmax probability.
    pub msp_auroc: f64,
    /// AUROC of the energy score.
    pub energy_auroc: f64,
    /// FPR at 95% TPR of the maximum softmax probability.
    pub msp_fpr95: f64,
    /// FPR at 95% TPR of the energy score.
    pub energy_fpr95: f64,
}

/// Calibration of one model on the test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// ECE (15 bins) of the raw model.
    pub ece: f64,
    /// ECE after temperature scaling fitted on the validation split.
    pub ece_scaled: f64,
    /// The fitted temperature.
    pub temperature: f64,
    /// Negative log-likelihood of the raw model.
    pub nll: f64,
    /// Brier score of the raw model.
    pub brier: f64,
    /// Reliability bins of the raw model.
    pub bins: Vec<ReliabilityBin>,
}

/// Everything the report card says about one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Short name (e.g. the recipe stage).
    pub name: String,
    /// The model file.
    pub file: String,
    /// Whether it computes (simulated) INT8.
    pub int8: bool,
    /// Clean test accuracy.
    pub accuracy: f64,
    /// Trainable parameters.
    pub params: usize,
    /// Non-zero trainable parameters.
    pub nonzero_params: usize,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Bytes of the model file (fp32 weights).
    pub file_bytes: u64,
    /// Bytes of the weights stored as INT8, for quantized models.
    pub int8_bytes: Option<u64>,
    /// Milliseconds per image, measured on a batch.
    pub latency_ms: f64,
    /// Corruption robustness.
    pub corruption: Option<CorruptionSummary>,
    /// Adversarial robustness.
    pub adversarial: Option<AdversarialSummary>,
    /// OOD detection.
    pub ood: Option<OodSummary>,
    /// Calibration.
    pub calibration: Option<CalibrationSummary>,
}

impl ModelCard {
    /// The size that matters for deployment: INT8 bytes when quantized, else the file.
    pub fn deploy_bytes(&self) -> u64 {
        self.int8_bytes.unwrap_or(self.file_bytes)
    }
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportCard {
    /// Page title.
    pub title: String,
    /// The in-distribution dataset.
    pub dataset: String,
    /// How the figures were measured (image counts, attack settings), one line each.
    pub notes: Vec<String>,
    /// The models, in order (the first is the baseline of mCE).
    pub models: Vec<ModelCard>,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}thead{background:#eee}\
figure{display:inline-block;margin:0.5em;vertical-align:top}figcaption{font-size:0.9em;color:#555}\
.bad{color:#b00}.note{color:#555;font-size:0.9em}";

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

fn optional(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map(show).unwrap_or_else(|| "—".into())
}

fn bytes(value: u64) -> String {
    if value >= 1 << 20 {
        format!("{:.2} MB", value as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} kB", value as f64 / 1024.0)
    }
}

fn figure(out: &mut String, id: &str, caption: &str, svg: &str) {
    let _ = write!(
        out,
        "<figure id=\"{id}\">{svg}<figcaption>{}</figcaption></figure>",
        escape(caption)
    );
}

/// The report card as one HTML page.
pub fn render_html(card: &ReportCard) -> Result<String, RobustError> {
    if card.models.is_empty() {
        return Err(RobustError::Empty {
            what: "report card models",
        });
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1><p>Dataset: <b>{dataset}</b>. Each row is one model; the first is the baseline of mCE.</p>",
        title = escape(&card.title),
        dataset = escape(&card.dataset)
    );

    // The table: one row per model.
    out.push_str("<table id=\"summary\"><thead><tr><th>model</th><th>accuracy</th><th>params</th><th>non-zero</th><th>MACs</th><th>size</th><th>ms / image</th><th>corruption acc.</th><th>mCE</th><th>adversarial acc.</th><th>OOD AUROC (energy)</th><th>ECE</th><th>ECE (T-scaled)</th></tr></thead><tbody>");
    for m in &card.models {
        // The smallest budget: larger ones often take every model to 0%.
        let adversarial = m.adversarial.as_ref().and_then(|a| {
            a.curve
                .iter()
                .find(|(eps, _)| *eps > 0.0)
                .map(|(eps, acc)| format!("{} at ε={}", percent(*acc), *eps as f32))
        });
        let masking = m
            .adversarial
            .as_ref()
            .is_some_and(|a| !a.masking_warnings.is_empty());
        let _ = write!(
            out,
            "<tr><td>{name}{int8}</td><td>{acc}</td><td>{params}</td><td>{nonzero}</td><td>{macs}</td><td>{size}</td><td>{latency:.3}</td><td>{corr}</td><td>{mce}</td><td{adv_class}>{adv}</td><td>{ood}</td><td>{ece}</td><td>{ece_t}</td></tr>",
            name = escape(&m.name),
            int8 = if m.int8 { " (INT8)" } else { "" },
            acc = percent(m.accuracy),
            params = m.params,
            nonzero = m.nonzero_params,
            macs = m.macs,
            size = bytes(m.deploy_bytes()),
            latency = m.latency_ms,
            corr = optional(m.corruption.as_ref().map(|c| c.mean_accuracy), percent),
            mce = optional(m.corruption.as_ref().and_then(|c| c.mce), percent),
            adv_class = if masking { " class=\"bad\"" } else { "" },
            adv = escape(&adversarial.unwrap_or_else(|| "—".into())),
            ood = optional(m.ood.as_ref().map(|o| o.energy_auroc), |v| format!("{v:.3}")),
            ece = optional(m.calibration.as_ref().map(|c| c.ece), |v| format!("{v:.4}")),
            ece_t = optional(m.calibration.as_ref().map(|c| c.ece_scaled), |v| format!(
                "{v:.4}"
            )),
        );
    }
    out.push_str("</tbody></table>");
    for note in &card.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
    }

    // Accuracy against size and latency.
    out.push_str("<h2>Accuracy, size and latency</h2>");
    let points = |x: &dyn Fn(&ModelCard) -> f64| -> Vec<ScatterPoint> {
        card.models
            .iter()
            .map(|m| ScatterPoint {
                label: m.name.clone(),
                x: x(m),
                y: 100.0 * m.accuracy,
                size: m.deploy_bytes() as f64,
            })
            .collect()
    };
    let size_chart = scatter_chart(&ScatterChart {
        title: "accuracy vs size".into(),
        x_label: "size (kB, INT8 weights when quantized)".into(),
        y_label: "test accuracy (%)".into(),
        size_label: "size (bytes)".into(),
        points: points(&|m| m.deploy_bytes() as f64 / 1024.0),
    })?;
    figure(
        &mut out,
        "accuracy-size",
        "Test accuracy against deployed size.",
        &size_chart,
    );
    let latency_chart = scatter_chart(&ScatterChart {
        title: "accuracy vs latency".into(),
        x_label: "ms per image".into(),
        y_label: "test accuracy (%)".into(),
        size_label: "size (bytes)".into(),
        points: points(&|m| m.latency_ms),
    })?;
    figure(
        &mut out,
        "accuracy-latency",
        "Test accuracy against latency; bubble area is the size.",
        &latency_chart,
    );

    // Corruptions: models × corruption types.
    let with_corruption: Vec<&ModelCard> = card
        .models
        .iter()
        .filter(|m| m.corruption.is_some())
        .collect();
    if let Some(first) = with_corruption.first().and_then(|m| m.corruption.as_ref()) {
        out.push_str("<h2>Common corruptions</h2>");
        let columns: Vec<String> = first
            .per_corruption
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        let values = with_corruption
            .iter()
            .map(|m| {
                let c = m.corruption.as_ref().map(|c| &c.per_corruption);
                columns
                    .iter()
                    .map(|name| {
                        c.and_then(|rows| rows.iter().find(|(n, _)| n == name))
                            .map(|(_, acc)| *acc)
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect();
        let svg = heat_map(&HeatMap {
            title: "accuracy under corruption (mean of 5 severities)".into(),
            row_labels: with_corruption.iter().map(|m| m.name.clone()).collect(),
            column_labels: columns,
            values,
            value_range: (0.0, 1.0),
            value_label: "accuracy".into(),
        })?;
        figure(
            &mut out,
            "corruption-heatmap",
            "Accuracy per model and corruption, averaged over the five severities.",
            &svg,
        );
    }

    // Adversarial ε curves.
    let series: Vec<Series> = card
        .models
        .iter()
        .filter_map(|m| {
            m.adversarial.as_ref().map(|a| Series {
                name: m.name.clone(),
                points: a.curve.clone(),
            })
        })
        .collect();
    if !series.is_empty() {
        let attack = card
            .models
            .iter()
            .find_map(|m| m.adversarial.as_ref().map(|a| a.attack.clone()))
            .unwrap_or_default();
        out.push_str("<h2>Adversarial robustness</h2>");
        let svg = line_chart(&LineChart {
            title: format!("accuracy under {attack}"),
            x_label: "ε".into(),
            y_label: "accuracy".into(),
            series,
            y_range: Some((0.0, 1.0)),
        })?;
        figure(
            &mut out,
            "epsilon-curve",
            "Accuracy against the perturbation budget ε.",
            &svg,
        );
        for m in &card.models {
            for warning in m.adversarial.iter().flat_map(|a| &a.masking_warnings) {
                let _ = write!(
                    out,
                    "<p class=\"bad\">{}: gradient-masking check: {}</p>",
                    escape(&m.name),
                    escape(warning)
                );
            }
        }
    }

    // OOD detection.
    if card.models.iter().any(|m| m.ood.is_some()) {
        out.push_str("<h2>Out-of-distribution detection</h2><table id=\"ood\"><thead><tr><th>model</th><th>OOD set</th><th>AUROC MSP</th><th>AUROC energy</th><th>FPR95 MSP</th><th>FPR95 energy</th></tr></thead><tbody>");
        for m in &card.models {
            if let Some(o) = &m.ood {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                    escape(&m.name),
                    escape(&o.dataset),
                    o.msp_auroc,
                    o.energy_auroc,
                    o.msp_fpr95,
                    o.energy_fpr95
                );
            }
        }
        out.push_str("</tbody></table>");
    }

    // Calibration.
    if card.models.iter().any(|m| m.calibration.is_some()) {
        out.push_str("<h2>Calibration</h2>");
        for (i, m) in card.models.iter().enumerate() {
            if let Some(c) = &m.calibration {
                let svg = reliability_diagram(&c.bins, &m.name)?;
                figure(
                    &mut out,
                    &format!("reliability-{i}"),
                    &format!(
                        "{}: ECE {:.4} → {:.4} with temperature {:.2}; NLL {:.4}, Brier {:.4}",
                        m.name, c.ece, c.ece_scaled, c.temperature, c.nll, c.brier
                    ),
                    &svg,
                );
            }
        }
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(name: &str, accuracy: f64, with_robustness: bool) -> ModelCard {
        ModelCard {
            name: name.into(),
            file: format!("{name}.safetensors"),
            int8: name.contains("int8"),
            accuracy,
            params: 1000,
            nonzero_params: 800,
            macs: 10_000,
            file_bytes: 4000,
            int8_bytes: name.contains("int8").then_some(1000),
            latency_ms: 0.05,
            corruption: with_robustness.then(|| CorruptionSummary {
                images: 100,
                mean_accuracy: accuracy - 0.2,
                per_corruption: vec![("fog".into(), 0.5), ("gaussian_noise".into(), 0.7)],
                mce: Some(1.0),
                relative_mce: Some(1.0),
            }),
            adversarial: with_robustness.then(|| AdversarialSummary {
                attack: "PGD-10 L∞".into(),
                images: 100,
                curve: vec![(0.0, accuracy), (0.1, 0.3), (0.2, 0.05)],
                masking_warnings: Vec::new(),
            }),
            ood: with_robustness.then(|| OodSummary {
                dataset: "mnist".into(),
                msp_auroc: 0.8,
                energy_auroc: 0.9,
                msp_fpr95: 0.7,
                energy_fpr95: 0.5,
            }),
            calibration: with_robustness.then(|| CalibrationSummary {
                ece: 0.03,
                ece_scaled: 0.01,
                temperature: 1.4,
                nll: 0.3,
                brier: 0.15,
                bins: vec![ReliabilityBin {
                    lower: 0.0,
                    upper: 1.0,
                    count: 100,
                    mean_confidence: 0.9,
                    accuracy,
                }],
            }),
        }
    }

    #[test]
    fn every_section_and_chart_is_there() {
        let report = ReportCard {
            title: "teacher <vs> student".into(),
            dataset: "fashion-mnist".into(),
            notes: vec!["corruptions on 100 images".into()],
            models: vec![
                card("teacher", 0.92, true),
                card("student-int8", 0.91, true),
            ],
        };
        let html = render_html(&report).unwrap();
        for id in [
            "summary",
            "accuracy-size",
            "accuracy-latency",
            "corruption-heatmap",
            "epsilon-curve",
            "ood",
            "reliability-0",
            "reliability-1",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing {id}");
        }
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(
            html.contains("teacher &lt;vs&gt; student"),
            "titles are escaped"
        );
        assert!(html.contains("student-int8 (INT8)"));
        assert!(!html.contains("<script"), "a static page");
    }

    #[test]
    fn sections_without_data_are_left_out() {
        let report = ReportCard {
            title: "sizes only".into(),
            dataset: "mnist".into(),
            notes: Vec::new(),
            models: vec![card("a", 0.9, false)],
        };
        let html = render_html(&report).unwrap();
        assert!(html.contains("id=\"accuracy-size\""));
        assert!(!html.contains("corruption-heatmap") && !html.contains("epsilon-curve"));
        assert!(html.contains("<td>—</td>"));
        let empty = ReportCard {
            models: Vec::new(),
            ..report
        };
        assert!(render_html(&empty).is_err());
    }
}
