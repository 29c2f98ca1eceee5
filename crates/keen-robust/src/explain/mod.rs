//! Where a model looked: heat maps over the input image.
//!
//! - [`rollout`]: attention rollout for transformers (Abnar & Zuidema 2020);
//! - [`grad_cam`]: Grad-CAM for convolutional networks (Selvaraju et al. 2017);
//! - [`overlay`]: a heat map colour-mapped and blended over the upscaled input, as PNG.
//!
//! Like the rest of keen-robust this part is free of burn: the model's attention
//! probabilities, activations and gradients arrive as plain `f32` slices (keen-models
//! computes them), and every function checks their lengths and returns a [`RobustError`]
//! rather than panicking on them.
//!
//! [`RobustError`]: crate::RobustError

pub mod grad_cam;
pub mod overlay;
pub mod rollout;

pub use grad_cam::grad_cam;
pub use overlay::{heat_overlay, jet, OverlayOptions};
pub use rollout::{attention_rollout, patch_map, AttentionLayer};
