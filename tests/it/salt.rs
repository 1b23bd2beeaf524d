//! salt mode end to end: a real salt-master and minions (scripts/salt.sh; each minion with its own
//! hostname and machine-id), collected by the real `auto-client` into the real `auto-server`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::support::{self, bin, stderr, Key, Server};

/// A master and minions of its own, stopped on drop.
struct SaltBed {
    dir: PathBuf,
}

impl SaltBed {
    fn up(parent: &Path, minions: usize) -> SaltBed {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the salt tests need root; CI runs as root"
        );
        let bed = SaltBed {
            dir: parent.join("salt"),
        };
        bed.script(&["up", &minions.to_string()]);
        bed
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(support::workspace_root().join("scripts/salt.sh"))
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("salt.sh runs");
        assert!(out.status.success(), "salt.sh {args:?}: {}", stderr(&out));
    }

    fn config_dir(&self) -> PathBuf {
        PathBuf::from(
            std::fs::read_to_string(self.dir.join("master-config-dir"))
                .expect("master-config-dir")
                .trim(),
        )
    }
}

impl Drop for SaltBed {
    fn drop(&mut self) {
        let _ = Command::new(support::workspace_root().join("scripts/salt.sh"))
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root, python3 and a Salt master with minions: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn minions_are_collected_through_the_master_and_a_stopped_minion_gets_its_own_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bed = SaltBed::up(tmp.path(), 4);
    bed.script(&["stop-minion", "minion-04"]);

    // Long enough for Salt's own verdict on a minion that does not answer (its job timeout plus a
    // find_job probe) to arrive before the host gives up on the collector.
    let toml = test_support::shipped_plugins_toml(|_| "timeout = \"40s\"".to_string());
    let plugins = tmp.path().join("plugins.toml");
    std::fs::write(&plugins, toml).expect("write");

    let secret = Server::create_key(tmp.path(), "master");
    let key = Key::new(tmp.path(), "master", &secret);
    let server = Server::start(tmp.path(), 0, false);
    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["run", "--mode", "salt", "--api", &server.url])
        .args(["--hosts", "minion-01,minion-02,minion-03,minion-04"])
        .args(["--key-id", "master"])
        .arg("--key-file")
        .arg(&key.file)
        .arg("--salt-command")
        .arg(support::workspace_root().join("target/salt-venv/bin/salt"))
        .arg("--salt-config-dir")
        .arg(bed.config_dir())
        .arg("--spool-dir")
        .arg(tmp.path().join("spool"))
        .env_remove("RUST_LOG")
        .output()
        .expect("auto-client runs");
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stopped minion gives exit code 1: {err}"
    );

    // The three answering minions are on the server, each its own machine, every collector ok.
    let mut machine_ids = BTreeSet::new();
    for name in ["minion-01", "minion-02", "minion-03"] {
        let h = server.get_signed(&format!("/api/v1/hosts/{name}"), &key);
        assert_eq!(h["hostname"], name, "{h}\n{err}");
        assert_eq!(
            h["plugins"]["os"]["facts"]["os_name"], "Debian GNU/Linux",
            "{h}"
        );
        assert!(
            h["plugins"]["cpu"]["facts"]["thread_count"]
                .as_u64()
                .is_some_and(|t| t >= 1),
            "{h}"
        );
        assert!(machine_ids.insert(h["machine_id"].as_str().expect("machine_id").to_string()));
    }
    // Every collector is ok on every answering minion: each one's data is on the server and no
    // error names any of them.
    let errors = server.get_signed("/api/v1/errors?limit=1000", &key);
    let rows = errors.as_array().expect("a list of errors");
    for name in ["minion-01", "minion-02", "minion-03"] {
        let h = server.get_signed(&format!("/api/v1/hosts/{name}"), &key);
        for plugin in test_support::SHIPPED {
            // where the machine has no DMI, every board fact is unknown (null with a reason):
            // nothing to store, and no error either (checked below)
            if plugin == "board" && !std::path::Path::new("/sys/class/dmi/id").exists() {
                continue;
            }
            assert!(
                h["plugins"][plugin].is_object(),
                "{name}: no {plugin} data: {h}"
            );
        }
        let named: Vec<&Value> = rows
            .iter()
            .filter(|e| e.to_string().contains(name))
            .collect();
        assert!(named.is_empty(), "{name}: {named:?}");
    }
    // The stopped minion: every collector says the minion did not answer, naming it.
    for plugin in test_support::SHIPPED {
        assert!(
            rows.iter().any(|e| e["plugin"] == plugin
                && e.to_string().contains("minion-04")
                && e.to_string().contains("unreachable")),
            "no unreachable error for {plugin} on minion-04: {errors}"
        );
    }
    assert!(err.contains("minion minion-04 is unreachable"), "{err}");
}

