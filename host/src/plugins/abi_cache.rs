//! The libraries whose type layout this host binary has already checked, kept on disk so that the
//! next `auto-client` process does not check them again.
//!
//! abi_stable's layout check (`init_root_module`) walks the whole type layout of the collector
//! interface and compares it with the host's: about 0.3 ms of CPU a library on the project's
//! machine, on the main thread before the collector may start (six collectors 1.9 ms of the 6.0 ms
//! `auto-client plugins` costs; README, "Collect this machine"). Its answer depends only on the
//! library file and the host binary, so it is remembered under both: a line per checked pair,
//!
//! ```text
//! v1 HOST_STAMP FILE_STAMP SYMBOL
//! ```
//!
//! where a stamp is `dev:ino:size:mtime_ns:ctime_ns` of the file (the host's is `/proc/self/exe`'s).
//! A library written again, replaced, copied or touched has a new stamp (the inode's change time
//! moves with every write, rename and `utimes`, and only the kernel sets it), and so has an
//! upgraded host: both are checked again. Only a check that passed is written; a library that
//! failed is checked at every load.
//!
//! What is trusted: the file is read only when it is a regular file owned by this process's user
//! and writable by nobody else, in a directory of the same kind. Whoever can write it can make this
//! user's own `auto-client` load a library unchecked (a crash instead of a clear error when that
//! library was built against another interface); that person could already change this user's
//! programs and start-up files. `AUTO_CLIENT_ABI_CACHE=off` turns the cache off.
//!
//! Bounded: at most [`MAX_ENTRIES`] lines (the newest kept) and [`MAX_BYTES`] read. Written to a
//! temporary file and renamed over the old one; a failure to write is logged at debug level and
//! changes nothing (the libraries are checked again next time).

use std::{
    collections::HashSet,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Lines kept (one a library and host build: 12 collectors and a few upgrades fit many times).
pub const MAX_ENTRIES: usize = 256;
/// A larger file is not read (and is replaced at the next write).
pub const MAX_BYTES: u64 = 64 * 1024;
/// The environment variable naming the file (`off` or empty: no cache).
pub const ENV: &str = "AUTO_CLIENT_ABI_CACHE";
const FILE_NAME: &str = "abi-checked";
const VERSION: &str = "v1";

/// Where the cache lives: `$AUTO_CLIENT_ABI_CACHE` (a file; `off` or empty turns it off), else
/// `$CACHE_DIRECTORY/abi-checked` (systemd's `CacheDirectory=`, which the shipped unit sets:
/// `/var/cache/auto-client`, since `ProtectHome=read-only` keeps root's home read-only), else
/// `$XDG_CACHE_HOME/auto-client/abi-checked`, else `$HOME/.cache/auto-client/abi-checked`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os(ENV) {
        return (!v.is_empty() && v != "off").then(|| PathBuf::from(v));
    }
    if let Ok(dirs) = std::env::var("CACHE_DIRECTORY") {
        // several directories are separated by colons; the unit names one
        if let Some(dir) = dirs
            .split(':')
            .next()
            .filter(|d| Path::new(d).is_absolute())
        {
            return Some(Path::new(dir).join(FILE_NAME));
        }
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| Path::new(v).is_absolute())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("auto-client").join(FILE_NAME))
}

/// What identifies one version of a file: `dev:ino:size:mtime_ns:ctime_ns`.
pub fn stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}:{}.{:09}:{}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// This host binary's stamp (`None`: unknown, no cache).
fn host_stamp() -> Option<&'static str> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| std::fs::metadata("/proc/self/exe").ok().map(|m| stamp(&m)))
        .as_deref()
}

/// The checked pairs read from disk, and the ones added since.
#[derive(Debug, Default)]
pub struct AbiCache {
    path: Option<PathBuf>,
    lines: Vec<String>,
    known: HashSet<String>,
    changed: bool,
}

