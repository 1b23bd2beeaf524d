//! Files up over SFTP on an open [`SshSession`] (libssh2's SFTP subsystem through `ssh2::Sftp`),
//! for `auto-client deploy`: stat, mkdir, write a file with its mode, set owner and mode, rename,
//! unlink.
//!
//! The subsystem lives for one call of [`SshSession::sftp`], which holds the session's lock for its
//! whole time (nothing else runs on that connection meanwhile). libssh2's SFTP calls are driven in
//! blocking mode with a session timeout, so every operation is bounded (by `timeout` each); the
//! session goes back to non-blocking mode afterwards. A transport failure or a timeout marks the
//! session broken, as for commands.
//!
//! SFTP version 3 (OpenSSH) cannot rename over an existing file: write to a temporary name and
//! replace the target with one `mv -f` over [`SshSession::run`] (atomic on the host).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType};

use crate::error::SshError;
use crate::session::SshSession;

// libssh2 error codes this module tells apart (libssh2.h, libssh2_sftp.h).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_FX_NO_SUCH_FILE: i32 = 2;
const LIBSSH2_FX_PERMISSION_DENIED: i32 = 3;
const LIBSSH2_FX_FAILURE: i32 = 4;
const LIBSSH2_FX_FILE_ALREADY_EXISTS: i32 = 11;

/// Why an SFTP operation failed: the connection (the session is then broken), or one file.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The server refused the operation on this path (no such file, permission denied, ...).
    #[error("sftp {host}: cannot {op} {path}: {detail}")]
    File {
        host: String,
        op: &'static str,
        path: String,
        detail: String,
    },
}

impl SftpError {
    /// A stable snake_case name of the kind, for logs and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            SftpError::Ssh(e) => e.kind(),
            SftpError::File { .. } => "sftp_failed",
        }
    }
}

/// What `stat` tells of a path on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftpStat {
    pub size: u64,
    /// Permission bits (e.g. 0o644), without the file type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
}

/// The SFTP subsystem of one session, for the time of one [`SshSession::sftp`] call.
pub struct Sftp<'a> {
    sftp: ssh2::Sftp,
    host: &'a str,
    /// Set by an operation that failed on the connection: the session is broken afterwards.
    transport_failed: std::cell::Cell<Option<String>>,
}

impl SshSession {
    /// Opens the SFTP subsystem, runs `f` with it, closes it. Each SFTP operation inside may take
    /// `timeout`; the session's lock is held throughout.
    pub fn sftp<T>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&Sftp<'_>) -> Result<T, SftpError>,
    ) -> Result<T, SftpError> {
        let inner = self.lock();
        inner.usable().map_err(|detail| self.transport(detail))?;
        let session = inner.session.clone();
        session.set_timeout(
            u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
        );
        session.set_blocking(true);
        let opened = session.sftp();
        let result = match opened {
            Ok(sftp) => {
                let handle = Sftp {
                    sftp,
                    host: self.host(),
                    transport_failed: std::cell::Cell::new(None),
                };
                let result = f(&handle);
                let failed = handle.transport_failed.take();
                // closing the subsystem is one more blocking round trip, bounded by the timeout
                drop(handle);
                match failed {
                    Some(detail) => Err(SftpError::Ssh(self.transport(detail))),
                    None => result,
                }
            }
            Err(e) => Err(SftpError::Ssh(self.transport(format!(
                "cannot start the sftp subsystem: {}",
                e.message()
            )))),
        };
        session.set_blocking(false);
        session.set_timeout(0);
        drop(inner);
        if let Err(SftpError::Ssh(SshError::Transport { detail, .. })) = &result {
            let mut inner = self.lock();
            if inner.broken.is_none() {
                inner.broken = Some(detail.clone());
            }
        }
        result
    }
}

