//! Isolation: the worker process of an isolated collector is held to that collector's own timeout.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{entry, misbehave, misbehaving, AUTO_CLIENT};

/// The `__worker` processes whose parent is `parent`.
fn workers_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(parent) && cmdline.split(|b| *b == 0).any(|a| a == b"__worker")
        })
        .collect()
}

/// A collector spinning in its own code in a worker process with `timeout = "1s"` (far below the
/// default 10 s), beside a slow collector that keeps the host running for 6 s: the worker must be
/// gone at its own deadline, while the host still runs (the host kills every worker when it
/// exits, which would hide a worker held to the default timeout).
#[test]
fn an_isolated_worker_is_gone_at_its_plugins_own_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = misbehaving("spinner", "spin", "timeout = \"1s\"\nisolation = \"process\"")
        + &entry(
            "slow",
            &misbehave(),
            "symbol = \"misbehave_v1\"\ntimeout = \"20s\"\noptions = { behaviour = \"hang_command\", sleep = \"6\" }",
        );
    let plugins = dir.path().join("plugins.toml");
    std::fs::write(&plugins, toml).expect("write plugins.toml");
    let mut host = Command::new(AUTO_CLIENT)
        .arg("--plugins")
        .arg(&plugins)
        .args(["collect", "--format", "json"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("auto-client runs");
    let started = Instant::now();
    let seen = loop {
        let found = workers_of(host.id());
        if !found.is_empty() {
            break (Instant::now(), found);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no worker process appeared"
        );
        assert!(host.try_wait().expect("wait").is_none(), "the host ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (seen_at, pids) = seen;
    // The deadline is 1 s after the worker started; 1.5 s of slack for a loaded machine.
    let limit = seen_at + Duration::from_millis(2500);
    let gone_at = loop {
        let alive: Vec<u32> = workers_of(host.id())
            .into_iter()
            .filter(|p| pids.contains(p))
            .collect();
        if alive.is_empty() {
            break Instant::now();
        }
        assert!(
            Instant::now() < limit,
            "the worker {alive:?} still runs {:?} after it started; its plugin's timeout is 1s",
            seen_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        host.try_wait().expect("wait").is_none(),
        "the host ended before the check: the worker may have died with it"
    );
    assert!(
        gone_at >= seen_at + Duration::from_millis(900),
        "killed before its deadline"
    );
    let out = host.wait_with_output().expect("the host ends");
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default())
            .unwrap_or_else(|e| {
                panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr))
            });
    assert_eq!(
        report["plugins"]["spinner"]["error"]["kind"], "timeout",
        "{report}"
    );
    assert_eq!(report["plugins"]["slow"]["status"], "ok", "{report}");
}
