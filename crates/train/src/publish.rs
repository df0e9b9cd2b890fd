//! Writing `--out` so that it changes only when a whole run succeeds: into a staging directory
//! beside it, swapped in at the end.

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::report;

/// A path beside `out` named after it.
pub fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    out.with_file_name(format!(".{name}.{suffix}"))
}

/// `--out` must be new, empty, or an earlier export (which the run replaces).
pub fn check_out(out: &Path) -> Result<()> {
    let Ok(mut entries) = std::fs::read_dir(out) else {
        return if out.exists() {
            Err(TrainError::Invalid(format!("--out {} is a file, not a directory", out.display())))
        } else {
            Ok(())
        };
    };
    if entries.next().is_none() || out.join(report::REPORT).is_file() {
        Ok(())
    } else {
        Err(TrainError::Invalid(format!(
            "--out {} exists and is not an armorm export; choose a new directory",
            out.display()
        )))
    }
}

/// Writes into a staging directory beside `out`, then swaps it in: `out` changes only on success.
pub fn publish(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let pid = std::process::id();
    let staging = sibling(out, &format!("partial-{pid}"));
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = write(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if out.exists() {
        let old = sibling(out, &format!("old-{pid}"));
        std::fs::rename(out, &old).map_err(|e| TrainError::io(out, e))?;
        std::fs::rename(&staging, out).map_err(|e| TrainError::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staging, out).map_err(|e| TrainError::io(out, e))?;
    }
    Ok(())
}