impl Sftp<'_> {
    /// The host's view of `path`; `None` when there is no such file.
    pub fn stat(&self, path: &Path) -> Result<Option<SftpStat>, SftpError> {
        match self.sftp.stat(path) {
            Ok(st) => Ok(Some(SftpStat {
                size: st.size.unwrap_or(0),
                mode: st.perm.unwrap_or(0) & 0o7777,
                uid: st.uid.unwrap_or(u32::MAX),
                gid: st.gid.unwrap_or(u32::MAX),
                is_dir: st.is_dir(),
            })),
            Err(e) if e.code() == ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE) => Ok(None),
            Err(e) => Err(self.error("stat", path, e)),
        }
    }

    /// Creates the directory `path` with `mode` (not its parents); an existing one is kept as is.
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<(), SftpError> {
        match self.sftp.mkdir(path, mode as i32) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::SFTP(LIBSSH2_FX_FAILURE | LIBSSH2_FX_FILE_ALREADY_EXISTS)
                ) && self.stat(path)?.is_some_and(|s| s.is_dir) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("create directory", path, e)),
        }
    }

    /// Writes `bytes` to `path` (created, or truncated), then sets `mode` (the server's umask does
    /// not apply to it).
    pub fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SftpError> {
        let mut file = self
            .sftp
            .open_mode(
                path,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                mode as i32,
                OpenType::File,
            )
            .map_err(|e| self.error("create", path, e))?;
        file.write_all(bytes).map_err(|e| {
            // ssh2 wraps its own error in the io::Error
            match e.into_inner().map(|inner| inner.downcast::<ssh2::Error>()) {
                Some(Ok(e)) => self.error("write", path, *e),
                other => {
                    let detail = match other {
                        Some(Err(inner)) => inner.to_string(),
                        _ => "i/o error".to_string(),
                    };
                    let detail = format!("sftp write {}: {detail}", path.display());
                    self.transport_failed.set(Some(detail.clone()));
                    SftpError::File {
                        host: self.host.to_string(),
                        op: "write",
                        path: path.display().to_string(),
                        detail,
                    }
                }
            }
        })?;
        file.close().map_err(|e| self.error("close", path, e))?;
        self.set_mode(path, mode, None)
    }

    /// Sets the permission bits of `path`, and its owner and group when given.
    pub fn set_mode(
        &self,
        path: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), SftpError> {
        let stat = FileStat {
            size: None,
            uid: owner.map(|o| o.0),
            gid: owner.map(|o| o.1),
            perm: Some(mode),
            atime: None,
            mtime: None,
        };
        self.sftp
            .setstat(path, stat)
            .map_err(|e| self.error("set the mode of", path, e))
    }

    /// Renames `from` to `to`; SFTP 3 refuses when `to` exists (see the module doc).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), SftpError> {
        self.sftp
            .rename(from, to, None)
            .map_err(|e| self.error("rename", from, e))
    }

    /// Removes the file `path`; a missing one is no error.
    pub fn unlink(&self, path: &Path) -> Result<(), SftpError> {
        match self.sftp.unlink(path) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE) => Ok(()),
            Err(e) => Err(self.error("remove", path, e)),
        }
    }

    /// A file's failure, or (for anything but an SFTP status) the connection's: remembered, so
    /// that [`SshSession::sftp`] marks the session broken.
    fn error(&self, op: &'static str, path: &Path, e: ssh2::Error) -> SftpError {
        let path = path.display().to_string();
        match e.code() {
            ErrorCode::SFTP(code) => SftpError::File {
                host: self.host.to_string(),
                op,
                path,
                detail: match code {
                    LIBSSH2_FX_NO_SUCH_FILE => "no such file or directory".to_string(),
                    LIBSSH2_FX_PERMISSION_DENIED => "permission denied".to_string(),
                    _ => format!("sftp status {code}"),
                },
            },
            ErrorCode::Session(code) => {
                let detail = if code == LIBSSH2_ERROR_TIMEOUT {
                    format!("sftp {op} {path} timed out")
                } else {
                    format!("sftp {op} {path}: {}", e.message())
                };
                self.transport_failed.set(Some(detail.clone()));
                SftpError::File {
                    host: self.host.to_string(),
                    op,
                    path,
                    detail,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_error_names_host_operation_and_path() {
        let e = SftpError::File {
            host: "web-1".into(),
            op: "create",
            path: "/usr/bin/.auto-client.tmp".into(),
            detail: "permission denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "sftp web-1: cannot create /usr/bin/.auto-client.tmp: permission denied"
        );
        assert_eq!(e.kind(), "sftp_failed");
    }
}
