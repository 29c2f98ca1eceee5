//! Scatter (bubble) charts, e.g. accuracy against latency with bubble area ∝ model size.

use serde::{Deserialize, Serialize};

use super::svg::{check_points, draw_axes, padded_range, AxisLabels, SvgWriter, PALETTE};
use crate::error::RobustError;

/// One labelled point; `size` sets the bubble's area (e.g. `size_bytes`), 0 for a dot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScatterPoint {
    /// Label drawn beside the point (e.g. the model name).
    pub label: String,
    /// X value (e.g. `latency_ms`).
    pub x: f64,
    /// Y value (e.g. accuracy).
    pub y: f64,
    /// Non-negative size; bubble area is proportional to it.
    pub size: f64,
}

/// A scatter chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScatterChart {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// What `size` measures, for the legend (e.g. `size (bytes)`).
    pub size_label: String,
    /// The points.
    pub points: Vec<ScatterPoint>,
}

/// Largest bubble radius in pixels.
const MAX_RADIUS: f64 = 22.0;

/// Renders the scatter chart as an SVG document (640×420).
pub fn scatter_chart(chart: &ScatterChart) -> Result<String, RobustError> {
    if chart.points.is_empty() {
        return Err(RobustError::Empty {
            what: "scatter points",
        });
    }
    check_points(
        "scatter points",
        chart.points.iter().flat_map(|p| [p.x, p.y, p.size]),
    )?;
    if let Some(p) = chart.points.iter().find(|p| p.size < 0.0) {
        return Err(RobustError::InvalidArgument {
            name: "scatter size",
            value: p.size.to_string(),
            reason: "sizes must be >= 0".into(),
        });
    }
    let size = (640.0, 420.0);
    let mut svg = SvgWriter::new(size.0, size.1);
    let labels = AxisLabels {
        title: &chart.title,
        x: &chart.x_label,
        y: &chart.y_label,
    };
    let frame = draw_axes(
        &mut svg,
        size,
        &labels,
        padded_range(chart.points.iter().map(|p| p.x)),
        padded_range(chart.points.iter().map(|p| p.y)),
        140.0,
    );
    let max_size = chart.points.iter().map(|p| p.size).fold(0.0, f64::max);
    let radius = |s: f64| {
        if max_size > 0.0 {
            3.0 + (MAX_RADIUS - 3.0) * (s / max_size).sqrt()
        } else {
            4.0
        }
    };
    for (i, p) in chart.points.iter().enumerate() {
        let centre = (frame.x.map(p.x), frame.y.map(p.y));
        let r = radius(p.size);
        let colour = PALETTE[i % PALETTE.len()];
        svg.circle(
            centre,
            r,
            colour,
            r##"class="bubble" fill-opacity="0.6" stroke="#333333""##,
        );
        svg.text(
            (centre.0 + r + 4.0, centre.1 + 4.0),
            &p.label,
            11.0,
            "start",
            r#"class="point-label""#,
        );
    }
    // Size legend: the largest bubble and its value.
    let (lx, ly) = (
        frame.right + 20.0 + MAX_RADIUS,
        frame.top + 30.0 + MAX_RADIUS,
    );
    svg.text(
        (frame.right + 14.0, frame.top + 12.0),
        &chart.size_label,
        11.0,
        "start",
        r#"class="legend""#,
    );
    svg.circle(
        (lx, ly),
        radius(max_size),
        "none",
        r##"class="legend-bubble" stroke="#333333""##,
    );
    svg.text(
        (lx, ly + MAX_RADIUS + 16.0),
        &format!("{max_size:.3e}"),
        10.0,
        "middle",
        r#"class="legend""#,
    );
    Ok(svg.finish())
}
