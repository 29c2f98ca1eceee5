//! A class score's gradient with respect to a feature map inside the graph: what Grad-CAM
//! reads. burn keeps gradients only for leaf tensors, so the graph runs in two parts: up to
//! the chosen value without autodiff, then from that value (made a leaf that requires a
//! gradient) to the logits. Values before it that later nodes read (residual inputs) do not
//! depend on it, so holding them constant leaves the gradient unchanged.

use burn::module::Module;
use burn::prelude::*;

use super::net::{infer_shapes, GraphNet, Value};
use super::ValueId;
pub use crate::feature_map::ClassGradient;
use crate::feature_map::{check_classes, differentiate_from};
use crate::{ImageClassifier, ModelError};

impl GraphNet {
    /// The values that are feature maps (`[channels, h, w]`) before the pooled features, with
    /// the names of the nodes that write them.
    pub fn feature_maps(&self) -> Vec<(ValueId, &str)> {
        let def = self.graph();
        let Ok(shapes) = infer_shapes(def) else {
            return Vec::new();
        };
        (1..=def.features.min(def.nodes.len()))
            .filter(|&v| shapes[v].len() == 3)
            .map(|v| (v, def.nodes[v - 1].name.as_str()))
            .collect()
    }

    /// The feature map Grad-CAM reads unless told otherwise: the last one before the pooled
    /// features, the output of the last convolutional stage.
    pub fn last_feature_map(&self) -> Option<ValueId> {
        self.feature_maps().last().map(|&(v, _)| v)
    }

    /// The feature map written by the node called `name`.
    pub fn feature_map_named(&self, name: &str) -> Result<ValueId, ModelError> {
        let maps = self.feature_maps();
        maps.iter()
            .find(|(_, n)| *n == name)
            .map(|&(v, _)| v)
            .ok_or_else(|| ModelError::BadConfig {
                reason: format!(
                    "no feature map named '{name}'; layers with feature maps: {}",
                    maps.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                ),
            })
    }

    /// Runs `images` (on a device without autodiff) in inference mode and differentiates
    /// logit `classes[i]` of image `i` with respect to feature map `value`.
    pub fn class_gradient(
        &self,
        images: Tensor<4>,
        value: ValueId,
        classes: &[usize],
    ) -> Result<ClassGradient, ModelError> {
        let bad = |reason: String| ModelError::BadConfig { reason };
        if !self.feature_maps().iter().any(|&(v, _)| v == value) {
            return Err(bad(format!(
                "value {value} is not a feature map of the graph"
            )));
        }
        check_classes(images.dims()[0], classes, self.num_classes())?;
        let net = self.valid();
        let def = net.graph();
        let mut values: Vec<Option<Value>> = vec![None; def.nodes.len() + 1];
        values[0] = Some(Value::Map(images.inner()));
        net.run(&mut values, 0..value, true, &mut |_, _| {});
        let map = match values[value].take() {
            Some(Value::Map(t)) => t,
            _ => {
                return Err(bad(format!(
                    "value {value} was not computed as a feature map"
                )))
            }
        };
        differentiate_from(map, classes, |activations| {
            values[value] = Some(Value::Map(activations));
            net.run(&mut values, value..def.output, true, &mut |_, _| {});
            match values[def.output].take() {
                Some(Value::Vector(t)) => Ok(t),
                Some(Value::Map(t)) => Ok(t.flatten::<2>(1, 3)),
                None => Err(bad("the graph computed no logits".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{GraphBuilder, OpDef};
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::LinearConfig;
    use burn::tensor::TensorData;

    fn param<const D: usize>(
        values: Vec<f32>,
        shape: [usize; D],
        device: &Device,
    ) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// conv 1×1 → [x, 1 − x], ReLU, global average pool, class 0 = ch0 − ch1, class 1 the
    /// opposite: class 0 is "bright", class 1 "dark".
    fn bright_or_dark(device: &Device) -> GraphNet {
        let mut conv = Conv2dConfig::new([1, 2], [1, 1]).init(device);
        conv.weight = param(vec![1.0, -1.0], [2, 1, 1, 1], device);
        conv.bias = Some(param(vec![0.0, 1.0], [2], device));
        let mut linear = LinearConfig::new(2, 2).init(device);
        linear.weight = param(vec![1.0, -1.0, -1.0, 1.0], [2, 2], device);
        linear.bias = Some(param(vec![0.0, 0.0], [2], device));
        let mut g = GraphBuilder::new([1, 4, 4]);
        let x = g.input();
        let x = g.conv("conv", &conv, x);
        let x = g.op("relu", OpDef::Relu, &[x]);
        let features = g.op("pool", OpDef::GlobalAvgPool, &[x]);
        let logits = g.linear("fc", &linear, features);
        g.finish(features, logits)
    }

    #[test]
    fn grad_cam_of_a_bright_left_half_lights_the_left_half() {
        let device = Device::flex();
        let net = bright_or_dark(&device);
        assert_eq!(net.last_feature_map(), Some(2));
        assert_eq!(net.feature_map_named("conv").expect("conv"), 1);
        assert!(net.feature_map_named("fc").is_err());
        // The left two columns are lit: the image is "bright" because of its left half.
        let pixels: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [1, 1, 4, 4]), &device);
        let value = net.last_feature_map().expect("map");
        for (class, lit_left) in [(0, true), (1, false)] {
            let grad = net
                .class_gradient(images.clone(), value, &[class])
                .expect("gradient");
            let to_vec = |t: Tensor<4>| {
                t.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32")
            };
            // ∂(mean ch0 − mean ch1)/∂A = ±1/16 everywhere.
            let gradients = to_vec(grad.gradients);
            let sign = if class == 0 { 1.0 } else { -1.0 };
            assert!(gradients[..16]
                .iter()
                .all(|g| (g - sign / 16.0).abs() < 1e-6));
            let (a, g) = (to_vec(grad.activations), gradients);
            // Grad-CAM by hand: ReLU(Σ_k mean(g_k)·A_k).
            let cam: Vec<f32> = (0..16)
                .map(|i| {
                    let alpha = |k: usize| g[k * 16..(k + 1) * 16].iter().sum::<f32>() / 16.0;
                    (alpha(0) * a[i] + alpha(1) * a[16 + i]).max(0.0)
                })
                .collect();
            for (i, &v) in cam.iter().enumerate() {
                let left = i % 4 < 2;
                assert_eq!(
                    v > 0.0,
                    left == lit_left,
                    "class {class}, pixel {i}: {cam:?}"
                );
            }
        }
        let images = Tensor::<4>::zeros([2, 1, 4, 4], &device);
        assert!(net.class_gradient(images.clone(), 2, &[0]).is_err());
        assert!(net.class_gradient(images.clone(), 2, &[0, 2]).is_err());
        assert!(net.class_gradient(images, 3, &[0, 1]).is_err());
    }
}
