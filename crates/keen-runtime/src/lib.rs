//! keen-runtime: the deployable inference engine.
//!
//! Owns: keen's model file format, its validation, and the fp32 and INT8 kernels that run it.
//! Must not touch: burn, training, datasets. A program that links only this crate stays small.
