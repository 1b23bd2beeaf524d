//! No per-thread malloc caches in ssh and salt mode: the process starts itself again with glibc's
//! tunable `glibc.malloc.tcache_count=0` (tunables are read only at a process's start).
//!
//! Why: glibc gives every thread a cache of freed chunks (up to 7 of each size up to 1 KB, ~240 KB
//! at most), never handed back while the thread lives. A fleet run has `--workers` host threads and
//! twice as many collector threads (600 at `--workers 200`), each of which parses some host's
//! package list now and then: their caches filled up as the run went on and held most of the
//! memory. Measured (2,000 targets over 100 testbed hosts, `--workers 200`, twelve collectors):
//! max RSS 111 MB with the caches, 53 MB without, wall time the same (README, "10,000 targets in
//! one run"). The arenas those threads share (`M_ARENA_MAX` 2, see [`super::collect_fleet`]) hand
//! freed memory on to the next host instead.
//!
//! The environment the user gave is put back in the restarted process (before any thread starts,
//! [`restore_env`]), so the commands and helpers it starts (salt mode's helper) see it unchanged.

use std::sync::atomic::{AtomicBool, Ordering};

/// glibc's variable of tunables.
const TUNABLES: &str = "GLIBC_TUNABLES";
/// What we add to it.
const NO_TCACHE: &str = "glibc.malloc.tcache_count=0";
/// The user's own value of `GLIBC_TUNABLES` (empty: none), set for the restarted process only.
const SAVED: &str = "AUTO_CLIENT_SAVED_GLIBC_TUNABLES";

/// Set once this process is the restarted one (or must not restart).
static DONE: AtomicBool = AtomicBool::new(false);

/// Called first thing in `app::run`, while there is one thread: in the restarted process, puts the
/// user's `GLIBC_TUNABLES` back.
pub fn restore_env() {
    let Some(saved) = std::env::var_os(SAVED) else {
        return;
    };
    DONE.store(true, Ordering::Relaxed);
    std::env::remove_var(SAVED);
    if saved.is_empty() {
        std::env::remove_var(TUNABLES);
    } else {
        std::env::set_var(TUNABLES, saved);
    }
}

/// Starts this program again, same arguments, with the thread caches off; returns only if it
/// cannot (not glibc, already restarted, or the exec failed: then it goes on with them).
pub fn off() {
    if DONE.swap(true, Ordering::Relaxed) || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_default();
        let user = std::env::var_os(TUNABLES).unwrap_or_default();
        let mut tunables = user.clone();
        if !tunables.is_empty() {
            tunables.push(":");
        }
        tunables.push(NO_TCACHE);
        let e = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env(TUNABLES, tunables)
            .env(SAVED, user)
            .exec();
        tracing::debug!(error = %e, "cannot restart without malloc's thread caches: going on with them");
    }
}
