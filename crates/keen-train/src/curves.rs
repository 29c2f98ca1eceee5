//! Learning curves as a self-contained SVG: loss on the left, accuracy on the right.

use crate::trainer::EpochRecord;

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 240.0;
const MARGIN: f64 = 40.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<(f64, f64)>,
}

fn panel(title: &str, x0: f64, series: &[Series], y_range: (f64, f64), max_epoch: f64) -> String {
    let (lo, hi) = y_range;
    let span = if hi - lo < 1e-9 { 1.0 } else { hi - lo };
    let px = |epoch: f64| x0 + MARGIN + (epoch / max_epoch.max(1.0)) * (WIDTH - 2.0 * MARGIN);
    let py = |v: f64| HEIGHT - MARGIN - ((v - lo) / span) * (HEIGHT - 2.0 * MARGIN);
    let mut svg = format!(
        "<text x='{:.1}' y='20' font-size='13' font-weight='bold'>{title}</text>\n\
         <line x1='{:.1}' y1='{:.1}' x2='{:.1}' y2='{:.1}' stroke='#444'/>\n\
         <line x1='{:.1}' y1='{:.1}' x2='{:.1}' y2='{:.1}' stroke='#444'/>\n\
         <text x='{:.1}' y='{:.1}' font-size='10'>{hi:.3}</text>\n\
         <text x='{:.1}' y='{:.1}' font-size='10'>{lo:.3}</text>\n\
         <text x='{:.1}' y='{:.1}' font-size='10'>epoch</text>\n",
        x0 + MARGIN,
        px(0.0),
        py(lo),
        px(max_epoch),
        py(lo),
        px(0.0),
        py(lo),
        px(0.0),
        py(hi),
        x0 + 2.0,
        py(hi) + 4.0,
        x0 + 2.0,
        py(lo),
        px(max_epoch) - 30.0,
        HEIGHT - 10.0,
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .map(|&(e, v)| format!("{:.1},{:.1}", px(e), py(v)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill='none' stroke='{}' stroke-width='2' points='{}'/>\n\
             <text x='{:.1}' y='{:.1}' font-size='11' fill='{}'>{}</text>\n",
            s.color,
            points.join(" "),
            x0 + WIDTH - MARGIN - 70.0,
            40.0 + 14.0 * i as f64,
            s.color,
            s.name
        ));
    }
    svg
}

fn range(series: &[Series]) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.values.iter().map(|&(_, v)| v));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

/// An SVG of training and validation loss and accuracy per epoch.
pub fn learning_curves_svg(model: &str, history: &[EpochRecord]) -> String {
    let max_epoch = history.len() as f64;
    let pick = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let losses = [
        Series {
            name: "train loss",
            color: "#1f77b4",
            values: pick(&|r| Some(r.train_loss)),
        },
        Series {
            name: "val loss",
            color: "#ff7f0e",
            values: pick(&|r| r.val_loss),
        },
    ];
    let accuracies = [
        Series {
            name: "train acc",
            color: "#1f77b4",
            values: pick(&|r| Some(r.train_accuracy)),
        },
        Series {
            name: "val acc",
            color: "#ff7f0e",
            values: pick(&|r| r.val_accuracy),
        },
    ];
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <title>{model} learning curves</title>\n{}{}</svg>\n",
        2.0 * WIDTH,
        HEIGHT,
        panel(&format!("{model}: loss"), 0.0, &losses, range(&losses), max_epoch),
        panel(&format!("{model}: accuracy"), WIDTH, &accuracies, range(&accuracies), max_epoch),
    )
}
