//! Post-training quantization (PTQ) and the set-up of quantization-aware training (QAT).
//!
//! Both start the same way: the model is lowered to a graph, batch norms are folded into the
//! convolutions, and the range of every activation the INT8 runtime will hold is calibrated on a
//! few batches. PTQ stops there; QAT then trains through fake quantization, updating the ranges
//! with an observer. Weights always use per-output-channel symmetric ranges from their own
//! extremes.

use std::sync::Arc;

use burn::prelude::*;
use keen_data::dataset::ImageDataset;
use keen_data::loader::{epoch_batches, LoaderConfig, Normalization};
use keen_models::graph::quant::{affine_qparams, QuantState};
use keen_models::graph::{quant_points, GraphNet, OpDef};
use keen_models::KeenModel;
use keen_train::evaluate;
use keen_train::tensors::images_tensor;
use serde::{Deserialize, Serialize};

use crate::fold::fold_batch_norms;
use crate::CompressError;

/// How an activation's range is chosen from calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The given percentile at the top (and its mirror at the bottom), e.g. 99.99: ignores rare
    /// outliers that would otherwise stretch the grid.
    Percentile {
        /// Percentile in (50, 100].
        percentile: f32,
    },
    /// The clipping range that minimises the mean squared quantization error of the sample.
    Mse,
}

/// Calibration settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationConfig {
    /// Batches of training images to calibrate on.
    pub batches: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// How ranges are chosen.
    pub method: RangeMethod,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            batches: 8,
            batch_size: 128,
            method: RangeMethod::MinMax,
        }
    }
}

/// Lowers `model` to a graph and folds its batch norms: the form quantization works on.
pub fn prepare(model: &KeenModel, input: [usize; 3]) -> Result<GraphNet, CompressError> {
    let graph = model.valid().to_graph(input)?;
    Ok(fold_batch_norms(graph).0)
}

/// Up to this many values of each activation are kept for percentile and MSE ranges.
const SAMPLE_PER_POINT: usize = 1 << 18;

/// Calibrates the range of every quantization point of `graph` on `indices` of `dataset`.
pub fn calibrate(
    graph: &GraphNet,
    dataset: &Arc<ImageDataset>,
    indices: &[usize],
    normalization: &Normalization,
    config: &CalibrationConfig,
    device: &Device,
) -> Vec<Option<[f32; 2]>> {
    let points = quant_points(graph.graph());
    let float = graph
        .clone()
        .with_quant(QuantState::new(points.len()))
        .valid();
    let mut minmax: Vec<Option<[f32; 2]>> = vec![None; points.len()];
    let mut samples: Vec<Vec<f32>> = vec![Vec::new(); points.len()];
    let keep_samples = config.method != RangeMethod::MinMax;
    let loader = LoaderConfig::eval(config.batch_size, normalization.clone());
    let take = indices.len().min(config.batches * config.batch_size);
    for batch in epoch_batches(dataset, &indices[..take], &loader, 0) {
        let images = images_tensor(batch.images, batch.shape, device);
        float.forward_visit(images, &mut |value, tensor| {
            if !points[value] {
                return;
            }
            let values = match tensor {
                keen_models::graph::Value::Map(t) => t.clone().flatten::<1>(0, 3),
                keen_models::graph::Value::Vector(t) => t.clone().flatten::<1>(0, 1),
            };
            let values = keen_train::tensors::to_f32_vec(values);
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            minmax[value] = Some(match minmax[value] {
                Some([a, b]) => [a.min(lo), b.max(hi)],
                None => [lo, hi],
            });
            if keep_samples {
                let room = SAMPLE_PER_POINT.saturating_sub(samples[value].len());
                let stride = (values.len() / room.max(1)).max(1);
                samples[value].extend(values.iter().step_by(stride).take(room));
            }
        });
    }
    minmax
        .into_iter()
        .zip(samples)
        .map(|(range, sample)| {
            let range = range?;
            Some(match config.method {
                RangeMethod::MinMax => range,
                RangeMethod::Percentile { percentile } => percentile_range(sample, percentile),
                RangeMethod::Mse => mse_range(&sample, range),
            })
        })
        .collect()
}

