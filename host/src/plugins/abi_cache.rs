//! The libraries whose type layout this host binary has already checked, kept on disk so that the
//! next `auto-client` process does not check them again.
//!
//! abi_stable's layout check (`init_root_module`) walks the whole type layout of the collector
//! interface and compares it with the host's: about 0.25 ms of CPU a library on the project's
//! machine, on the main thread before the collector may start (`auto-client plugins` with six
//! collectors: 5.72 ms of CPU with the check, 4.31 without; README, "Collect this machine, the
//! layout check once"). Its answer depends only on the
//! library file and the host binary, so it is remembered under both: a line per checked pair,
//!
//! ```text
//! v1 HOST_STAMP FILE_STAMP SYMBOL
//! ```
//!
//! where a stamp is `dev:ino:size:mtime_ns:ctime_ns` of the file (the host's is `/proc/self/exe`'s).
//! A library written again, replaced, copied or touched has a new stamp (the inode's change time
//! moves with every write, rename and `utimes`, and on the file systems allowed here only the
//! kernel sets it), and so has an upgraded host: both are checked again. Only a check that passed
//! is written; a library that failed is checked at every load. Three rules keep a stamp from
//! naming two contents:
//! - **Settled**: a stamp is written down (and looked up) only when the file's change and
//!   modification times are [`SETTLE`] in the past. A write in the same tick of a coarse clock
//!   (1 s on ext3 or small-inode ext4, 2 s on FAT, a few ms for kernels before 6.13) as the one
//!   stamped would otherwise keep the stamp; once settled, any later write moves the change time
//!   (git's "racily clean" rule).
//! - **Local file systems only** ([`Pinned::open`]: ext2/3/4, xfs, btrfs, tmpfs, overlayfs, f2fs,
//!   zfs): on NFS and FUSE the server sets the times, on squashfs, iso9660 and erofs the image
//!   does, and their device numbers are reused. Elsewhere every load is checked.
//! - **The file loaded is the file stamped**: the library is opened once; that descriptor is
//!   stamped (`fstat`) before and after `dlopen` of `/proc/self/fd/N` (or the private copy made
//!   from it), so renaming paths or symlinks around the load cannot swap it. The descriptor of a
//!   library loaded that way stays open for the process's life, as the library does (glibc knows
//!   it by that name: a reused descriptor number must not name another library).
//!
//! What is trusted: the file is read only when it is a regular file owned by this process's user
//! and writable by nobody else, in a directory of the same kind; the directory is checked on its
//! open descriptor and the file is opened, created and renamed relative to it (`openat`,
//! `renameat`, never through a symlink), so a directory swapped after its check cannot hand over
//! another file. Whoever can write it can make this
//! user's own `auto-client` load a library unchecked (a crash instead of a clear error when that
//! library was built against another interface); that person could already change this user's
//! programs and start-up files. `AUTO_CLIENT_ABI_CACHE=off` turns the cache off.
//!
//! Bounded: at most [`MAX_ENTRIES`] lines (the newest kept) and [`MAX_BYTES`] read (a larger or
//! damaged file counts as empty and is replaced at the next write). Written to a temporary file
//! and renamed over the old one; a failure to write is logged at debug level and changes nothing
//! (the libraries are checked again next time).

