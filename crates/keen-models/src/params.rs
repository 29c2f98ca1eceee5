//! Parameter counting as PyTorch and timm report it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// Number of trainable parameters: what `sum(p.numel() for p in model.parameters())` counts in
/// PyTorch. burn's `num_params` also counts batch-norm running statistics, which PyTorch keeps
/// as buffers.
pub fn trainable_params<M: Module>(model: &M) -> usize {
    let mut counter = TrainableCounter {
        path: Vec::new(),
        total: 0,
    };
    model.visit(&mut counter);
    counter.total
}

struct TrainableCounter {
    path: Vec<String>,
    total: usize,
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
        if !is_running_stat {
            self.total += param.shape().num_elements();
        }
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
}
