//! Small, self-contained charts for keen's reports: SVG strings (no JavaScript, no
//! external fonts or files) and PNG renders drawn straight into an `image::RgbImage`
//! (no rasteriser dependency).
//!
//! - [`line_chart`]: several series, e.g. ε–accuracy or risk–coverage curves;
//! - [`reliability_diagram`]: accuracy bars per confidence bin, gaps and the diagonal;
//! - [`heat_map`]: e.g. accuracy per corruption × severity, with a colour legend;
//! - [`scatter_chart`]: e.g. accuracy vs latency with bubble area ∝ model size;
//! - [`png`]: the reliability diagram and example-image grids as PNG.
//!
//! Every text that comes from the caller is escaped; every number is checked finite.

mod heatmap;
mod line;
pub mod png;
mod reliability;
mod scatter;
pub mod svg;

pub use heatmap::{heat_map, HeatMap};
pub use line::{line_chart, LineChart, Series};
pub use reliability::reliability_diagram;
pub use scatter::{scatter_chart, ScatterChart, ScatterPoint};

#[cfg(test)]
mod tests;