/// The `[100 − p, p]` percentiles of `values`.
pub fn percentile_range(mut values: Vec<f32>, percentile: f32) -> [f32; 2] {
    if values.is_empty() {
        return [0.0, 0.0];
    }
    values.sort_by(f32::total_cmp);
    let at = |q: f32| {
        let pos = (q / 100.0).clamp(0.0, 1.0) * (values.len() - 1) as f32;
        values[pos.round() as usize]
    };
    [at(100.0 - percentile), at(percentile)]
}

/// Mean squared error of fake-quantizing `values` to affine UINT8 over `range`.
pub fn quantization_mse(values: &[f32], range: [f32; 2]) -> f64 {
    let (scale, zero_point) = affine_qparams(range);
    let sum: f64 = values
        .iter()
        .map(|&v| {
            let q = ((v / scale).round() + zero_point).clamp(0.0, 255.0);
            let back = (q - zero_point) * scale;
            ((back - v) as f64).powi(2)
        })
        .sum();
    sum / values.len().max(1) as f64
}

/// The range, among shrinkings of each end of `full` towards zero, with the least quantization
/// MSE on `values`: a geometric grid per end, searched one end at a time (two rounds).
pub fn mse_range(values: &[f32], full: [f32; 2]) -> [f32; 2] {
    let factors: Vec<f32> = (0..60).map(|k| 0.9f32.powi(k)).collect();
    let mut best = full;
    let mut best_error = quantization_mse(values, full);
    for _round in 0..2 {
        for end in [1usize, 0] {
            for &factor in &factors {
                let mut candidate = best;
                candidate[end] = full[end] * factor;
                let error = quantization_mse(values, candidate);
                if error < best_error {
                    best_error = error;
                    best = candidate;
                }
            }
        }
    }
    best
}

/// Turns fake quantization on with `ranges`; `observe` lets QAT keep updating them.
pub fn enable(graph: GraphNet, ranges: Vec<Option<[f32; 2]>>, observe: bool) -> GraphNet {
    let state = QuantState::enabled(ranges, observe);
    graph.with_quant(state)
}

/// The nodes whose weights are quantized: convolutions and linear layers.
pub fn quantizable_nodes(graph: &GraphNet) -> Vec<usize> {
    graph
        .graph()
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, OpDef::Conv2d { .. } | OpDef::Linear { .. }))
        .map(|(i, _)| i)
        .collect()
}

/// One layer's cost of being quantized alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerSensitivity {
    /// Node index.
    pub node: usize,
    /// Node name.
    pub name: String,
    /// Accuracy with only this layer (and the input) quantized.
    pub accuracy: f64,
    /// Float accuracy minus that.
    pub drop: f64,
}

/// What a sensitivity scan found and decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensitivityReport {
    /// Accuracy in float.
    pub float_accuracy: f64,
    /// Accuracy with everything quantized.
    pub quantized_accuracy: f64,
    /// Per layer, costliest first.
    pub layers: Vec<LayerSensitivity>,
    /// Layers kept in float to meet the allowed drop.
    pub kept_float: Vec<String>,
    /// Accuracy after keeping those in float.
    pub final_accuracy: f64,
}

fn with_float_nodes(graph: &GraphNet, float_nodes: Vec<usize>) -> GraphNet {
    let mut state = graph.quant_state().detached();
    state.config.float_nodes = float_nodes;
    graph.clone().with_quant(state)
}