impl AbiCache {
    /// Reads the cache at `path` (nothing when `None`, missing, unsafe or unreadable).
    pub fn open(path: Option<PathBuf>) -> AbiCache {
        let Some(path) = path else {
            return AbiCache::default();
        };
        let mut cache = AbiCache {
            path: Some(path.clone()),
            ..AbiCache::default()
        };
        match read_trusted(&path) {
            Ok(Some(text)) => {
                for line in text.lines().filter(|l| l.starts_with(VERSION)) {
                    if cache.known.insert(line.to_string()) {
                        cache.lines.push(line.to_string());
                    }
                }
            }
            Ok(None) => {}
            Err(why) => {
                tracing::debug!(path = %path.display(), "ABI check cache not used: {why}");
                cache.path = None;
            }
        }
        cache
    }

    fn line(file_stamp: &str, symbol: &str) -> Option<String> {
        if symbol.is_empty() || symbol.contains(char::is_whitespace) {
            return None;
        }
        Some(format!("{VERSION} {} {file_stamp} {symbol}", host_stamp()?))
    }

    /// Whether this host binary has checked the library of this stamp under this symbol.
    pub fn contains(&self, file_stamp: &str, symbol: &str) -> bool {
        self.path.is_some()
            && Self::line(file_stamp, symbol).is_some_and(|l| self.known.contains(&l))
    }

    /// Remembers a check that passed (written by [`AbiCache::save`]).
    pub fn insert(&mut self, file_stamp: &str, symbol: &str) {
        if self.path.is_none() {
            return;
        }
        if let Some(line) = Self::line(file_stamp, symbol) {
            if self.known.insert(line.clone()) {
                self.lines.push(line);
                self.changed = true;
            }
        }
    }

    /// Writes the file if anything was added: the newest [`MAX_ENTRIES`] lines, to a temporary
    /// file renamed over the old one.
    pub fn save(&mut self) {
        let Some(path) = self.path.as_ref().filter(|_| self.changed) else {
            return;
        };
        let keep = self.lines.len().saturating_sub(MAX_ENTRIES);
        let mut text = self.lines[keep..].join("\n");
        text.push('\n');
        match write_atomically(path, text.as_bytes()) {
            Ok(()) => self.changed = false,
            Err(e) => {
                tracing::debug!(path = %path.display(), "ABI check cache not written: {e}")
            }
        }
    }
}

/// The file's text when it and its directory are this user's own and nobody else may write them;
/// `Ok(None)` when it does not exist yet (then its directory is checked when it is written).
fn read_trusted(path: &Path) -> Result<Option<String>, String> {
    use std::{io::Read, os::unix::fs::MetadataExt};
    let dir = path.parent().ok_or("no directory")?;
    match std::fs::metadata(dir) {
        Ok(meta) => own_and_private(&meta, "its directory")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("its directory: {e}")),
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    own_and_private(&meta, "the file")?;
    if meta.size() > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(Some(text))
}

fn own_and_private(meta: &std::fs::Metadata, what: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!("{what} belongs to uid {}, not {me}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} is writable by others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    own_and_private(&meta, "its directory").map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_in(dir: &Path) -> PathBuf {
        dir.join("auto-client").join(FILE_NAME)
    }

    #[test]
    fn a_pair_saved_is_known_to_the_next_process_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_in(dir.path());
        let mut first = AbiCache::open(Some(path.clone()));
        assert!(!first.contains("1:2:3:4.0:5.0", "sym"));
        first.insert("1:2:3:4.0:5.0", "sym");
        first.save();
        let second = AbiCache::open(Some(path.clone()));
        assert!(second.contains("1:2:3:4.0:5.0", "sym"));
        assert!(!second.contains("1:2:3:4.0:5.1", "sym"), "another ctime");
        assert!(!second.contains("1:2:3:4.0:5.0", "other"), "another symbol");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_others_may_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = cache_in(dir.path());
        let mut first = AbiCache::open(Some(path.clone()));
        first.insert("1:2:3:4.0:5.0", "sym");
        first.save();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parent = path.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
    }

    #[test]
    fn the_newest_entries_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_in(dir.path());
        let mut cache = AbiCache::open(Some(path.clone()));
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&format!("1:{i}:3:4.0:5.0"), "sym");
        }
        cache.save();
        let again = AbiCache::open(Some(path));
        assert!(!again.contains("1:0:3:4.0:5.0", "sym"));
        assert!(again.contains(&format!("1:{}:3:4.0:5.0", MAX_ENTRIES + 9), "sym"));
        assert_eq!(again.lines.len(), MAX_ENTRIES);
    }
}
