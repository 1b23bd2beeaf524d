//! Agent mode end to end: `auto-client run` against a real `auto-server` on loopback.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{self, free_port, misbehaving, stderr, wait_for, AgentDir, Key, Server};

fn signed_server(dir: &Path, port: u16) -> (Server, Key) {
    let secret = Server::create_key(dir, "agents");
    let key = Key::new(dir, "agents", &secret);
    (Server::start(dir, port, false), key)
}

fn host(server: &Server, key: &Key, name: &str) -> Value {
    server.get_signed(&format!("/api/v1/hosts/{name}"), key)
}

fn hostnames(server: &Server, key: &Key) -> Vec<String> {
    let list = server.get_signed("/api/v1/hosts", key);
    let items = list
        .as_array()
        .cloned()
        .or_else(|| list["hosts"].as_array().cloned())
        .unwrap_or_default();
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|h| h["hostname"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

#[test]
fn every_identity_branch_updates_the_cert_and_the_server_as_the_design_says() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, key) = signed_server(tmp.path(), 0);
    let a = AgentDir::new(tmp.path(), "a", "");
    let b = AgentDir::new(tmp.path(), "b", "");
    let c = AgentDir::new(tmp.path(), "c", "");

    // 1. New machine, name free: created, the cert gets the name.
    a.set_os("alpha", "12");
    let out = a.run(&server.url, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(a.cert().as_deref(), Some("alpha"));
    assert!(
        stderr(&out).contains("new host registered"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hostnames(&server, &key), ["alpha"]);

    // 2. Same name as the cert: a normal update.
    a.set_os("alpha", "12.1");
    let out = a.run(&server.url, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(a.cert().as_deref(), Some("alpha"));
    assert_eq!(
        host(&server, &key, "alpha")["plugins"]["os"]["facts"]["os_version"],
        "12.1"
    );

    // 1b. New machine, name taken: 409, nothing recorded, the cert stays empty.
    b.set_os("alpha", "11");
    let out = b.run(&server.url, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(b.cert(), None);
    assert!(
        stderr(&out).contains("already belongs to another host"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        host(&server, &key, "alpha")["plugins"]["os"]["facts"]["os_version"],
        "12.1",
        "b's data must not land on alpha"
    );
    assert!(
        b.spooled().is_empty(),
        "a 409 is an answer, not something to retry"
    );

    // 3. Renamed, new name free: the API renames the host; the cert follows.
    a.set_os("alpha2", "12.1");
    let out = a.run(&server.url, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(a.cert().as_deref(), Some("alpha2"));
    assert!(stderr(&out).contains("host renamed"), "{}", stderr(&out));
    assert_eq!(hostnames(&server, &key), ["alpha2"]);

    // 4. Renamed, new name taken: data applied to the old host, the cert keeps the old name.
    c.set_os("gamma", "10");
    assert_eq!(c.run(&server.url, Some(&key), &[]).status.code(), Some(0));
    assert_eq!(c.cert().as_deref(), Some("gamma"));
    c.set_os("alpha2", "10.5");
    let out = c.run(&server.url, Some(&key), &[]);
    assert_eq!(c.cert().as_deref(), Some("gamma"), "{}", stderr(&out));
    assert!(stderr(&out).contains("rename refused"), "{}", stderr(&out));
    assert_eq!(hostnames(&server, &key), ["alpha2", "gamma"]);
    assert_eq!(
        host(&server, &key, "gamma")["plugins"]["os"]["facts"]["os_version"],
        "10.5"
    );
    assert_eq!(
        host(&server, &key, "alpha2")["plugins"]["os"]["facts"]["os_version"],
        "12.1"
    );
}

#[test]
fn reports_collected_while_the_server_is_down_arrive_once_and_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let secret = Server::create_key(tmp.path(), "agents");
    let key = Key::new(tmp.path(), "agents", &secret);
    let api = format!("http://127.0.0.1:{port}");
    let a = AgentDir::new(tmp.path(), "a", "");
    // Four runs while nothing listens: each report goes to the spool.
    for v in 1..=4 {
        a.set_os("delta", &format!("v{v}"));
        let out = a.run(&api, Some(&key), &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("report is kept in the spool"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(a.spooled().len(), 4);
    // The server comes back; the next run sends the spool oldest first, then its own report.
    let server = Server::start(tmp.path(), port, false);
    a.set_os("delta", "v5");
    let out = a.run(&api, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(a.spooled().is_empty());
    assert_eq!(a.cert().as_deref(), Some("delta"));
    let changes = server.get_signed("/api/v1/hosts/delta/changes", &key);
    let mut rows = changes
        .as_array()
        .cloned()
        .or_else(|| changes["changes"].as_array().cloned())
        .expect("a list of changes");
    rows.sort_by_key(|r| r["id"].as_u64());
    let versions: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["item"] == "os_version" && r["action"] == "changed")
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_string();
            (text(&r["old"]), text(&r["new"]))
        })
        .collect();
    let expected: Vec<(String, String)> = (1..5)
        .map(|v| (format!("v{v}"), format!("v{}", v + 1)))
        .collect();
    assert_eq!(
        versions, expected,
        "each report applied once, in order: {changes}"
    );
    // Running again with nothing new changes nothing.
    assert_eq!(a.run(&api, Some(&key), &[]).status.code(), Some(0));
}

#[test]
fn an_agent_killed_while_spooling_loses_no_complete_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    // `marker` always fails: the server logs that failure with the report_id of every report it
    // applies, which is how this test sees each spooled report arrive (and arrive once).
    let a = AgentDir::new(
        tmp.path(),
        "a",
        &misbehaving("marker", "behaviour = \"error\"", ""),
    );
    a.set_os("epsilon", "1");
    // One run left alone: how long a run takes to reach its spool write on this machine.
    let started = Instant::now();
    let out = a.run(&api, None, &[]);
    let full = started.elapsed();
    assert!(
        stderr(&out).contains("report is kept in the spool"),
        "{}",
        stderr(&out)
    );
    assert_eq!(a.spooled().len(), 1);
    // Kill the agent with SIGKILL at varying moments around its spool write (half to 1.05 times
    // a whole run): some runs die before it, some during, some after.
    for i in 0..12u32 {
        let mut child = a
            .command(&api, None, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full / 2 + full * i / 20);
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
    }
    // Every file the spool lists is a complete report; count them and keep their ids.
    let spooled = a.spooled();
    let mut ids = Vec::new();
    for p in &spooled {
        let text = std::fs::read_to_string(p).expect("read");
        let report = serde_json::from_str::<auto_proto::Report>(&text)
            .unwrap_or_else(|e| panic!("{} is not a complete report: {e}", p.display()));
        ids.push(report.report_id);
    }
    assert!(!ids.is_empty(), "nothing was spooled");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spooled.len(), "one file per report: {spooled:?}");
    eprintln!(
        "{} reports spooled (1 + {} of 12 killed runs)",
        ids.len(),
        ids.len() - 1
    );
    // The server comes back: all of them arrive, each once.
    let server = Server::start(tmp.path(), port, true);
    let out = a.run(&api, None, &[]);
    let err = stderr(&out);
    assert!(a.spooled().is_empty(), "{err}");
    assert!(!err.contains("kept in the spool"), "{err}");
    assert!(!err.contains("rejected"), "{err}");
    let hosts: Value = ureq::get(&format!("{}/api/v1/hosts/epsilon", server.url))
        .call()
        .expect("get host")
        .into_json()
        .expect("json");
    assert_eq!(hosts["hostname"], "epsilon");
    let errors: Value = ureq::get(&format!("{}/api/v1/errors?limit=1000", server.url))
        .call()
        .expect("get errors")
        .into_json()
        .expect("json");
    let mut arrived: Vec<String> = errors
        .as_array()
        .expect("a list of errors")
        .iter()
        .filter(|e| e["plugin"] == "marker")
        .filter_map(|e| e["report_id"].as_str().map(String::from))
        .collect();
    arrived.sort();
    for id in &ids {
        let times = arrived.iter().filter(|a| *a == id).count();
        // (a CI rehearsal saw one spooled report applied 0 times once, not reproduced in 10
        // runs since, 4 of them beside two busy loops: the delivering run's log says why)
        assert_eq!(
            times, 1,
            "spooled report {id} applied {times} times: {errors}\nthe delivering run's log:\n{err}"
        );
    }
    // The spooled ones and this run's own report; nothing else (no partial write was sent).
    arrived.dedup();
    assert_eq!(arrived.len(), ids.len() + 1, "{errors}");
    // No partial write is left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(a.dir.join("spool"))
        .expect("spool")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn isolated_collectors_that_segfault_or_spin_give_error_entries_and_the_rest_arrives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, key) = signed_server(tmp.path(), 0);
    let extra = misbehaving(
        "crashy",
        "behaviour = \"segfault\"",
        "isolation = \"process\"",
    ) + &misbehaving(
        "spinner",
        "behaviour = \"spin\"",
        "isolation = \"process\"\ntimeout = \"1s\"",
    ) + &misbehaving("fine", "behaviour = \"ok\"", "");
    let a = AgentDir::new(tmp.path(), "a", &extra);
    a.set_os("zeta", "1");
    let started = Instant::now();
    let out = a.run(&server.url, Some(&key), &[]);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plugin=crashy") && err.contains("SIGSEGV"),
        "{err}"
    );
    assert!(
        err.contains("plugin=spinner") && err.contains("timeout"),
        "{err}"
    );
    // Delivered: the os data and the fine plugin's data are on the server.
    let h = host(&server, &key, "zeta");
    assert_eq!(h["plugins"]["os"]["facts"]["os_version"], "1", "{h}");
    assert_eq!(h["plugins"]["fine"]["facts"]["behaviour"], "ok", "{h}");
    // The failures are in the server's error log, naming the plugin.
    let errors = server.get_signed("/api/v1/errors", &key).to_string();
    assert!(
        errors.contains("crashy") && errors.contains("spinner"),
        "{errors}"
    );
}

#[test]
fn a_wrong_key_is_logged_clearly_and_the_report_stays_in_the_spool() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, _key) = signed_server(tmp.path(), 0);
    let wrong = Key::new(tmp.path(), "agents-wrong", "not-the-secret");
    let wrong = support::Key {
        id: "agents".to_string(),
        ..wrong
    };
    let a = AgentDir::new(tmp.path(), "a", "");
    a.set_os("eta", "1");
    let out = a.run(&server.url, Some(&wrong), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refused this agent's signature") && err.contains("401"),
        "{err}"
    );
    assert_eq!(a.spooled().len(), 1, "the report is kept");
    assert_eq!(a.cert(), None);
}