/// Quantizes each layer alone to measure its accuracy cost on `indices`; with `max_drop`, keeps
/// the costliest layers in float until the whole model's drop is at most `max_drop`. Returns
/// the graph with those layers in float, and the report.
pub fn sensitivity_scan(
    graph: &GraphNet,
    dataset: &Arc<ImageDataset>,
    indices: &[usize],
    normalization: &Normalization,
    max_drop: Option<f64>,
    device: &Device,
) -> (GraphNet, SensitivityReport) {
    let accuracy = |g: &GraphNet| {
        evaluate(
            &KeenModel::Graph(g.clone()),
            dataset,
            indices,
            normalization,
            256,
            device,
        )
        .accuracy
    };
    let layers_all = quantizable_nodes(graph);
    let mut float_graph = graph.clone();
    let mut off = graph.quant_state().detached();
    off.config.enabled = false;
    float_graph = float_graph.with_quant(off);
    let float_accuracy = accuracy(&float_graph);
    let quantized_accuracy = accuracy(graph);
    let mut layers: Vec<LayerSensitivity> = layers_all
        .iter()
        .map(|&node| {
            let others: Vec<usize> = (0..graph.graph().nodes.len())
                .filter(|&n| n != node && !is_activation_of(graph, n, node))
                .collect();
            let acc = accuracy(&with_float_nodes(graph, others));
            LayerSensitivity {
                node,
                name: graph.graph().nodes[node].name.clone(),
                accuracy: acc,
                drop: float_accuracy - acc,
            }
        })
        .collect();
    layers.sort_by(|a, b| b.drop.total_cmp(&a.drop));
    let mut kept = Vec::new();
    let mut current = graph.clone();
    let mut final_accuracy = quantized_accuracy;
    if let Some(max_drop) = max_drop {
        for layer in &layers {
            if float_accuracy - final_accuracy <= max_drop {
                break;
            }
            kept.push(layer.node);
            current = with_float_nodes(graph, kept.clone());
            final_accuracy = accuracy(&current);
        }
    }
    let report = SensitivityReport {
        float_accuracy,
        quantized_accuracy,
        kept_float: kept
            .iter()
            .map(|&n| graph.graph().nodes[n].name.clone())
            .collect(),
        layers,
        final_accuracy,
    };
    (current, report)
}

/// Whether node `n` is an activation reading `layer`'s output.
fn is_activation_of(graph: &GraphNet, n: usize, layer: usize) -> bool {
    let node = &graph.graph().nodes[n];
    node.op.is_activation() && node.inputs[0] == layer + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_ignores_outliers_and_minmax_keeps_them() {
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(1000.0);
        let [lo, hi] = percentile_range(values.clone(), 99.9);
        assert!((0.0..0.01).contains(&lo), "{lo}");
        assert!((0.98..1.01).contains(&hi), "{hi}");
    }

    #[test]
    fn mse_range_beats_minmax_with_an_outlier_and_never_loses() {
        let mut values: Vec<f32> = (0..5_000).map(|i| (i as f32 / 5_000.0) - 0.5).collect();
        values.push(40.0);
        let full = [-0.5, 40.0];
        let chosen = mse_range(&values, full);
        assert!(quantization_mse(&values, chosen) < quantization_mse(&values, full));
        let plain: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let chosen = mse_range(&plain, [0.0, 1.0]);
        assert!(quantization_mse(&plain, chosen) <= quantization_mse(&plain, [0.0, 1.0]));
    }

    proptest::proptest! {
        #[test]
        fn round_trip_error_is_at_most_half_a_step_inside_the_range(
            lo in -10.0f32..0.0, width in 0.01f32..20.0, t in 0.0f32..1.0
        ) {
            let range = [lo, lo + width];
            let (scale, _) = affine_qparams(range);
            let (a, b) = (range[0].min(0.0), range[1].max(0.0));
            let v = a + t * (b - a);
            let error = quantization_mse(&[v], range).sqrt() as f32;
            proptest::prop_assert!(error <= scale / 2.0 + 1e-5 * b.abs().max(a.abs()), "{v}: {error} vs {scale}");
        }
    }
}
