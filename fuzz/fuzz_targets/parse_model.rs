//! Feeds arbitrary bytes to the model loader: it must return `Ok` or `Err`, never panic,
//! overflow or allocate beyond the input's size. Models that load are also run once on a
//! small input, which exercises shape inference with a real batch.
#![no_main]

use keen_runtime::{Model, Tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        if let Some(input) = model.input_shapes().first() {
            let shape: Vec<usize> = input.iter().map(|d| d.unwrap_or(1)).collect();
            let numel: usize = shape.iter().product();
            // Small inputs only: attention over T tokens needs T² scores.
            if numel <= 1 << 12 {
                let _ = model.run(&Tensor::zeros(shape));
            }
        }
    }
});
