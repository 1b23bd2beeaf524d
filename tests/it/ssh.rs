//! ssh mode end to end: real sshd hosts, each in its own network namespace (scripts/testbed.sh),
//! collected by the real `auto-client` into the real `auto-server`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::support::{self, bin, stderr, Key, Server};

/// A testbed of its own (directory, address range, namespace prefix, bridge), torn down on drop.
struct Testbed {
    dir: PathBuf,
}

impl Testbed {
    /// `slot` keeps concurrent testbeds apart: address range, namespace prefix, bridge.
    fn up(parent: &Path, hosts: usize, slot: u8) -> Testbed {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the ssh tests need root (network namespaces); CI runs as root"
        );
        let dir = parent.join("testbed");
        let t = Testbed { dir };
        let (net, name, bridge) = (
            format!("10.{}", 240 + slot),
            format!("e2e{slot}"),
            format!("ae2e{slot}"),
        );
        t.script(&[
            "up",
            &hosts.to_string(),
            "--net",
            &net,
            "--name",
            &name,
            "--bridge",
            &bridge,
        ]);
        t
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(support::workspace_root().join("scripts/testbed.sh"))
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("testbed.sh runs");
        assert!(
            out.status.success(),
            "testbed.sh {args:?}: {}",
            stderr(&out)
        );
    }

    fn hosts(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.join("hosts.txt"))
            .expect("hosts.txt")
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(support::workspace_root().join("scripts/testbed.sh"))
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

/// A collector's keys in these tests: `timeout` (a hung host costs that), and nic's veths.
fn testbed_keys(name: &str, timeout: &str) -> String {
    format!(
        "timeout = {timeout:?}\n{}",
        // the testbed's hosts reach the bridge through a veth, which nic skips by default
        if name == "nic" {
            "options = { include_veth = true }\n"
        } else {
            ""
        }
    )
}

