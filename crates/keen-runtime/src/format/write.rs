//! Writing a model file: encoding, and an atomic write (temporary file in the same folder,
//! fsync, rename) so a crash never leaves a half-written model under the final name.

use std::io::Write;
use std::path::Path;

use super::{align_up, Header, FORMAT_VERSION, HEADER_OFFSET, MAGIC};
use crate::error::{Result, RuntimeError};
use crate::tensor::{Data, Value};

/// Encodes `header` (whose tensor offsets and lengths are filled in here) and `tensors`
/// (same order as `header.tensors`).
pub(crate) fn encode(header: &mut Header, tensors: &[Value]) -> Result<Vec<u8>> {
    let (mut offset, mut end) = (0u64, 0u64);
    for (def, value) in header.tensors.iter_mut().zip(tensors) {
        let length = (byte_len(&value.data)) as u64;
        def.offset = offset;
        def.length = length;
        end = offset + length;
        offset = align_up(end).ok_or_else(|| RuntimeError::Tensor {
            name: def.name.clone(),
            reason: "data section overflows".into(),
        })?;
    }
    let json = serde_json::to_vec(header)?;
    let header_end = HEADER_OFFSET + json.len() as u64;
    let data_start = align_up(header_end).unwrap_or(header_end) as usize;
    let mut out = Vec::with_capacity(data_start + end as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (def, value) in header.tensors.iter().zip(tensors) {
        out.resize(data_start + def.offset as usize, 0);
        push_le(&mut out, &value.data);
    }
    // No padding after the last tensor: the file ends where its data does, so any truncation
    // cuts into a tensor and is detected.
    out.truncate(data_start + end as usize);
    Ok(out)
}

fn byte_len(data: &Data) -> usize {
    match data {
        Data::F32(v) => v.len() * 4,
        Data::I32(v) => v.len() * 4,
        Data::I8(v) => v.len(),
        Data::U8(v) => v.len(),
    }
}

fn push_le(out: &mut Vec<u8>, data: &Data) {
    match data {
        Data::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Data::U8(v) => out.extend_from_slice(v),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, then rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable where the platform allows opening folders.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
