//! Every chart parses as XML and holds the elements its reader needs.

use super::png::{corruption_grid, encode_png, image_grid, reliability_png};
use super::*;
use crate::calibration::reliability_bins;

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid SVG ({e}):\n{svg}"))
}

fn count(doc: &roxmltree::Document<'_>, tag: &str, class: Option<&str>) -> usize {
    doc.descendants()
        .filter(|n| n.has_tag_name(tag) && class.is_none_or(|c| n.attribute("class") == Some(c)))
        .count()
}

fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

#[test]
fn line_chart_has_one_polyline_per_series_and_escapes_names() {
    let chart = LineChart {
        title: "Accuracy vs ε <PGD & FGSM>".into(),
        x_label: "ε".into(),
        y_label: "accuracy".into(),
        series: vec![
            Series {
                name: "cnn \"small\"".into(),
                points: vec![(0.0, 0.9), (0.01, 0.6), (0.03, 0.2)],
            },
            Series {
                name: "resnet8".into(),
                points: vec![(0.0, 0.92), (0.01, 0.7)],
            },
        ],
        y_range: Some((0.0, 1.0)),
    };
    let svg = line_chart(&chart).expect("renders");
    let doc = parse(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(count(&doc, "polyline", None), 2);
    assert_eq!(count(&doc, "circle", Some("point")), 5);
    assert_eq!(count(&doc, "rect", Some("legend-swatch")), 2);
    let t = texts(&doc);
    assert!(
        t.contains(&"Accuracy vs ε <PGD & FGSM>".to_string()),
        "{t:?}"
    );
    assert!(t.contains(&"cnn \"small\"".to_string()));
    assert!(svg.contains("&lt;PGD &amp; FGSM&gt;"));
    let bad = LineChart {
        series: vec![Series {
            name: "x".into(),
            points: vec![(f64::NAN, 0.0)],
        }],
        ..chart.clone()
    };
    assert!(line_chart(&bad).is_err());
    assert!(line_chart(&LineChart {
        series: vec![],
        ..chart
    })
    .is_err());
}

#[test]
fn reliability_diagram_draws_bars_gaps_and_the_diagonal() {
    let bins = reliability_bins(
        &[0.95, 0.9, 0.55, 0.7, 0.72],
        &[true, false, true, true, false],
        15,
    )
    .expect("bins");
    let svg = reliability_diagram(&bins, "cnn-small").expect("renders");
    let doc = parse(&svg);
    // Occupied bins: 8 (0.55), 10 (0.7, 0.72), 13 (0.9), 14 (0.95).
    assert_eq!(count(&doc, "rect", Some("bar")), 4);
    assert_eq!(count(&doc, "rect", Some("gap")), 4);
    assert_eq!(count(&doc, "line", Some("diagonal")), 1);
    assert!(texts(&doc).iter().any(|t| t.starts_with("gap (ECE ")));
    assert!(reliability_diagram(&[], "x").is_err());
}

#[test]
fn heat_map_has_every_cell_labels_and_a_legend() {
    let map = HeatMap {
        title: "Accuracy under corruption".into(),
        row_labels: vec!["gaussian_noise".into(), "fog".into(), "a<b".into()],
        column_labels: (1..=5).map(|s| s.to_string()).collect(),
        values: vec![
            vec![0.9, 0.8, 0.6, 0.4, 0.2],
            vec![0.9; 5],
            vec![0.0, 0.25, 0.5, 0.75, 1.0],
        ],
        value_range: (0.0, 1.0),
        value_label: "accuracy".into(),
    };
    let svg = heat_map(&map).expect("renders");
    let doc = parse(&svg);
    assert_eq!(count(&doc, "rect", Some("cell")), 15);
    assert_eq!(count(&doc, "text", Some("row-label")), 3);
    assert_eq!(count(&doc, "text", Some("column-label")), 5);
    assert_eq!(count(&doc, "rect", Some("legend-bar")), 1);
    assert_eq!(count(&doc, "stop", None), 11);
    assert!(texts(&doc).contains(&"a<b".to_string()));
    let ragged = HeatMap {
        values: vec![vec![0.5; 5], vec![0.5; 4], vec![0.5; 5]],
        ..map.clone()
    };
    assert!(matches!(
        heat_map(&ragged),
        Err(crate::RobustError::LengthMismatch { .. })
    ));
    let short = HeatMap {
        values: vec![vec![0.5; 5]],
        ..map
    };
    assert!(heat_map(&short).is_err());
}

#[test]
fn scatter_chart_has_a_bubble_per_point_and_a_size_legend() {
    let point = |label: &str, x: f64, y: f64, size: f64| ScatterPoint {
        label: label.into(),
        x,
        y,
        size,
    };
    let chart = ScatterChart {
        title: "Accuracy vs latency".into(),
        x_label: "latency (ms)".into(),
        y_label: "accuracy".into(),
        size_label: "size (bytes)".into(),
        points: vec![
            point("cnn-small", 0.4, 0.915, 1.6e6),
            point("resnet8", 0.9, 0.90, 3.1e5),
            point("vit & co", 1.3, 0.89, 5.5e5),
        ],
    };
    let svg = scatter_chart(&chart).expect("renders");
    let doc = parse(&svg);
    assert_eq!(count(&doc, "circle", Some("bubble")), 3);
    assert_eq!(count(&doc, "text", Some("point-label")), 3);
    assert_eq!(count(&doc, "circle", Some("legend-bubble")), 1);
    assert!(texts(&doc).contains(&"vit & co".to_string()));
    let negative = ScatterChart {
        points: vec![point("x", 1.0, 1.0, -1.0)],
        ..chart.clone()
    };
    assert!(scatter_chart(&negative).is_err());
    assert!(scatter_chart(&ScatterChart {
        points: vec![],
        ..chart
    })
    .is_err());
}

#[test]
fn png_renders_have_the_expected_size_and_encode() {
    let bins = reliability_bins(&[0.95, 0.55], &[true, false], 15).expect("bins");
    let img = reliability_png(&bins, 200).expect("renders");
    assert_eq!(img.dimensions(), (200, 200));
    // Something blue (an accuracy bar) was drawn.
    assert!(img.pixels().any(|p| p.0 == [0x00, 0x72, 0xB2]));
    let bytes = encode_png(&img).expect("encodes");
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(reliability_png(&bins, 8).is_err());

    let gray = vec![vec![0u8, 255, 128, 64]; 3];
    let grid = image_grid(&gray, [1, 2, 2], 2, 3).expect("grid");
    // 2 columns of 6 px plus 3 gaps; 2 rows likewise.
    assert_eq!(grid.dimensions(), (2 * 6 + 3 * 2, 2 * 6 + 3 * 2));
    assert_eq!(grid.get_pixel(2 + 3, 2).0, [255, 255, 255]);
    assert_eq!(grid.get_pixel(2, 2).0, [0, 0, 0]);
    assert!(image_grid(&gray, [3, 2, 2], 2, 3).is_err());
    assert!(image_grid(&gray, [1, 2, 2], 0, 3).is_err());

    let rgb: Vec<u8> = (0..3 * 8 * 8).map(|i| (i * 5 % 256) as u8).collect();
    let all = corruption_grid(&rgb, [3, 8, 8], 0, 2).expect("grid");
    assert_eq!(all.dimensions(), (6 * 18 + 2, 15 * 18 + 2));
    assert!(corruption_grid(&rgb, [3, 8, 7], 0, 2).is_err());
}
