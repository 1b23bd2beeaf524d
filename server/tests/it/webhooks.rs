//! Webhooks (issue 13, "Events") against a real HTTP receiver on loopback: a `std` TcpListener
//! that is down at first and comes up later, and that checks nothing itself (the test verifies
//! every signature with the secret, per docs/contracts.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::{Backend, Machine, Server};

const SECRET: &str = "webhook-test-secret-0123456789";

/// What the receiver got: the headers (lower-case names) and the raw body.
#[derive(Debug, Clone)]
struct Delivery {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The documented check: HMAC-SHA256 under the secret over `TIMESTAMP.BODY`, in
    /// `x-auto-signature` as `sha256=<hex>`.
    fn verifies_with(&self, secret: &str) -> bool {
        let Some(sig) = self.headers.get("x-auto-signature") else {
            return false;
        };
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(given) = hex::decode(hex_sig) else {
            return false;
        };
        let ts = self
            .headers
            .get("x-auto-timestamp")
            .cloned()
            .unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&given).is_ok()
    }
}

/// A free port on loopback, with nothing listening on it (the receiver is "down").
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts the receiver on `port`: answers 200 to every POST and keeps what it got.
fn receiver(port: u16) -> Arc<Mutex<Vec<Delivery>>> {
    receiver_with(port, Duration::ZERO)
}

/// The same, taking `delay` before each answer.
fn receiver_with(port: u16, delay: Duration) -> Arc<Mutex<Vec<Delivery>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver's port");
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || !line.starts_with("POST ") {
                continue;
            }
            let mut headers = BTreeMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            store.lock().expect("lock").push(Delivery { headers, body });
            std::thread::sleep(delay);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    got
}

/// Waits until the receiver holds `n` deliveries (60 s at most), then 2 s more for any extra.
fn wait_for(got: &Arc<Mutex<Vec<Delivery>>>, n: usize) -> Vec<Delivery> {
    let start = Instant::now();
    while got.lock().expect("lock").len() < n && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    got.lock().expect("lock").clone()
}

