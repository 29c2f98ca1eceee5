//! The stored tensors of a keen-runtime file, located by the file format's documented framing
//! (`keen_runtime::format`): the JSON header at byte 20, the data section at the next multiple of
//! 64 after it, each tensor at `data_start + offset`. The file has been validated by
//! `keen_runtime::Model::from_bytes` first, so these checks only guard against a disagreement.

use std::collections::HashMap;

use keen_runtime::format::{ALIGNMENT, MAGIC};
use keen_runtime::{DType, Header};

use crate::error::{OnnxError, Result};

/// Byte offset of the JSON header (magic, version, header length come before it).
const HEADER_OFFSET: usize = 20;

/// One stored tensor: dtype, shape and its little-endian bytes inside the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub raw: &'a [u8],
}

impl Stored<'_> {
    /// The elements as f32 (only for f32 tensors).
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return Err(OnnxError::Tensor {
                name: name.to_string(),
                reason: format!("expected f32, found {}", self.dtype),
            });
        }
        Ok(self
            .raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Every stored tensor of `bytes` (a keen-runtime file whose header is `header`), by name.
pub(crate) fn stored_tensors<'a>(
    bytes: &'a [u8],
    header: &'a Header,
) -> Result<HashMap<&'a str, Stored<'a>>> {
    let bad = |name: &str, reason: String| OnnxError::Tensor {
        name: name.to_string(),
        reason,
    };
    if bytes.len() < HEADER_OFFSET || &bytes[..8] != MAGIC {
        return Err(bad("<file>", "not a keen-runtime file".into()));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let header_end = (HEADER_OFFSET as u64).saturating_add(u64::from_le_bytes(len));
    let data_start = header_end.div_ceil(ALIGNMENT).saturating_mul(ALIGNMENT);
    let mut out = HashMap::with_capacity(header.tensors.len());
    for def in &header.tensors {
        let start = data_start.saturating_add(def.offset);
        let end = start.saturating_add(def.length);
        let raw = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| {
                bad(
                    &def.name,
                    format!("bytes {start}..{end} lie outside the file"),
                )
            })?;
        let numel: usize = def.shape.iter().product();
        if raw.len() != numel * def.dtype.size_bytes() {
            return Err(bad(
                &def.name,
                format!("{} bytes for {} {:?}", raw.len(), def.dtype, def.shape),
            ));
        }
        out.insert(
            def.name.as_str(),
            Stored {
                dtype: def.dtype,
                shape: &def.shape,
                raw,
            },
        );
    }
    Ok(out)
}