/// Issue 11: the six newer collectors cost no more Salt jobs. With all twelve collectors of
/// plugins.toml, two answering minions are collected with ONE Salt job for the fleet (the batch
/// of every learned command), every collector `ok` on each, and no command run on its own after it.
#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root, python3 and a Salt master with minions: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn with_all_twelve_collectors_the_fleet_is_one_salt_job() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bed = SaltBed::up(tmp.path(), 2);
    let toml = test_support::all_plugins_toml(|_| "timeout = \"40s\"".to_string());
    let plugins = tmp.path().join("plugins.toml");
    std::fs::write(&plugins, toml).expect("write");
    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["collect", "--mode", "salt", "--format", "json"])
        .args(["--hosts", "minion-01,minion-02"])
        .arg("--salt-command")
        .arg(support::workspace_root().join("target/salt-venv/bin/salt"))
        .arg("--salt-config-dir")
        .arg(bed.config_dir())
        .env("RUST_LOG", "info")
        .output()
        .expect("auto-client runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report a line"))
        .collect();
    let mut hosts: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["hostname"].as_str())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["minion-01", "minion-02"], "{err}");
    for r in &reports {
        let names: Vec<&String> = r["plugins"].as_object().expect("plugins").keys().collect();
        assert_eq!(names.len(), 12, "{r}");
        for name in test_support::ALL {
            assert_eq!(r["plugins"][name]["status"], "ok", "{name}: {r}");
        }
        let packages = r["plugins"]["packages"]["data"]["lists"]["packages"]["parts"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(packages > 100, "packages listed: {packages}");
    }
    // One job for the fleet, and nothing run outside it.
    let jobs: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("salt jobs published for the fleet"))
        .collect();
    assert_eq!(jobs.len(), 1, "{err}");
    assert!(jobs[0].contains("jobs=1"), "{}", jobs[0]);
    assert!(
        err.contains("ran the collectors' commands as one Salt job"),
        "{err}"
    );
}

/// Issue 14: `run --mode salt --interval` keeps its one Python helper (~1 s to start) for every
/// cycle: over three cycles the auto-client process has one helper child, the same process.
#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root, python3 and a Salt master with minions: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn run_with_an_interval_keeps_one_salt_helper_for_every_cycle() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().expect("tempdir");
    let bed = SaltBed::up(tmp.path(), 1);
    let toml = test_support::shipped_plugins_toml(|_| "timeout = \"40s\"".to_string());
    let plugins = tmp.path().join("plugins.toml");
    std::fs::write(&plugins, toml).expect("write");
    let secret = Server::create_key(tmp.path(), "master");
    let key = Key::new(tmp.path(), "master", &secret);
    let server = Server::start(tmp.path(), 0, false);
    let log = tmp.path().join("run.log");
    let mut child = support::spawn_logged(
        Command::new(bin("auto-client"))
            .arg("--plugins")
            .arg(&plugins)
            .args(["run", "--mode", "salt", "--api", &server.url])
            .args(["--hosts", "minion-01", "--interval", "1s"])
            .args(["--key-id", "master"])
            .arg("--key-file")
            .arg(&key.file)
            .arg("--salt-command")
            .arg(support::workspace_root().join("target/salt-venv/bin/salt"))
            .arg("--salt-config-dir")
            .arg(bed.config_dir())
            .arg("--spool-dir")
            .arg(tmp.path().join("spool")),
        &log,
    );
    // The helper processes of auto-client seen while it runs (its python children).
    let pid = child.0.id();
    let mut helpers = BTreeSet::new();
    let mut look = || {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for c in children.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("python") {
                helpers.insert(c.to_string());
            }
        }
    };
    let reports = || {
        server
            .get_signed("/api/v1/hosts/minion-01/reports", &key)
            .as_array()
            .map_or(0, Vec::len)
    };
    support::wait_for(Duration::from_secs(120), "three cycles' reports", || {
        look();
        Some(()).filter(|_| reports() >= 3)
    });
    let (status, _) = support::sigterm(&mut child.0);
    let err = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(0), "{err}");
    let cycles = err.lines().filter(|l| l.contains("1 hosts: 1 ok")).count();
    assert!(cycles >= 3, "a summary a cycle: {err}");
    assert_eq!(
        helpers.len(),
        1,
        "one helper for every cycle: {helpers:?}\n{err}"
    );
    assert_eq!(
        err.matches("salt helper started").count(),
        1,
        "one connector for every cycle: {err}"
    );
}
