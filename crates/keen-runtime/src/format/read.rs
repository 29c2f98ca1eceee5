//! Parsing a model file: framing, JSON header and tensor bytes, all bounds-checked against the
//! file's length before anything is allocated.

use std::collections::HashSet;

use super::{align_up, Header, ALIGNMENT, FORMAT_VERSION, HEADER_OFFSET, MAGIC, MAX_HEADER_BYTES};
use crate::error::{Result, RuntimeError};
use crate::tensor::{checked_numel, DType, Data, Value};

/// The parsed file: its header and one decoded value per `header.tensors` entry, same order.
pub(crate) struct Parsed {
    pub header: Header,
    pub tensors: Vec<Value>,
}

fn truncated(what: &str, needed: u64, available: usize) -> RuntimeError {
    RuntimeError::Truncated {
        what: what.to_string(),
        needed,
        available: available as u64,
    }
}

fn read_array<const N: usize>(bytes: &[u8], at: usize, what: &str) -> Result<[u8; N]> {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| truncated(what, (at + N) as u64, bytes.len()))
}

/// Parses and checks the framing, the header and every tensor's placement; decodes the tensors.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    let magic: [u8; 8] =
        read_array(bytes, 0, "the magic bytes").map_err(|_| RuntimeError::BadMagic {
            expected: MAGIC.to_vec(),
            found: bytes.iter().take(8).copied().collect(),
        })?;
    if &magic != MAGIC {
        return Err(RuntimeError::BadMagic {
            expected: MAGIC.to_vec(),
            found: magic.to_vec(),
        });
    }
    let version = u32::from_le_bytes(read_array(bytes, 8, "the format version")?);
    if version != FORMAT_VERSION {
        return Err(RuntimeError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = u64::from_le_bytes(read_array(bytes, 12, "the header length")?);
    if header_len > MAX_HEADER_BYTES {
        return Err(RuntimeError::Truncated {
            what: format!("a header of {header_len} bytes (limit {MAX_HEADER_BYTES})"),
            needed: header_len,
            available: bytes.len() as u64,
        });
    }
    let header_end = HEADER_OFFSET + header_len;
    let header_bytes = bytes
        .get(HEADER_OFFSET as usize..header_end as usize)
        .ok_or_else(|| truncated("the JSON header", header_end, bytes.len()))?;
    let header: Header = serde_json::from_slice(header_bytes)?;
    // header_end <= 20 + 64 MiB, so this cannot overflow.
    let data_start = align_up(header_end).unwrap_or(u64::MAX);
    let tensors = decode_tensors(bytes, &header, data_start)?;
    Ok(Parsed { header, tensors })
}

fn decode_tensors(bytes: &[u8], header: &Header, data_start: u64) -> Result<Vec<Value>> {
    let mut seen = HashSet::new();
    let mut values = Vec::with_capacity(header.tensors.len().min(bytes.len()));
    for def in &header.tensors {
        let bad = |reason: String| RuntimeError::Tensor {
            name: def.name.clone(),
            reason,
        };
        if !seen.insert(def.name.as_str()) {
            return Err(bad("declared twice".into()));
        }
        let numel = checked_numel(&def.shape)
            .ok_or_else(|| bad(format!("shape {:?} overflows", def.shape)))?;
        let expected = (numel as u64)
            .checked_mul(def.dtype.size_bytes() as u64)
            .ok_or_else(|| bad(format!("shape {:?} overflows", def.shape)))?;
        if def.length != expected {
            return Err(bad(format!(
                "length is {} bytes but {} {:?} needs {expected}",
                def.length, def.dtype, def.shape
            )));
        }
        if def.offset % ALIGNMENT != 0 {
            return Err(bad(format!(
                "offset {} is not a multiple of {ALIGNMENT}",
                def.offset
            )));
        }
        let start = data_start.checked_add(def.offset);
        let end = start.and_then(|s| s.checked_add(def.length));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(bad(format!("offset {} overflows", def.offset)));
        };
        if end > bytes.len() as u64 {
            return Err(bad(format!(
                "bytes {start}..{end} lie outside the file of {} bytes",
                bytes.len()
            )));
        }
        let raw = &bytes[start as usize..end as usize];
        values.push(Value {
            shape: def.shape.clone(),
            data: decode(def.dtype, raw),
        });
    }
    Ok(values)
}

/// Decodes little-endian elements; `raw.len()` is a multiple of the element size (checked).
fn decode(dtype: DType, raw: &[u8]) -> Data {
    match dtype {
        DType::F32 => Data::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::I32 => Data::I32(
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::I8 => Data::I8(raw.iter().map(|&b| b as i8).collect()),
        DType::U8 => Data::U8(raw.to_vec()),
    }
}
