//! The SVG building blocks the charts share: escaping, a writer, linear scales, "nice"
//! ticks and framed axes. Output is plain SVG 1.1 with no scripts or external resources.

use std::fmt::Write;

use crate::error::RobustError;

/// Colours for series, chosen to stay distinguishable for common colour-vision
/// deficiencies (the Okabe–Ito palette).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// Escapes text for use in SVG element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Accumulates SVG elements; [`SvgWriter::finish`] wraps them in the root element.
pub struct SvgWriter {
    width: f64,
    height: f64,
    body: String,
}

impl SvgWriter {
    /// An empty drawing of `width × height` user units (pixels).
    pub fn new(width: f64, height: f64) -> Self {
        let mut body = String::new();
        let _ = write!(
            body,
            r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
        );
        SvgWriter {
            width,
            height,
            body,
        }
    }

    /// A rectangle; `extra` holds further attributes (already escaped).
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = write!(
            self.body,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{:.2}" height="{:.2}" fill="{fill}" {extra}/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    /// A straight line.
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, extra: &str) {
        let _ = write!(
            self.body,
            r#"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" stroke="{stroke}" {extra}/>"#
        );
    }

    /// An open polyline through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64) {
        let coords: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.2},{y:.2}"))
            .collect();
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"/>"#,
            coords.join(" ")
        );
    }

    /// A circle.
    pub fn circle(&mut self, (cx, cy): (f64, f64), r: f64, fill: &str, extra: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{cx:.2}" cy="{cy:.2}" r="{r:.2}" fill="{fill}" {extra}/>"#
        );
    }

    /// Text at (`x`, `y`); `anchor` is `start`, `middle` or `end`. The text is escaped.
    pub fn text(&mut self, (x, y): (f64, f64), text: &str, size: f64, anchor: &str, extra: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.2}" y="{y:.2}" font-size="{size}" text-anchor="{anchor}" {extra}>{}</text>"#,
            escape(text)
        );
    }

    /// Raw, already well-formed SVG (gradients and the like).
    pub fn raw(&mut self, svg: &str) {
        self.body.push_str(svg);
    }

    /// The finished document.
    pub fn finish(self) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">{}</svg>"#,
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// Maps a data interval onto a pixel interval.
#[derive(Clone, Copy, Debug)]
pub struct LinearScale {
    /// Data interval `(lo, hi)`.
    pub domain: (f64, f64),
    /// Pixel interval the domain maps onto (may be reversed, as for a y axis).
    pub range: (f64, f64),
}

impl LinearScale {
    /// Pixel position of `v`.
    pub fn map(&self, v: f64) -> f64 {
        let (d0, d1) = self.domain;
        let t = if d1 == d0 { 0.5 } else { (v - d0) / (d1 - d0) };
        self.range.0 + t * (self.range.1 - self.range.0)
    }
}

/// About `count` round tick values (steps of 1, 2 or 5 × 10^k) covering `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw_step = (hi - lo) / count.max(1) as f64;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw_step)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label without trailing zeros (`0.5`, `10`, `0.25`).
pub fn format_tick(v: f64) -> String {
    let s = format!("{:.4}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The data range of `values` widened by 5% (or by 1 when flat), for axes.
pub fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// The plot area inside the margins and its two scales.
pub struct Frame {
    /// Left edge of the plot area.
    pub left: f64,
    /// Top edge of the plot area.
    pub top: f64,
    /// Right edge of the plot area.
    pub right: f64,
    /// Bottom edge of the plot area.
    pub bottom: f64,
    /// Data x → pixel x.
    pub x: LinearScale,
    /// Data y → pixel y (upwards).
    pub y: LinearScale,
}

/// Labels of a framed chart.
pub struct AxisLabels<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X-axis label.
    pub x: &'a str,
    /// Y-axis label.
    pub y: &'a str,
}

/// Draws title, frame, grid, ticks and axis labels for data ranges `x_range` and
/// `y_range` and returns the frame to plot in. `right_margin` leaves room for a legend.
pub fn draw_axes(
    svg: &mut SvgWriter,
    size: (f64, f64),
    labels: &AxisLabels<'_>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    right_margin: f64,
) -> Frame {
    let (left, top) = (64.0, 40.0);
    let (right, bottom) = (size.0 - right_margin, size.1 - 52.0);
    let frame = Frame {
        left,
        top,
        right,
        bottom,
        x: LinearScale {
            domain: x_range,
            range: (left, right),
        },
        y: LinearScale {
            domain: y_range,
            range: (bottom, top),
        },
    };
    svg.text(
        (size.0 / 2.0, 24.0),
        labels.title,
        16.0,
        "middle",
        r#"font-weight="bold""#,
    );
    for t in nice_ticks(x_range.0, x_range.1, 6) {
        let px = frame.x.map(t);
        svg.line((px, top), (px, bottom), "#e5e5e5", "");
        svg.text((px, bottom + 16.0), &format_tick(t), 11.0, "middle", "");
    }
    for t in nice_ticks(y_range.0, y_range.1, 5) {
        let py = frame.y.map(t);
        svg.line((left, py), (right, py), "#e5e5e5", "");
        svg.text((left - 6.0, py + 4.0), &format_tick(t), 11.0, "end", "");
    }
    svg.rect(
        left,
        top,
        right - left,
        bottom - top,
        "none",
        r##"stroke="#333333""##,
    );
    svg.text(
        ((left + right) / 2.0, size.1 - 14.0),
        labels.x,
        12.0,
        "middle",
        r#"class="x-label""#,
    );
    let cy = (top + bottom) / 2.0;
    svg.text(
        (16.0, cy),
        labels.y,
        12.0,
        "middle",
        &format!(r#"class="y-label" transform="rotate(-90 16 {cy:.2})""#),
    );
    frame
}

/// A legend: one coloured swatch and escaped name per entry, stacked from (`x`, `y`).
pub fn draw_legend(svg: &mut SvgWriter, (x, y): (f64, f64), entries: &[(&str, &str)]) {
    for (i, (name, colour)) in entries.iter().enumerate() {
        let row = y + 18.0 * i as f64;
        svg.rect(x, row - 9.0, 12.0, 12.0, colour, r#"class="legend-swatch""#);
        svg.text(
            (x + 18.0, row + 1.0),
            name,
            11.0,
            "start",
            r#"class="legend""#,
        );
    }
}

/// Fails on the first non-finite value of a chart input.
pub fn check_points(
    what: &'static str,
    values: impl Iterator<Item = f64>,
) -> Result<(), RobustError> {
    for (index, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(RobustError::NonFinite {
                what,
                index,
                value: v,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_ticks() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("x\u{1}y"), "xy");
        assert_eq!(
            nice_ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(format_tick(0.6000000000000001), "0.6");
        assert_eq!(format_tick(10.0), "10");
        assert_eq!(format_tick(-0.0), "0");
        assert_eq!(nice_ticks(1.0, 1.0, 5), vec![1.0]);
        assert_eq!(padded_range([2.0, 2.0].into_iter()), (1.0, 3.0));
    }
}
