//! Content hashes of input files: they identify what a stage was computed from (so a re-run can
//! skip it) and what an evaluation was run on.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Hex SHA-256 of a file's bytes, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// `name:size` of each checkpoint weight file: what identifies the weights in a cache key without
/// hashing gigabytes.
pub fn weight_files(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    paths
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?.len();
            Ok(format!("{}:{size}", p.file_name().unwrap_or_default().to_string_lossy()))
        })
        .collect()
}

/// Hex SHA-256 of a string (stage parameters, configs).
pub fn sha256_str(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_sha256_test_vector() {
        assert_eq!(sha256_str("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_str("abc"));
    }
}
