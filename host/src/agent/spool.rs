//! Reports that could not be delivered wait in the spool directory until a later run sends them,
//! oldest first, each with its original `report_id` (so the server applies it once).
//!
//! Invariants: a file in the spool is complete (written to a temporary name, fsynced, renamed, the
//! directory fsynced), so an agent killed mid-write leaves at most a `.tmp-*` file, removed at the
//! next start; the spool never holds more than `max_reports` files or `max_bytes` bytes: the oldest
//! go first, with a warning naming each.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use auto_proto::Report;

#[derive(Debug, Clone)]
pub struct Spool {
    pub dir: PathBuf,
    pub max_reports: usize,
    pub max_bytes: u64,
}

/// One spooled report, as listed.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub path: PathBuf,
    pub bytes: u64,
}

impl Spool {
    pub fn open(dir: &Path, max_reports: usize, max_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_reports: max_reports.max(1),
            max_bytes,
        };
        // Leftovers of a write that was killed before its rename: never complete, never sent.
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(spool)
    }

    /// Writes a report durably, then trims the spool to its bounds (oldest first).
    pub fn put<D: serde::Serialize>(&self, report: &Report<D>) -> Result<PathBuf> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{nanos:024}-{}.json", report.report_id);
        let tmp = self.dir.join(format!(".tmp-{name}"));
        let path = self.dir.join(&name);
        let body = serde_json::to_vec(report).context("cannot serialise the report")?;
        let mut f = File::create(&tmp)
            .with_context(|| format!("cannot write to spool {}", self.dir.display()))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write to spool {}", self.dir.display()))?;
        drop(f);
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename into spool {}", self.dir.display()))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync spool directory {}", self.dir.display()))?;
        tracing::info!(report_id = %report.report_id, path = %path.display(), "report spooled");
        self.trim()?;
        Ok(path)
    }

    /// The spooled reports, oldest first.
    pub fn list(&self) -> Result<Vec<Spooled>> {
        let mut list: Vec<Spooled> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read spool {}", self.dir.display()))?
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                !n.starts_with('.') && n.ends_with(".json")
            })
            .filter_map(|e| {
                let bytes = e.metadata().ok()?.len();
                Some(Spooled {
                    path: e.path(),
                    bytes,
                })
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(list)
    }

    pub fn read(&self, item: &Spooled) -> Result<Report> {
        let bytes = std::fs::read(&item.path)
            .with_context(|| format!("cannot read spooled report {}", item.path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "spooled report {} is not a valid report",
                item.path.display()
            )
        })
    }

    pub fn remove(&self, item: &Spooled) {
        if let Err(e) = std::fs::remove_file(&item.path) {
            tracing::warn!(path = %item.path.display(), error = %e, "cannot remove a delivered report from the spool");
        }
    }

    /// Moves a report the server will never accept out of the way, keeping it for a person to read.
    pub fn quarantine(&self, item: &Spooled, why: &str) {
        let bad = self.dir.join("rejected");
        let target = bad.join(item.path.file_name().unwrap_or_default());
        let moved =
            std::fs::create_dir_all(&bad).and_then(|_| std::fs::rename(&item.path, &target));
        match moved {
            Ok(()) => {
                tracing::error!(path = %target.display(), reason = %why, "report rejected by the server, moved out of the spool")
            }
            Err(e) => {
                tracing::error!(path = %item.path.display(), error = %e, "cannot move a rejected report out of the spool")
            }
        }
    }

    fn trim(&self) -> Result<()> {
        let list = self.list()?;
        let mut count = list.len();
        let mut bytes: u64 = list.iter().map(|s| s.bytes).sum();
        for old in &list {
            if count <= self.max_reports && bytes <= self.max_bytes {
                break;
            }
            tracing::warn!(
                path = %old.path.display(),
                spooled = count,
                bytes,
                max_reports = self.max_reports,
                max_bytes = self.max_bytes,
                "spool full: dropping the oldest report"
            );
            self.remove(old);
            count -= 1;
            bytes -= old.bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use auto_proto::{AgentInfo, Report};

    use super::*;

    fn report(id: &str) -> Report {
        Report {
            schema: 1,
            report_id: id.to_string(),
            hostname: "h".to_string(),
            previous_hostname: None,
            collected_at: "2026-01-01T00:00:00Z".to_string(),
            agent: AgentInfo {
                version: "0".to_string(),
                mode: "agent".to_string(),
            },
            plugins: BTreeMap::new(),
        }
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_keeps_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 3, u64::MAX).expect("open");
        for id in ["r1", "r2", "r3", "r4", "r5"] {
            spool.put(&report(id)).expect("put");
        }
        let ids: Vec<String> = spool
            .list()
            .expect("list")
            .iter()
            .map(|s| spool.read(s).expect("read").report_id)
            .collect();
        assert_eq!(ids, ["r3", "r4", "r5"]);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = serde_json::to_vec(&report("r1")).expect("json").len() as u64;
        let spool = Spool::open(dir.path(), 100, one * 2).expect("open");
        for id in ["r1", "r2", "r3"] {
            spool.put(&report(id)).expect("put");
        }
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().map(|s| s.bytes).sum::<u64>() <= one * 2);
    }

    /// Set in the child of [`a_write_torn_by_a_kill_mid_file_is_never_listed_nor_sent`]: the spool
    /// directory it writes into.
    const CRASH_CHILD: &str = "AUTO_CLIENT_SPOOL_CRASH_CHILD";

    /// A real torn write: a child process (this test binary, re-executed for this one test) puts a
    /// 64 KiB report under `RLIMIT_FSIZE` = 4 KiB, so the kernel kills it with SIGXFSZ in the
    /// middle of the file, as a crash or a kill would. What it leaves must never be listed (so
    /// never sent), is removed at the next open, and the spool keeps counting right afterwards.
    /// Writing straight to the final name (no temporary file + rename) fails this test.
    #[test]
    fn a_write_torn_by_a_kill_mid_file_is_never_listed_nor_sent() {
        if let Some(dir) = std::env::var_os(CRASH_CHILD) {
            let spool = Spool::open(Path::new(&dir), 10, u64::MAX).expect("open");
            let mut big = report("torn");
            big.hostname = "x".repeat(64 << 10);
            let _ = spool.put(&big);
            // Not reached when the kernel enforces the limit; the parent checks how we ended.
            std::process::exit(0);
        }
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = crate::this_test_again(
            module_path!(),
            "a_write_torn_by_a_kill_mid_file_is_never_listed_nor_sent",
        );
        child
            .env(CRASH_CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
        unsafe {
            child.pre_exec(|| {
                let fsize = libc::rlimit {
                    rlim_cur: 4096,
                    rlim_max: 4096,
                };
                let core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &fsize) != 0
                    || libc::setrlimit(libc::RLIMIT_CORE, &core) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = child.status().expect("the child runs");
        assert_eq!(
            status.signal(),
            Some(libc::SIGXFSZ),
            "the child was to be killed mid-write: {status}"
        );
        // The torn file is there (the crash really happened mid-file) ...
        let left: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .flatten()
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        assert_eq!(left.len(), 1, "one partial file: {left:?}");
        assert!(left[0].1 > 0 && left[0].1 <= 4096, "{left:?}");
        // ... and is not a report the spool would hand out, neither now nor after a restart.
        let spool = Spool::open(dir.path(), 10, u64::MAX).expect("open");
        let listed = spool.list().expect("list");
        assert!(
            listed.is_empty(),
            "a torn write is listed (it would be sent): {listed:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("read_dir").count(),
            0,
            "the partial file is removed at the next open"
        );
        // What is spooled afterwards is counted and read back whole, in order.
        for id in ["r1", "r2", "r3"] {
            spool.put(&report(id)).expect("put");
        }
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 3, "{listed:?}");
        let ids: Vec<String> = listed
            .iter()
            .map(|s| spool.read(s).expect("a complete report").report_id)
            .collect();
        assert_eq!(ids, ["r1", "r2", "r3"]);
    }

    /// A file under a report's name that is not a complete report (a disk that lost the tail of a
    /// write): reading it fails, and once quarantined it is never listed again.
    #[test]
    fn a_truncated_report_under_its_final_name_is_refused_and_quarantined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 10, u64::MAX).expect("open");
        spool.put(&report("good")).expect("put");
        let whole = serde_json::to_vec(&report("cut")).expect("json");
        std::fs::write(
            dir.path().join(format!("{:024}-cut.json", 0)),
            &whole[..whole.len() / 2],
        )
        .expect("write");
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 2);
        let err = spool
            .read(&listed[0])
            .expect_err("a torn report is refused");
        assert!(format!("{err:#}").contains("not a valid report"), "{err:#}");
        spool.quarantine(&listed[0], "torn");
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(spool.read(&listed[0]).expect("read").report_id, "good");
        assert!(dir
            .path()
            .join(format!("rejected/{:024}-cut.json", 0))
            .exists());
    }

    #[test]
    fn a_write_killed_before_its_rename_is_cleaned_up_and_never_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".tmp-000-partial.json"), b"{\"schema\":").expect("write");
        let spool = Spool::open(dir.path(), 10, u64::MAX).expect("open");
        assert!(spool.list().expect("list").is_empty());
        assert!(!dir.path().join(".tmp-000-partial.json").exists());
    }
}
