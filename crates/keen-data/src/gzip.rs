//! Reading files that may or may not be gzipped.
//!
//! Datasets arrive both ways (Debian ships `.gz`, users often unpack), and names lie
//! (`.gz` files get gunzipped in place by browsers), so the content decides: a file is
//! gzip exactly when it starts with the gzip magic `1f 8b`.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::DataError;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` start with the gzip magic.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Reads a whole file, decompressing it when its content is gzip.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decompress_if_gzip(path, raw)
}

/// Decompresses `raw` when it is gzip, otherwise returns it unchanged.
/// `path` only names the source in errors.
pub(crate) fn decompress_if_gzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !is_gzip(&raw) {
        return Ok(raw);
    }
    // IDX image data compresses about 4x; reserving that avoids most regrowth.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::Decompress {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).expect("in-memory write");
        enc.finish().expect("in-memory finish")
    }

    #[test]
    fn raw_bytes_pass_through() {
        let out = decompress_if_gzip(Path::new("x"), vec![1, 2, 3]).expect("raw");
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn gzip_is_detected_by_content() {
        let out = decompress_if_gzip(Path::new("no-extension"), gz(b"hello")).expect("gz");
        assert_eq!(out, b"hello");
    }

    #[test]
    fn truncated_gzip_is_a_decompress_error_naming_the_file() {
        let mut data = gz(&[7u8; 1000]);
        data.truncate(data.len() / 2);
        let err = decompress_if_gzip(Path::new("/d/half.gz"), data).expect_err("truncated");
        assert!(matches!(err, DataError::Decompress { .. }), "{err:?}");
        assert!(err.to_string().contains("/d/half.gz"));
    }
}
