//! Reliability diagrams (Guo et al., 2017, figure 1).

use super::svg::{check_points, draw_axes, draw_legend, AxisLabels, SvgWriter};
use crate::calibration::{ece_mce_from_bins, ReliabilityBin};
use crate::error::RobustError;

/// Bar colour for accuracy.
pub(crate) const ACCURACY_COLOUR: &str = "#0072B2";
/// Overlay colour for the gap between accuracy and confidence.
pub(crate) const GAP_COLOUR: &str = "#D55E00";

/// Renders reliability bins as an SVG document (480×480): one bar per bin up to its
/// accuracy, a translucent bar between accuracy and mean confidence (the gap), the
/// diagonal of perfect calibration, and the ECE in the legend. Empty bins draw nothing.
pub fn reliability_diagram(bins: &[ReliabilityBin], title: &str) -> Result<String, RobustError> {
    if bins.is_empty() {
        return Err(RobustError::Empty {
            what: "reliability bins",
        });
    }
    check_points(
        "reliability bins",
        bins.iter()
            .flat_map(|b| [b.lower, b.upper, b.accuracy, b.mean_confidence]),
    )?;
    let size = (480.0, 480.0);
    let mut svg = SvgWriter::new(size.0, size.1);
    let labels = AxisLabels {
        title,
        x: "confidence",
        y: "accuracy",
    };
    let frame = draw_axes(&mut svg, size, &labels, (0.0, 1.0), (0.0, 1.0), 24.0);
    let clamp = |v: f64| v.clamp(0.0, 1.0);
    for b in bins.iter().filter(|b| b.count > 0) {
        let (x0, x1) = (frame.x.map(clamp(b.lower)), frame.x.map(clamp(b.upper)));
        let (acc, conf) = (
            frame.y.map(clamp(b.accuracy)),
            frame.y.map(clamp(b.mean_confidence)),
        );
        svg.rect(
            x0,
            acc,
            x1 - x0,
            frame.bottom - acc,
            ACCURACY_COLOUR,
            r##"class="bar" stroke="#ffffff""##,
        );
        let (top, bottom) = (acc.min(conf), acc.max(conf));
        svg.rect(
            x0,
            top,
            x1 - x0,
            bottom - top,
            GAP_COLOUR,
            r#"class="gap" fill-opacity="0.4""#,
        );
    }
    svg.line(
        (frame.x.map(0.0), frame.y.map(0.0)),
        (frame.x.map(1.0), frame.y.map(1.0)),
        "#555555",
        r#"class="diagonal" stroke-dasharray="6 4" stroke-width="1.5""#,
    );
    let total = bins.iter().map(|b| b.count).sum();
    let (ece, _) = ece_mce_from_bins(bins, total);
    let ece_label = format!("gap (ECE {:.2}%)", 100.0 * ece);
    draw_legend(
        &mut svg,
        (frame.left + 12.0, frame.top + 18.0),
        &[("accuracy", ACCURACY_COLOUR), (&ece_label, GAP_COLOUR)],
    );
    Ok(svg.finish())
}