/// plugins.toml with the six shipped collectors and a short timeout (a hung host costs that).
fn shipped_plugins(dir: &Path) -> PathBuf {
    let toml = test_support::shipped_plugins_toml(|name| testbed_keys(name, "3s"));
    let path = dir.join("plugins.toml");
    std::fs::write(&path, toml).expect("write plugins.toml");
    path
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn twenty_hosts_are_collected_into_the_server_and_each_broken_host_gets_its_own_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 24, 1);
    let plugins = shipped_plugins(tmp.path());
    let hosts = tb.hosts();
    assert_eq!(hosts.len(), 24);

    // Four hosts go wrong, each its own way.
    let known_hosts = tmp.path().join("known_hosts");
    let recorded = std::fs::read_to_string(tb.dir.join("known_hosts")).expect("known_hosts");
    let kept: String = recorded
        .lines()
        .filter(|l| !l.starts_with("node-021,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&known_hosts, kept).expect("write known_hosts"); // node-021: unknown key
    tb.script(&["rekey", "node-022"]); // changed key
    tb.script(&["stop", "node-023"]); // sshd stopped: connection refused
    tb.script(&["hang", "node-024"]); // every command hangs

    // The server knows the hosts to collect: registered with their addresses.
    let secret = Server::create_key(tmp.path(), "control");
    let key = Key::new(tmp.path(), "control", &secret);
    for (name, address) in &hosts {
        let out = Command::new(bin("auto-server"))
            .args([
                "hosts",
                "add",
                name,
                "--address",
                address,
                "--db",
                &Server::db_url(tmp.path()),
            ])
            .output()
            .expect("auto-server hosts add");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let server = Server::start(tmp.path(), 0, false);
    let pending = server.get_signed("/api/v1/hosts/pending", &key);
    assert_eq!(pending.as_array().map(Vec::len), Some(24), "{pending}");

    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args([
            "run",
            "--mode",
            "ssh",
            "--api",
            &server.url,
            "--workers",
            "8",
        ])
        .args(["--key-id", "control"])
        .arg("--key-file")
        .arg(&key.file)
        .arg("--ssh-identity")
        .arg(tb.dir.join("id_ed25519"))
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--spool-dir")
        .arg(tmp.path().join("spool"))
        .env("RUST_LOG", "warn,auto_client::remote::ssh=debug")
        .output()
        .expect("auto-client runs");
    let err = stderr(&out);
    // A good host ran all the collectors' learned commands in one request (a dry run learned
    // them); the hung host's batch timed out and its collectors ran command by command.
    let batched = err
        .lines()
        .find(|l| l.contains("node-001") && l.contains("in one request"))
        .unwrap_or_else(|| panic!("no batch line for node-001: {err}"));
    let field = |name: &str| -> usize {
        let at = batched.find(&format!("{name}=")).expect("field") + name.len() + 1;
        let digits: String = batched[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a number")
    };
    assert!(
        field("commands") >= 6 && field("answered") == field("commands"),
        "{batched}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed host gives exit code 1: {err}"
    );
    assert!(err.contains("24 hosts: 21 ok, 3 failed"), "{err}");
    for (host, words) in [
        ("node-021", "host_key_unknown"),
        ("node-022", "host_key_changed"),
        ("node-023", "connect_refused"),
    ] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{host}:")))
            .unwrap_or_else(|| panic!("no summary line for {host}: {err}"));
        assert!(line.contains(words), "{line}");
    }

    // The twenty good hosts are on the server, each its own: its hostname and machine-id.
    let mut machine_ids = std::collections::BTreeSet::new();
    for (name, _) in hosts.iter().take(20) {
        let h = server.get_signed(&format!("/api/v1/hosts/{name}"), &key);
        assert_eq!(h["hostname"], name.as_str(), "{h}");
        assert_eq!(
            h["plugins"]["os"]["facts"]["os_name"], "Debian GNU/Linux",
            "{h}"
        );
        let id = h["machine_id"].as_str().expect("machine_id").to_string();
        assert!(machine_ids.insert(id), "machine ids are distinct");
        let address = &hosts.iter().find(|(n, _)| n == name).expect("listed").1;
        let nic_addresses: Vec<&str> = h["plugins"]["nic"]["lists"]["interfaces"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a["address"].as_str())
            .collect();
        assert!(nic_addresses.contains(&address.as_str()), "{name}: {h}");
    }
    // The hung host's collectors timed out: its report says so, plugin by plugin.
    let errors = server.get_signed("/api/v1/errors", &key).to_string();
    assert!(
        errors.contains("node-024") && errors.contains("timeout"),
        "{errors}"
    );
    // The broken hosts are still due; the good ones are not.
    let pending: Vec<String> = server
        .get_signed("/api/v1/hosts/pending", &key)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|h| h["hostname"].as_str().map(String::from))
        .collect();
    assert_eq!(pending, ["node-021", "node-022", "node-023"]);
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn password_login_works_and_a_wrong_password_is_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 1, 2);
    let plugins = shipped_plugins(tmp.path());
    let (name, address) = tb.hosts().remove(0);
    let target = format!("{name}={address}");
    let collect = |password_file: &Path| {
        Command::new(bin("auto-client"))
            .arg("--plugins")
            .arg(&plugins)
            .args(["collect", "--mode", "ssh", "--hosts", &target])
            .arg("--ssh-password-file")
            .arg(password_file)
            .arg("--known-hosts")
            .arg(tb.dir.join("known_hosts"))
            .env_remove("RUST_LOG")
            .output()
            .expect("auto-client runs")
    };
    let out = collect(&tb.dir.join("password"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one report");
    assert_eq!(report["hostname"], name.as_str());
    assert_eq!(report["agent"]["mode"], "ssh");

    let wrong = tmp.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let out = collect(&wrong);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("auth_failed") && err.contains(&name), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn a_command_that_hangs_on_the_host_is_killed_there_at_its_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 1, 3);
    let (name, address) = tb.hosts().remove(0);
    // a sleep no other test runs, so that the process table tells whether it was left behind;
    // in a child, a grandchild (`sh -c`) and a pipeline too: the whole tree is killed (issue 14)
    let marker = "sleep 47.125";
    let plugins = tmp.path().join("plugins.toml");
    std::fs::write(
        &plugins,
        support::misbehaving(
            "hangs",
            r#"behaviour = "hang_command", sleep = "47.125 & sh -c 'sleep 47.125; :' & (sleep 47.125 | cat); wait""#,
            r#"timeout = "2s""#,
        ) + &support::misbehaving("fine", r#"behaviour = "ok""#, ""),
    )
    .expect("write plugins.toml");
    let started = std::time::Instant::now();
    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args([
            "collect",
            "--mode",
            "ssh",
            "--hosts",
            &format!("{name}={address}"),
        ])
        .arg("--ssh-identity")
        .arg(tb.dir.join("id_ed25519"))
        .arg("--known-hosts")
        .arg(tb.dir.join("known_hosts"))
        .env_remove("RUST_LOG")
        .output()
        .expect("auto-client runs");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one report ({e}): {}", stderr(&out)));
    assert_eq!(report["plugins"]["hangs"]["status"], "error", "{report}");
    assert_eq!(
        report["plugins"]["hangs"]["error"]["kind"], "timeout",
        "{report}"
    );
    assert_eq!(report["plugins"]["fine"]["status"], "ok", "{report}");
    // the limit (2 s, the shortest collector timeout) is a hard cap: the host is done within it
    // and a small bound (connect, the kills, the outputs' way back)
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "a 2 s limit, the run took {took:?}: {}",
        stderr(&out)
    );
    // the host's watchdog killed it: give the kill a moment to land, then look
    std::thread::sleep(std::time::Duration::from_secs(2));
    let left = Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep runs");
    assert!(
        left.stdout.is_empty(),
        "`{marker}` still runs on the host: pids {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn a_modern_host_is_asked_only_the_primaries_in_one_request() {
    // Issue 14: the batch runs each collector's primary command only; a fallback (nic's text form
    // of `ip`, asked only where `ip -j` fails) is not learned, and a host whose primaries all
    // succeed is asked nothing more after its one batch.
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 2, 4);
    let plugins = shipped_plugins(tmp.path());
    let hosts: Vec<String> = tb
        .hosts()
        .iter()
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["collect", "--mode", "ssh", "--hosts", &hosts.join(",")])
        .arg("--ssh-identity")
        .arg(tb.dir.join("id_ed25519"))
        .arg("--known-hosts")
        .arg(tb.dir.join("known_hosts"))
        .env(
            "RUST_LOG",
            "warn,auto_client::remote::ssh=debug,auto_client::remote::learn=debug",
        )
        .output()
        .expect("auto-client runs");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let learned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("learned by the dry run"))
        .collect();
    assert!(learned.len() >= 6, "{err}");
    assert!(
        learned.iter().any(|l| l.contains("ip -d -j addr")),
        "the primary is learned: {err}"
    );
    assert!(
        !learned.iter().any(|l| l.contains("ip -d -o link show")),
        "the text fallback is not learned: {err}"
    );
    for (name, _) in tb.hosts() {
        let batch: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(&name) && l.contains("in one request"))
            .collect();
        assert_eq!(batch.len(), 1, "one batch for {name}: {err}");
        assert!(
            batch[0].contains(&format!("commands={}", learned.len()))
                && batch[0].contains(&format!("answered={}", learned.len())),
            "{name} ran every learned command in its batch: {}",
            batch[0]
        );
    }
    assert!(
        !err.contains("not prefetched"),
        "a modern host needs no second round trip: {err}"
    );
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn with_all_twelve_collectors_a_modern_host_is_asked_everything_in_one_request() {
    // Issue 11: the six new collectors (virt, packages, services, gpu, controller, psu) cost no
    // round trip of their own: the dry run learns their commands too, and a host whose commands
    // succeed serves exactly one exec request, the batch, for all twelve collectors. Counted by
    // the hosts' sshd (LogLevel VERBOSE logs every exec request), not by the client.
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 2, 5);
    let hosts = tb.hosts();
    for (name, _) in &hosts {
        tb.script(&["verbose", name]);
    }
    // timeouts long enough for a loaded machine: this test is about requests, not limits
    let toml = test_support::all_plugins_toml(|name| testbed_keys(name, "20s"));
    let plugins = tmp.path().join("plugins.toml");
    std::fs::write(&plugins, toml).expect("write plugins.toml");
    let targets: Vec<String> = hosts
        .iter()
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    let out = Command::new(bin("auto-client"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["collect", "--mode", "ssh", "--format", "json"])
        .args(["--hosts", &targets.join(",")])
        .arg("--ssh-identity")
        .arg(tb.dir.join("id_ed25519"))
        .arg("--known-hosts")
        .arg(tb.dir.join("known_hosts"))
        .env(
            "RUST_LOG",
            "warn,auto_client::remote::ssh=debug,auto_client::remote::learn=debug",
        )
        .output()
        .expect("auto-client runs");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");

    // Every host's report has all twelve collectors, each ok (a per-field degradation, such as
    // a list `unavailable` where the testbed lacks the tool, is part of an ok collector's data).
    let reports: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reports on stdout ({e}): {err}"));
    assert_eq!(reports.len(), hosts.len(), "{err}");
    for (name, _) in &hosts {
        let report = reports
            .iter()
            .find(|r| r["hostname"] == name.as_str())
            .unwrap_or_else(|| panic!("no report for {name}: {reports:?}"));
        let plugins = report["plugins"].as_object().expect("plugins");
        assert_eq!(
            plugins.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut all = test_support::ALL.to_vec();
                all.sort_unstable();
                all
            },
            "{name}: {report}"
        );
        for collector in test_support::ALL {
            assert_eq!(
                plugins[collector]["status"], "ok",
                "{name}: {collector}: {}",
                plugins[collector]
            );
        }
        // the answers came from the host: its own identity, and this machine's package database
        assert_eq!(
            plugins["os"]["data"]["identity"]["hostname"],
            name.as_str(),
            "{report}"
        );
        let packages = plugins["packages"]["data"]["lists"]["packages"]["parts"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(packages > 100, "{name}: {packages} packages: {report}");
    }

    // The dry run learned the commands of all twelve: one batch a host ran them all.
    let learned = err
        .lines()
        .filter(|l| l.contains("learned by the dry run"))
        .count();
    assert!(learned >= test_support::ALL.len(), "{err}");
    for (name, _) in &hosts {
        let batch: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(name.as_str()) && l.contains("in one request"))
            .collect();
        assert_eq!(batch.len(), 1, "one batch for {name}: {err}");
        assert!(
            batch[0].contains(&format!("commands={learned} "))
                && batch[0].contains(&format!("answered={learned} "))
                && batch[0].contains("killed_at_limit=0 "),
            "{name} ran every learned command in its batch: {}",
            batch[0]
        );
    }
    // What each host saw: one exec request (the batch) in the whole collection; the client's
    // log names any command asked outside it.
    let outside: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not prefetched"))
        .collect();
    for (name, _) in &hosts {
        let log = std::fs::read_to_string(tb.dir.join("hosts").join(name).join("sshd.log"))
            .expect("the host's sshd.log");
        let sessions = log
            .lines()
            .filter(|l| l.contains("Starting session: command"))
            .count();
        assert_eq!(
            sessions, 1,
            "{name} served {sessions} exec requests; asked outside the batch: {outside:#?}\n{log}"
        );
    }
    assert!(
        outside.is_empty(),
        "a modern host needs no second round trip; asked outside the batch: {outside:#?}"
    );
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn run_with_an_interval_collects_the_fleet_every_cycle_and_stops_on_sigterm() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(tmp.path(), 2, 6);
    let plugins = shipped_plugins(tmp.path());
    let secret = Server::create_key(tmp.path(), "control");
    let key = Key::new(tmp.path(), "control", &secret);
    let server = Server::start(tmp.path(), 0, false);
    let log = tmp.path().join("run.log");
    let targets: Vec<String> = tb
        .hosts()
        .iter()
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    let mut child = support::spawn_logged(
        Command::new(bin("auto-client"))
            .arg("--plugins")
            .arg(&plugins)
            .args(["run", "--mode", "ssh", "--api", &server.url])
            .args(["--hosts", &targets.join(","), "--interval", "1s"])
            .args(["--key-id", "control"])
            .arg("--key-file")
            .arg(&key.file)
            .arg("--ssh-identity")
            .arg(tb.dir.join("id_ed25519"))
            .arg("--known-hosts")
            .arg(tb.dir.join("known_hosts"))
            .arg("--spool-dir")
            .arg(tmp.path().join("spool")),
        &log,
    );
    // Before: `--interval` was ignored in ssh and salt mode (one cycle, then exit).
    let reports = |host: &str| {
        server
            .get_signed(&format!("/api/v1/hosts/{host}/reports"), &key)
            .as_array()
            .map_or(0, Vec::len)
    };
    support::wait_for(
        Duration::from_secs(60),
        "three reports of each host",
        || Some(()).filter(|_| reports("node-001") >= 3 && reports("node-002") >= 3),
    );
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "it keeps running between cycles"
    );
    let (status, took) = support::sigterm(&mut child.0);
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    let err = std::fs::read_to_string(&log).expect("log");
    let cycles = err.lines().filter(|l| l.contains("2 hosts: 2 ok")).count();
    assert!(cycles >= 3, "a summary a cycle: {err}");
    assert!(err.contains("agent stopped by signal"), "{err}");
}
