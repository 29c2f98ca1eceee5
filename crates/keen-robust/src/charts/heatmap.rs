//! Heat maps with a colour legend, e.g. accuracy per corruption (rows) × severity
//! (columns).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::svg::{check_points, format_tick, SvgWriter};
use crate::error::RobustError;

/// A table of values to colour, with its labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeatMap {
    /// Title above the map.
    pub title: String,
    /// One label per row.
    pub row_labels: Vec<String>,
    /// One label per column.
    pub column_labels: Vec<String>,
    /// `values[row][column]`.
    pub values: Vec<Vec<f64>>,
    /// Values mapped to the two ends of the colour scale (e.g. `(0, 1)` for accuracy);
    /// values outside are clamped.
    pub value_range: (f64, f64),
    /// What the values are, shown by the legend (e.g. `accuracy`).
    pub value_label: String,
}

/// Stops of the viridis colour map (perceptually uniform, readable in grey).
const VIRIDIS: [(u8, u8, u8); 5] = [
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (253, 231, 37),
];

/// The viridis colour at `t` in `[0, 1]` as `#rrggbb`.
pub(crate) fn viridis(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let scaled = t * (VIRIDIS.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(VIRIDIS.len() - 2);
    let f = scaled - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Renders the heat map as an SVG document; each cell shows its value to two decimals.
pub fn heat_map(map: &HeatMap) -> Result<String, RobustError> {
    let (rows, cols) = (map.row_labels.len(), map.column_labels.len());
    if rows == 0 || cols == 0 {
        return Err(RobustError::Empty {
            what: "heat map labels",
        });
    }
    if map.values.len() != rows {
        return Err(RobustError::LengthMismatch {
            what: "heat map rows",
            expected: rows,
            found: map.values.len(),
        });
    }
    if let Some(bad) = map.values.iter().find(|r| r.len() != cols) {
        return Err(RobustError::LengthMismatch {
            what: "heat map columns",
            expected: cols,
            found: bad.len(),
        });
    }
    check_points("heat map values", map.values.iter().flatten().copied())?;
    let (lo, hi) = map.value_range;
    check_points("heat map value range", [lo, hi].into_iter())?;
    let normalise = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let (cell_w, cell_h, left, top) = (56.0, 26.0, 150.0, 50.0);
    let width = left + cell_w * cols as f64 + 110.0;
    let height = top + cell_h * rows as f64 + 40.0;
    let mut svg = SvgWriter::new(width, height);
    svg.text(
        (width / 2.0, 26.0),
        &map.title,
        16.0,
        "middle",
        r#"font-weight="bold""#,
    );
    for (c, label) in map.column_labels.iter().enumerate() {
        let x = left + cell_w * (c as f64 + 0.5);
        svg.text(
            (x, top + cell_h * rows as f64 + 18.0),
            label,
            11.0,
            "middle",
            r#"class="column-label""#,
        );
    }
    for (r, (label, row)) in map.row_labels.iter().zip(&map.values).enumerate() {
        let y = top + cell_h * r as f64;
        svg.text(
            (left - 8.0, y + cell_h / 2.0 + 4.0),
            label,
            11.0,
            "end",
            r#"class="row-label""#,
        );
        for (c, &v) in row.iter().enumerate() {
            let t = normalise(v);
            let x = left + cell_w * c as f64;
            svg.rect(
                x,
                y,
                cell_w,
                cell_h,
                &viridis(t),
                r##"class="cell" stroke="#ffffff""##,
            );
            let ink = if t > 0.6 { "#000000" } else { "#ffffff" };
            svg.text(
                (x + cell_w / 2.0, y + cell_h / 2.0 + 4.0),
                &format!("{v:.2}"),
                10.0,
                "middle",
                &format!(r#"fill="{ink}""#),
            );
        }
    }
    // Legend: a vertical gradient from the top (high) to the bottom (low).
    let (lx, ly, lh) = (
        left + cell_w * cols as f64 + 24.0,
        top,
        cell_h * rows as f64,
    );
    let mut gradient =
        String::from(r#"<defs><linearGradient id="heat-legend" x1="0" y1="1" x2="0" y2="0">"#);
    for k in 0..=10 {
        let t = k as f64 / 10.0;
        let _ = write!(
            gradient,
            r#"<stop offset="{t}" stop-color="{}"/>"#,
            viridis(t)
        );
    }
    gradient.push_str("</linearGradient></defs>");
    svg.raw(&gradient);
    svg.rect(
        lx,
        ly,
        16.0,
        lh,
        "url(#heat-legend)",
        r##"class="legend-bar" stroke="#333333""##,
    );
    svg.text(
        (lx + 22.0, ly + 10.0),
        &format_tick(hi),
        11.0,
        "start",
        r#"class="legend""#,
    );
    svg.text(
        (lx + 22.0, ly + lh),
        &format_tick(lo),
        11.0,
        "start",
        r#"class="legend""#,
    );
    svg.text(
        (lx + 8.0, ly - 8.0),
        &map.value_label,
        11.0,
        "middle",
        r#"class="legend""#,
    );
    Ok(svg.finish())
}
