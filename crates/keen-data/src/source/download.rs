//! Downloading and checking dataset files.
//!
//! Downloads land in a temporary file next to the target and are renamed into place
//! only after the SHA-256 of the decompressed content matches, so an interrupted or
//! corrupted download never looks like a dataset to the next run, and two processes
//! downloading at once cannot see each other's half-written files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{CatalogEntry, DataFile};
use crate::error::DataError;
use crate::gzip::{decompress_if_gzip, read_maybe_gzip};

/// Name lookup, connecting and the first response byte must each be quick: an offline
/// machine should fall through to the "how to get the files" hint at once, not after
/// minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request limit: generous for 30 MB on a slow link, finite so it cannot hang.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// No file keen downloads is larger than this; a bigger body is not our file.
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

/// Hex SHA-256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex SHA-256 of a file's bytes as stored (not decompressed).
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every file of a named dataset in `dir` against its published SHA-256 (of the
/// decompressed content, so `.gz` and unpacked copies verify alike). Files without a
/// published hash are only checked for presence.
pub fn verify_checksums(spec: &super::DatasetSpec, dir: &Path) -> Result<(), DataError> {
    let Some(entry) = super::catalog(spec) else {
        return Err(DataError::BadSpec(format!(
            "{spec} has no published checksums"
        )));
    };
    for file in entry.all_files() {
        let path = find_file(dir, file.name).ok_or_else(|| DataError::NotFound {
            name: entry.name.to_string(),
            searched: vec![dir.join(file.name), dir.join(gz_name(file.name))],
            hint: entry.hint.to_string(),
        })?;
        if let Some(expected) = file.sha256 {
            check_sha(&path, &read_maybe_gzip(&path)?, expected)?;
        }
    }
    Ok(())
}

/// The file `name` in `dir`, unpacked or as `name.gz`, preferring unpacked (faster).
pub(crate) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(gz_name(name))]
        .into_iter()
        .find(|p| p.is_file())
}

fn gz_name(name: &str) -> String {
    format!("{name}.gz")
}

fn check_sha(path: &Path, content: &[u8], expected: &str) -> Result<(), DataError> {
    let found = sha256_bytes(content);
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            found,
        })
    }
}

/// Downloads every missing file of `entry` from `base_url` into `dest`. Files already
/// present are kept; each new one is verified before it appears under its final name.
pub(crate) fn download_dataset(
    entry: &CatalogEntry,
    base_url: &str,
    dest: &Path,
) -> Result<(), DataError> {
    std::fs::create_dir_all(dest).map_err(|e| DataError::io(dest, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(TOTAL_TIMEOUT))
        .build()
        .into();
    for file in entry.all_files() {
        if find_file(dest, file.name).is_none() {
            download_file(&agent, base_url, file, dest)?;
        }
    }
    Ok(())
}

fn download_file(
    agent: &ureq::Agent,
    base_url: &str,
    file: &DataFile,
    dest: &Path,
) -> Result<(), DataError> {
    let url = format!("{base_url}{}", gz_name(file.name));
    let download_err = |reason: String| DataError::Download {
        url: url.clone(),
        reason,
    };
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|e| download_err(e.to_string()))?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .read_to_vec()
        .map_err(|e| download_err(e.to_string()))?;
    let target = dest.join(gz_name(file.name));
    if let Some(expected) = file.sha256 {
        let content = decompress_if_gzip(&target, body.clone())?;
        check_sha(&target, &content, expected)?;
    }
    write_atomically(&target, &body)
}

/// Writes `bytes` to a unique temporary file beside `target`, then renames it over
/// `target` (atomic on one file system).
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), DataError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| DataError::io(&tmp, e))?;
        f.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, target).map_err(|e| DataError::io(target, e))
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is harmless (hidden, never matched).
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        write_atomically(&path, b"abc").expect("write");
        assert_eq!(sha256_file(&path).expect("hash"), sha256_bytes(b"abc"));
        // Only the final file remains: no temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("abc")]);
    }

    #[test]
    fn checksum_mismatch_names_the_file() {
        let err = check_sha(Path::new("/c/file"), b"abc", &"0".repeat(64)).expect_err("mismatch");
        assert!(matches!(err, DataError::Checksum { .. }));
        assert!(err.to_string().contains("/c/file"));
    }

    #[test]
    fn unreachable_server_fails_fast_with_a_download_error() {
        // Port 1 on localhost refuses connections immediately: no network needed.
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = super::super::catalog(&super::super::DatasetSpec::FashionMnist).expect("entry");
        let err = download_dataset(entry, "http://127.0.0.1:1/", dir.path()).expect_err("offline");
        assert!(matches!(err, DataError::Download { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("http://127.0.0.1:1/train-images-idx3-ubyte.gz"));
        assert!(find_file(dir.path(), "train-images-idx3-ubyte").is_none());
    }
}
