//! keen-robust: models that know when they are wrong.
//!
//! Owns: the corruption benchmark (mCE), out-of-distribution scores and metrics, calibration
//! metrics and temperature scaling, adversarial attacks, explanations (attention rollout,
//! Grad-CAM), and the report card.
//! Must not touch: dataset formats (keen-data), architectures (keen-models), the CLI.
//!
//! This part is free of burn: every metric takes plain slices — row-major `[n, classes]`
//! `f32` logits, `u32` labels, `f32` scores or features — checks them, and returns a
//! serde-serialisable result or a [`RobustError`]; nothing panics on user data.
//! - [`corruption_benchmark`]: CE, mCE, relative CE and relative mCE against a baseline;
//! - [`ood`]: MSP, energy, ODIN (temperature and input perturbation, over any model that gives
//!   input gradients), MaxLogit and Mahalanobis scores, and AUROC, AUPR-In/Out and FPR at 95%
//!   TPR;
//! - [`calibration`]: ECE, MCE, NLL, Brier, reliability bins, temperature scaling,
//!   risk–coverage curves and abstention thresholds;
//! - [`attack`]: FGSM, PGD and APGD-CE in pixel space over any model that gives input
//!   gradients, and the gradient-masking checks;
//! - [`charts`]: self-contained SVG charts and PNG renders for the reports;
//! - [`explain`]: attention rollout, Grad-CAM and heat-map overlays (where a model looked).
//!
//! The corruptions themselves live in `keen_data::corruptions`.

#![warn(missing_docs)]

pub mod attack;
pub mod calibration;
pub mod charts;
pub mod corruption_benchmark;
pub mod error;
pub mod explain;
pub mod logits;
pub mod ood;
pub mod report;

pub use calibration::{calibration_report, CalibrationReport, ReliabilityBin};
pub use corruption_benchmark::{corruption_benchmark, CorruptionBenchmark, ErrorTable};
pub use error::RobustError;
pub use logits::{error_rate, Logits};
pub use ood::{ood_metrics, MahalanobisDetector, OodMetrics};