use std::{
    cell::Cell,
    collections::HashSet,
    ffi::{CStr, CString},
    fs::File,
    io::Write,
    os::{
        fd::AsRawFd,
        unix::{
            ffi::OsStrExt,
            fs::{MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, SystemTime},
};

/// Lines kept (one a library and host build: 12 collectors and a few upgrades fit many times).
pub const MAX_ENTRIES: usize = 256;
/// A larger file is not read (and is replaced at the next write).
pub const MAX_BYTES: u64 = 64 * 1024;
/// The environment variable naming the file (`off` or empty: no cache).
pub const ENV: &str = "AUTO_CLIENT_ABI_CACHE";
/// How far in the past a library's change and modification times must be for its stamp to count.
pub const SETTLE: Duration = Duration::from_secs(3);
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
    // Only a directory of this user's own: under `sudo` keeping another user's HOME, root must not
    // create directories in that user's home.
    let mine = |p: &Path| {
        p.is_absolute() && std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == euid())
    };
    let base = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        Some(xdg) if xdg.is_absolute() => xdg,
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    let parent = base.parent()?;
    (mine(&base) || !base.exists() && mine(parent))
        .then(|| base.join("auto-client").join(FILE_NAME))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// What identifies one version of a file: `dev:ino:size:mtime_ns:ctime_ns`.
pub fn stamp(meta: &std::fs::Metadata) -> String {
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

/// Whether a file's change and modification times are [`SETTLE`] before `now`.
pub fn settled(meta: &std::fs::Metadata, now: SystemTime) -> bool {
    let at = |secs: i64, nsec: i64| {
        let secs = u64::try_from(secs).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nsec).ok()?))
    };
    let old_enough = |t: Option<SystemTime>| {
        t.and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= SETTLE)
    };
    old_enough(at(meta.ctime(), meta.ctime_nsec()))
        && old_enough(at(meta.mtime(), meta.mtime_nsec()))
}

/// File systems whose times and device numbers only the local kernel sets (`statfs`'s `f_type`).
const LOCAL_FILE_SYSTEMS: [i64; 7] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
];

/// A library opened once, for the time of its load: see the module's comment.
#[derive(Debug)]
pub struct Pinned {
    file: Option<File>,
    before: std::fs::Metadata,
    /// Loaded through `/proc/self/fd/N`: the descriptor is never closed.
    keep_open: Cell<bool>,
}

impl Pinned {
    /// Opens `path` when the cache may be used for it (a local file system, `/proc` mounted).
    pub fn open(path: &Path) -> Option<Pinned> {
        static PROC: OnceLock<bool> = OnceLock::new();
        if !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
            return None;
        }
        let file = File::open(path).ok()?;
        // SAFETY: an all-zero statfs is a valid value to be overwritten; the fd is open.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `fs` is a valid, writable statfs; the fd is open for the call's duration.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between architectures
        let kind = fs.f_type as i64;
        if !LOCAL_FILE_SYSTEMS.contains(&kind) {
            tracing::debug!(path = %path.display(), "file system {kind:#x}: no ABI check cache for it");
            return None;
        }
        let before = file.metadata().ok()?;
        Some(Pinned {
            file: Some(file),
            before,
            keep_open: Cell::new(false),
        })
    }

    /// The open file.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// The path that loads this very file. Once it was passed to `dlopen`, the descriptor stays
    /// open (see [`Pinned::stamp_if_unchanged`]).
    pub fn proc_path(&self) -> PathBuf {
        self.keep_open.set(true);
        let fd = self.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        PathBuf::from(format!("/proc/self/fd/{fd}"))
    }

    /// Copies the file to `target` from the descriptor.
    pub fn copy_to(&self, target: &Path) -> std::io::Result<()> {
        let mut from = self.file.as_ref().ok_or(std::io::ErrorKind::NotFound)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)?;
        std::io::copy(&mut from, &mut to).map(|_| ())
    }

    /// The file's stamp when it did not change while it was loaded and is settled; `None`: do not
    /// use the cache for it.
    pub fn stamp_if_unchanged(self) -> Option<String> {
        let after = self.file.as_ref()?.metadata().ok()?;
        let before = stamp(&self.before);
        (stamp(&after) == before && settled(&after, SystemTime::now())).then_some(before)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.keep_open.get() {
            if let Some(file) = self.file.take() {
                // glibc names the library `/proc/self/fd/N`: N must never name another file.
                std::mem::forget(file);
            }
        }
    }
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

    /// Whether there is a cache file to use.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
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
/// `Ok(None)` when it does not exist yet (then its directory is checked when it is written). The
/// file is opened in the directory that was checked (`openat` on its descriptor), not by path
/// again: a directory renamed or swapped for a symlink in between cannot hand over another file.
fn read_trusted(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let dir = match open_own_dir(path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("its directory: {e}")),
    };
    let name = file_name(path).map_err(|e| e.to_string())?;
    let file = match open_at(&dir, &name, libc::O_RDONLY, 0) {
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
        // damaged or not ours to read whole: as empty, replaced at the next write
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The directory of the cache file `path`, opened, when it is this user's own and nobody else
/// may write it (checked on the descriptor: what is checked is what is used).
fn open_own_dir(path: &Path) -> std::io::Result<File> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir_of(path))?;
    own_and_private(&dir.metadata()?, "its directory").map_err(std::io::Error::other)?;
    Ok(dir)
}

