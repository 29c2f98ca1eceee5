//! Line charts with several series.

use serde::{Deserialize, Serialize};

use super::svg::{
    check_points, draw_axes, draw_legend, padded_range, AxisLabels, SvgWriter, PALETTE,
};
use crate::error::RobustError;

/// One named series of `(x, y)` points, drawn in the given order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A line chart: title, axis labels and series; `y_range` fixes the y axis (e.g. `(0, 1)`
/// for accuracies), otherwise it fits the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The series, coloured in palette order.
    pub series: Vec<Series>,
    /// Fixed y range, if any.
    pub y_range: Option<(f64, f64)>,
}

/// Renders a line chart as an SVG document (640×400).
pub fn line_chart(chart: &LineChart) -> Result<String, RobustError> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    check_points("line chart points", points().flat_map(|&(x, y)| [x, y]))?;
    if points().next().is_none() {
        return Err(RobustError::Empty {
            what: "line chart series",
        });
    }
    let size = (640.0, 400.0);
    let mut svg = SvgWriter::new(size.0, size.1);
    let x_range = padded_range(points().map(|p| p.0));
    let y_range = match chart.y_range {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() && hi > lo => (lo, hi),
        _ => padded_range(points().map(|p| p.1)),
    };
    let labels = AxisLabels {
        title: &chart.title,
        x: &chart.x_label,
        y: &chart.y_label,
    };
    let frame = draw_axes(&mut svg, size, &labels, x_range, y_range, 150.0);
    let mut legend = Vec::new();
    for (i, series) in chart.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let pixels: Vec<(f64, f64)> = series
            .points
            .iter()
            .map(|&(x, y)| (frame.x.map(x), frame.y.map(y)))
            .collect();
        svg.polyline(&pixels, colour, 2.0);
        for &p in &pixels {
            svg.circle(p, 2.5, colour, r#"class="point""#);
        }
        legend.push((series.name.as_str(), colour));
    }
    draw_legend(&mut svg, (frame.right + 14.0, frame.top + 10.0), &legend);
    Ok(svg.finish())
}
