//! keen-robust: models that know when they are wrong.
//!
//! Owns: the corruption benchmark (mCE), out-of-distribution scores and metrics, calibration
//! metrics and temperature scaling, adversarial attacks, and the report card.
//! Must not touch: dataset formats (keen-data), architectures (keen-models), the CLI.