#[test]
fn interval_mode_picks_up_a_dropped_in_collector_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, key) = signed_server(tmp.path(), 0);
    let a = AgentDir::new(tmp.path(), "a", "");
    let plugins = std::fs::read_to_string(a.dir.join("plugins.toml")).expect("read");
    std::fs::write(
        a.dir.join("plugins.toml"),
        format!("dirs = [\"plugins.d\"]\n{plugins}"),
    )
    .expect("write");
    std::fs::create_dir(a.dir.join("plugins.d")).expect("mkdir");
    a.set_os("theta", "1");
    let mut child = support::KillOnDrop(
        a.command(&server.url, Some(&key), &["--interval", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    wait_for(Duration::from_secs(20), "the first report", || {
        Some(()).filter(|_| host(&server, &key, "theta")["hostname"] == "theta")
    });
    // Drop in a separately built collector while the agent runs (write, then rename).
    let root = support::workspace_root();
    let manifest = root.join("tests/fixtures/dropin-collector/Cargo.toml");
    let built = support::cargo_build(
        &["--manifest-path", manifest.to_str().expect("utf-8")],
        Some(&root.join("target/test-fixtures/target")),
    );
    let so = built.libs.get("dropin-uptime").expect("drop-in built");
    std::fs::copy(so, a.dir.join("plugins.d/.uptime.tmp")).expect("copy");
    std::fs::rename(
        a.dir.join("plugins.d/.uptime.tmp"),
        a.dir.join("plugins.d/libuptime.so"),
    )
    .expect("rename");
    let h = wait_for(
        Duration::from_secs(20),
        "the drop-in's data on the server",
        || {
            let h = host(&server, &key, "theta");
            Some(h).filter(|h| {
                h["plugins"]["uptime"]["volatile"]["uptime_seconds"]
                    .as_u64()
                    .is_some()
            })
        },
    );
    assert!(h["plugins"]["uptime"]["volatile"]["uptime_seconds"]
        .as_u64()
        .is_some_and(|s| s > 0));
    // SIGTERM: it stops within one cycle, with exit code 0.
    let (status, took) = support::sigterm(&mut child.0);
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
}