/// The directory of the cache file `path` (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The last component of the cache file's path, for the `*at` calls.
fn file_name(path: &Path) -> std::io::Result<CString> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    CString::new(name.as_bytes()).map_err(std::io::Error::other)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`: `name` in that very directory, never
/// through a symlink.
fn open_at(
    dir: &File,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: a valid directory descriptor and a NUL-terminated name; the result is a new
    // descriptor we own, or -1.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn own_and_private(meta: &std::fs::Metadata, what: &str) -> Result<(), String> {
    let me = euid();
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
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir_of(path))?;
    let dir = open_own_dir(path)?;
    // Unique among processes sharing the directory, even from other PID namespaces.
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = CString::new(format!(
        ".{FILE_NAME}.{}.{nanos}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
    .map_err(std::io::Error::other)?;
    let name = file_name(path)?;
    let result = (|| {
        let mut f = open_at(
            &dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        f.write_all(bytes)?;
        // SAFETY: both names are NUL-terminated and relative to the same open directory.
        let renamed = unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        };
        if renamed != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })();
    if result.is_err() {
        // SAFETY: a NUL-terminated name relative to an open directory.
        unsafe {
            libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_in(dir: &Path) -> PathBuf {
        dir.join("auto-client").join(FILE_NAME)
    }

    /// A cache file in `dir` holding the one entry ("1:2:3:4.0:5.0", "sym").
    fn saved_with_one_entry(dir: &Path) -> PathBuf {
        let path = cache_in(dir);
        let mut cache = AbiCache::open(Some(path.clone()));
        cache.insert("1:2:3:4.0:5.0", "sym");
        cache.save();
        path
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
    fn a_cache_file_of_any_name_is_written_and_read_in_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("checked.txt");
        let mut first = AbiCache::open(Some(path.clone()));
        first.insert("1:2:3:4.0:5.0", "sym");
        first.save();
        assert!(path.is_file(), "written under its own name");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["checked.txt"], "no temporary file left behind");
        assert!(AbiCache::open(Some(path)).contains("1:2:3:4.0:5.0", "sym"));
    }

    #[test]
    fn a_file_others_may_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = saved_with_one_entry(dir.path());
        assert!(AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parent = path.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
    }

    #[test]
    fn a_file_is_settled_only_when_both_its_times_are_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.so");
        std::fs::write(&file, b"x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let now = SystemTime::now();
        assert!(!settled(&meta, now), "just written");
        assert!(!settled(&meta, now + SETTLE - Duration::from_millis(100)));
        assert!(settled(&meta, now + SETTLE + Duration::from_millis(100)));
        // an old modification time (cp -p, touch -d) does not settle a new change time
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert!(!settled(&meta, SystemTime::now()));
    }

    #[test]
    fn a_damaged_or_oversized_file_counts_as_empty_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_in(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for bad in [vec![0xff_u8; 100], vec![b'v'; MAX_BYTES as usize + 1]] {
            std::fs::write(&path, &bad).unwrap();
            let mut cache = AbiCache::open(Some(path.clone()));
            assert!(cache.enabled());
            cache.insert("1:2:3:4.0:5.0", "sym");
            cache.save();
            assert!(AbiCache::open(Some(path.clone())).contains("1:2:3:4.0:5.0", "sym"));
        }
    }

    #[test]
    fn the_cache_file_is_not_followed_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = saved_with_one_entry(dir.path());
        assert!(AbiCache::open(Some(real.clone())).contains("1:2:3:4.0:5.0", "sym"));
        let link = dir.path().join("auto-client").join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(!AbiCache::open(Some(link)).contains("1:2:3:4.0:5.0", "sym"));
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