fn admin_ok(server: &Server, args: &[&str]) -> String {
    let out = server.admin(args);
    assert!(
        out.status.success(),
        "auto-server {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn subscribe(server: &Server, port: u16, filters: &[&str]) -> String {
    let file = server.dir.join("hook.secret");
    std::fs::write(&file, format!("{SECRET}\n")).expect("secret file");
    let url = format!("http://127.0.0.1:{port}/hook");
    let file = file.display().to_string();
    let mut args = vec![
        "webhooks",
        "add",
        url.as_str(),
        "--secret-file",
        file.as_str(),
    ];
    args.extend_from_slice(filters);
    admin_ok(server, &args).trim().to_owned()
}

/// Polls `webhooks log` until a line satisfies `want` (30 s at most); returns the log.
fn log_until(server: &Server, want: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let log = admin_ok(server, &["webhooks", "log", "--limit", "1000"]);
        if log.lines().any(&want) || start.elapsed() > Duration::from_secs(30) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const FAST: [&str; 6] = [
    "--webhook-timeout-secs",
    "2",
    "--webhook-backoff-max-secs",
    "1",
    "--webhook-max-attempts",
    "100",
];

fn removed_dimms_arrive_signed_once_the_receiver_comes_back(backend: Backend) {
    let port = free_port();
    let server = Server::start_with(backend, &FAST);
    let id = subscribe(
        &server,
        port,
        &[
            "--component",
            "memory.modules,disk.*",
            "--action",
            "removed",
            "--host",
            "web-*",
        ],
    );
    let list = admin_ok(&server, &["webhooks", "list"]);
    assert!(
        list.contains("component=memory.modules,disk.*") && list.contains("action=removed"),
        "{list}"
    );

    let mut web = Machine::new("web-1");
    let mut db = Machine::new("db-1");
    assert_eq!(server.report(&web.report(None)).status, 201);
    assert_eq!(server.report(&db.report(None)).status, 201);
    // web-1 loses two DIMMs and gains a changed fact; db-1 (not web-*) loses a DIMM
    let gone: BTreeSet<String> = web
        .parts_mut("memory", "modules")
        .drain(0..2)
        .map(|p| p["id"].as_str().expect("a part id").to_owned())
        .collect();
    *web.fact_mut("os", "os_version") = Value::from("99.9");
    db.parts_mut("memory", "modules").remove(0);
    assert_eq!(server.report(&web.report(Some("web-1"))).status, 200);
    assert_eq!(server.report(&db.report(Some("db-1"))).status, 200);
    // and web-1 loses a disk
    let disk = web.parts_mut("disk", "disks").remove(0)["id"]
        .as_str()
        .expect("a disk id")
        .to_owned();
    assert_eq!(server.report(&web.report(Some("web-1"))).status, 200);

    // the receiver is down: attempts fail and are logged, the events stay pending
    let log = log_until(&server, |l| l.contains("attempt=2") && l.contains("error="));
    assert!(
        log.lines().any(|l| l.contains("attempt=2")
            && l.contains("error=\"connect")
            && l.contains("event_state=pending")),
        "the failed attempts are in the log:\n{log}"
    );

    let got = receiver(port);
    let got = wait_for(&got, 3);
    let events: Vec<Value> = got.iter().map(Delivery::json).collect();
    let mut items: BTreeSet<(String, String)> = BTreeSet::new();
    for (d, e) in got.iter().zip(&events) {
        assert!(d.verifies_with(SECRET), "a valid signature: {e}");
        assert!(
            !d.verifies_with("another-secret-0123456789"),
            "a wrong secret does not verify"
        );
        assert_eq!(
            d.headers.get("x-auto-event-id"),
            e["event_id"].as_str().map(str::to_owned).as_ref()
        );
        assert_eq!(e["host"], "web-1", "{e}");
        assert_eq!(e["action"], "removed", "{e}");
        assert_eq!(e["webhook_id"].to_string(), id);
        assert!(!e["old"].is_null() && e["new"].is_null(), "{e}");
        items.insert((
            e["component"].as_str().unwrap_or("").to_owned(),
            e["item"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let mut want: BTreeSet<(String, String)> = gone
        .iter()
        .map(|i| ("memory.modules".to_owned(), i.clone()))
        .collect();
    want.insert(("disk.disks".to_owned(), disk));
    assert_eq!(
        items, want,
        "every matching event, none that the filter excludes"
    );
    assert_eq!(got.len(), 3, "each event once: {events:?}");
    let ids: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "event ids are distinct");
    // a body tampered with does not verify either
    let mut forged = got[0].clone();
    forged.body = String::from_utf8_lossy(&forged.body)
        .replace("web-1", "web-2")
        .into_bytes();
    assert!(!forged.verifies_with(SECRET));

    let list = admin_ok(&server, &["webhooks", "list"]);
    assert!(list.contains("pending=0\tdelivered=3\tfailed=0"), "{list}");
    let log = admin_ok(
        &server,
        &["webhooks", "log", "--id", &id, "--limit", "1000"],
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("status=200") && l.contains("event_state=delivered"))
            .count(),
        3,
        "{log}"
    );
}

fn events_in_the_outbox_survive_sigkill(backend: Backend) {
    let port = free_port();
    let mut server = Server::start_with(backend, &FAST);
    subscribe(
        &server,
        port,
        &["--action", "removed,added", "--host", "web-2"],
    );
    let mut web = Machine::new("web-2");
    assert_eq!(server.report(&web.report(None)).status, 201);
    web.parts_mut("memory", "modules").truncate(1);
    web.parts_mut("nic", "interfaces").clear();
    assert_eq!(server.report(&web.report(Some("web-2"))).status, 200);
    // what the change log says should be sent
    let want: BTreeSet<(String, String, String)> = server
        .changes_of("web-2")
        .iter()
        .filter(|c| c["action"] != "changed")
        .map(|c| {
            (
                c["component"].as_str().unwrap_or("").to_owned(),
                c["item"].as_str().unwrap_or("").to_owned(),
                c["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        want.len() > 10,
        "a first report adds many parts: {}",
        want.len()
    );
    let log = log_until(&server, |l| l.contains("error="));
    let tried: BTreeSet<String> = log
        .lines()
        .filter_map(|l| l.split('\t').find_map(|f| f.strip_prefix("event=")))
        .map(str::to_owned)
        .collect();
    assert!(!tried.is_empty(), "{log}");
    let list = admin_ok(&server, &["webhooks", "list"]);
    assert!(
        list.contains(&format!("pending={}\t", want.len())),
        "every event is pending: {list}"
    );

    server.restart_with(&FAST); // SIGKILL, then a new process on the same database
    let got = receiver(port);
    let got = wait_for(&got, want.len());
    let events: Vec<Value> = got.iter().map(Delivery::json).collect();
    assert!(got.iter().all(|d| d.verifies_with(SECRET)));
    let ids: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert!(
        tried.is_subset(&ids),
        "the events tried before the kill are the ones delivered"
    );
    let seen: BTreeSet<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["component"].as_str().unwrap_or("").to_owned(),
                e["item"].as_str().unwrap_or("").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(seen, want, "none lost, none invented");
    assert_eq!(events.len(), want.len());
}

fn an_event_fails_after_its_last_attempt(backend: Backend) {
    let port = free_port();
    let server = Server::start_with(
        backend,
        &[
            "--webhook-timeout-secs",
            "1",
            "--webhook-backoff-max-secs",
            "1",
            "--webhook-max-attempts",
            "2",
        ],
    );
    subscribe(&server, port, &["--component", "os", "--action", "changed"]);
    let mut m = Machine::new("app-1");
    assert_eq!(server.report(&m.report(None)).status, 201);
    *m.fact_mut("os", "os_version") = Value::from("42");
    assert_eq!(server.report(&m.report(Some("app-1"))).status, 200);
    let log = log_until(&server, |l| l.contains("event_state=failed"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "two attempts, then failed:\n{log}");
    assert!(lines[0].contains("attempt=1") && lines[0].contains("event_state=pending"));
    assert!(lines[1].contains("attempt=2") && lines[1].contains("event_state=failed"));
    let list = admin_ok(&server, &["webhooks", "list"]);
    assert!(list.contains("pending=0\tdelivered=0\tfailed=1"), "{list}");
    // a failed event is not sent again when the receiver comes back
    let got = receiver(port);
    std::thread::sleep(Duration::from_secs(3));
    assert!(got.lock().expect("lock").is_empty());
}

/// Two servers on one database: each event is claimed by one of them at a time, so the receiver
/// (slow, so that both are at work together) gets every event once.
fn two_servers_deliver_each_event_once(backend: Backend) {
    let port = free_port();
    let server = Server::start_with(backend, &FAST);
    for _ in 0..4 {
        subscribe(&server, port, &["--component", "memory.*,disk.*"]);
    }
    let log = std::fs::File::create(server.dir.join("second.log")).expect("log");
    let mut second = std::process::Command::new(crate::support::BIN)
        .args(["--db", &server.db_url, "--master-key"])
        .arg(server.dir.join("master.key"))
        .args([
            "--log",
            "info,sqlx=warn",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(FAST)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a second auto-server");
    // both servers at work before the first event: the second's start (migrations checked under
    // a lock) can take seconds on a loaded machine
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(server.dir.join("second.log"))
        .unwrap_or_default()
        .contains("auto-server listening")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut want = 0;
    for i in 0..4 {
        let m = Machine::new(&format!("node-{i}"));
        assert_eq!(server.report(&m.report(None)).status, 201);
        want += 4 * (m.parts("memory", "modules").len() + m.parts("disk", "disks").len());
    }
    std::thread::sleep(Duration::from_secs(4)); // the receiver is down: both servers try
    let got = receiver_with(port, Duration::from_millis(20));
    let got = wait_for(&got, want);
    let _ = second.kill();
    let _ = second.wait();
    let ids: Vec<String> = got
        .iter()
        .map(|d| d.json()["event_id"].as_str().unwrap_or("").to_owned())
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), want, "every event arrived");
    assert_eq!(ids.len(), want, "no event arrived twice");
    let log = admin_ok(&server, &["webhooks", "log", "--limit", "100000"]);
    let delivered = log.lines().filter(|l| l.contains("status=200")).count();
    assert_eq!(delivered, want, "one successful attempt per event:\n{log}");
    let workers: BTreeMap<&str, usize> = log
        .lines()
        .filter_map(|l| l.split('\t').find_map(|f| f.strip_prefix("worker=")))
        .fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w).or_default() += 1;
            m
        });
    eprintln!("attempts by server: {workers:?}");
    // four queues, each a race at every event: both servers took part (typically 35 to 140 each)
    assert_eq!(workers.len(), 2, "both servers delivered: {workers:?}");
}

#[test]
fn bad_subscriptions_are_refused_with_the_cause() {
    let server = Server::start(Backend::Sqlite);
    let file = server.dir.join("short.secret");
    std::fs::write(&file, "short\n").expect("write");
    let file = file.display().to_string();
    for (args, cause) in [
        (
            vec!["https://example.com/", "--secret-file", &file],
            "https is not supported",
        ),
        (
            vec!["http://127.0.0.1:1/", "--secret-file", &file],
            "must be 16 to 1024",
        ),
        (
            vec![
                "http://127.0.0.1:1/",
                "--secret-file",
                "/nonexistent",
                "--action",
                "deleted",
            ],
            "action \"deleted\" is not one of added, removed, changed",
        ),
    ] {
        let mut all = vec!["webhooks", "add"];
        all.extend(args);
        let out = server.admin(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(cause), "{err}");
    }
    let out = server.admin(&["webhooks", "remove", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook with id 7"));
}

crate::both!(
    removed_dimms_arrive_signed_once_the_receiver_comes_back,
    events_in_the_outbox_survive_sigkill,
    an_event_fails_after_its_last_attempt,
    two_servers_deliver_each_event_once,
);
