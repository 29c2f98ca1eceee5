//! Parameter counting as PyTorch and timm report it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// Number of trainable parameters: what `sum(p.numel() for p in model.parameters())` counts in
/// PyTorch. burn's `num_params` also counts batch-norm running statistics, which PyTorch keeps
/// as buffers.
pub fn trainable_params<M: Module>(model: &M) -> usize {
    count_trainable(model, false)
}

/// Trainable parameters that are not exactly zero: what pruning leaves.
pub fn nonzero_trainable_params<M: Module>(model: &M) -> usize {
    count_trainable(model, true)
}

fn count_trainable<M: Module>(model: &M, nonzero_only: bool) -> usize {
    let mut counter = TrainableCounter {
        path: Vec::new(),
        total: 0,
        nonzero_only,
    };
    model.visit(&mut counter);
    counter.total
}

struct TrainableCounter {
    path: Vec<String>,
    total: usize,
    nonzero_only: bool,
}

impl ModuleVisitor for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let is_running_stat = self
            .path
            .last()
            .is_some_and(|name| name.starts_with("running_"));
        if is_running_stat {
            return;
        }
        self.total += if self.nonzero_only {
            param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map(|values| values.iter().filter(|v| **v != 0.0).count())
                .unwrap_or(0)
        } else {
            param.shape().num_elements()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::BatchNormConfig;

    #[test]
    fn batch_norm_counts_scale_and_shift_only() {
        let bn = BatchNormConfig::new(8).init(&Device::flex());
        assert_eq!(trainable_params(&bn), 16);
        assert_eq!(
            bn.num_params(),
            32,
            "burn also counts running mean and variance"
        );
    }

    #[test]
    fn nonzero_count_skips_zeros_and_running_statistics() {
        let mut bn = BatchNormConfig::new(8).init(&Device::flex());
        // gamma starts at ones, beta at zeros; running variance is ones but is not a parameter.
        assert_eq!(nonzero_trainable_params(&bn), 8);
        bn.beta = Param::from_tensor(Tensor::ones([8], &Device::flex()));
        assert_eq!(nonzero_trainable_params(&bn), 16);
    }
}
