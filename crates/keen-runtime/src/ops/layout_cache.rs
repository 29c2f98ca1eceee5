//! The implicit-im2col layout of a convolution, cached per input size: fp32 and INT8
//! convolutions build it the same way and keep it across calls.

use std::sync::{Arc, Mutex};

use crate::error::{op_bail, OpResult};
use crate::kernels::implicit::ImplicitIm2col;
use crate::kernels::reference::ConvGeometry;

/// The layout for the last input size seen.
#[derive(Debug, Default)]
pub(crate) struct LayoutCache(Mutex<Option<Arc<ImplicitIm2col>>>);

impl LayoutCache {
    /// Where each GEMM depth index reads for `g`'s input size: built on the first call (which
    /// allocates), reused while the input size stays the same.
    pub(crate) fn get(&self, g: &ConvGeometry) -> OpResult<Arc<ImplicitIm2col>> {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(layout) = cached.as_ref().filter(|l| l.in_hw() == g.in_hw) {
            return Ok(layout.clone());
        }
        let Some(layout) = ImplicitIm2col::new(g, g.in_channels / g.groups) else {
            op_bail!("internal error: the kernel does not fit the padded input");
        };
        let layout = Arc::new(layout);
        *cached = Some(layout.clone());
        Ok(layout)
    }
}
