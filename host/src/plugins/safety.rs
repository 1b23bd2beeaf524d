//! Plugin files are code that runs with the agent's privileges (often root): refuse a file, or the
//! directory it sits in, that another user could have written, as sshd's StrictModes does.

use std::{os::unix::fs::MetadataExt, path::Path};

/// Checks the file and its directory: owned by root or by us, and not writable by group or others.
pub fn check_plugin_file(path: &Path) -> Result<(), String> {
    check_one(path, "file")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_one(dir, "directory")?;
    }
    Ok(())
}

fn check_one(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat {what} {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "refused: {what} {} is owned by uid {}, not by root or the agent's user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "refused: {what} {} is writable by {} (mode {:o}); run chmod go-w on it",
            path.display(),
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(())
}
