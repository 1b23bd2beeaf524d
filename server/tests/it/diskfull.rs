//! A full disk and a dying database (issue 9): a 2xx means stored, a failed write is a 503 with
//! `Retry-After`, and the server recovers by itself when the database does.
//!
//! The SQLite case mounts a real 2 MB tmpfs, so it needs root (CI runs as root); elsewhere it
//! prints that it is skipped. The PostgreSQL case kills the server's database sessions
//! (`pg_terminate_backend`) during a burst of reports.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{now, random_hex, Backend, Machine, BIN};

/// A server process of our own (the shared helper keeps its database in its own directory).
struct Proc {
    child: Child,
    base: String,
    key: String,
    secret: String,
}

fn admin(db: &str, master: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["--db", db, "--master-key"])
        .arg(master)
        .args(args)
        .env_remove("AUTO_SERVER_CONFIG")
        .output()
        .expect("run auto-server")
}

impl Proc {
    fn start(db: &str, master: &Path, log: &Path, secret: Option<String>) -> Proc {
        let secret = secret.unwrap_or_else(|| {
            let out = admin(db, master, &["keys", "create", "it"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = Command::new(BIN)
            .args(["--db", db, "--master-key"])
            .arg(master)
            .args([
                "--log",
                "info,sqlx=warn",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start auto-server");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let base = line
            .trim()
            .strip_prefix("auto-server listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_owned();
        Proc {
            child,
            base,
            key: "it".into(),
            secret,
        }
    }

    /// (status, retry-after, body)
    fn send(&self, method: &str, path: &str, body: &[u8]) -> (u16, Option<String>, Value) {
        let ts = now();
        let nonce = random_hex(16);
        let sig =
            auto_proto::sign::signature(self.secret.as_bytes(), method, path, ts, &nonce, body);
        let req = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build()
            .request(method, &format!("{}{path}", self.base))
            .set(auto_proto::sign::HEADER_KEY, &self.key)
            .set(auto_proto::sign::HEADER_TIMESTAMP, &ts.to_string())
            .set(auto_proto::sign::HEADER_NONCE, &nonce)
            .set(auto_proto::sign::HEADER_SIGNATURE, &sig);
        let result = if method == "GET" {
            req.call()
        } else {
            req.send_bytes(body)
        };
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let retry = resp.header("retry-after").map(str::to_owned);
        let body =
            serde_json::from_str(&resp.into_string().unwrap_or_default()).unwrap_or(Value::Null);
        (status, retry, body)
    }

    fn report(&self, hostname: &str) -> (u16, Option<String>, Value) {
        let body = Machine::new(hostname).report(None).to_string();
        self.send("POST", "/api/v1/reports", body.as_bytes())
    }

    /// A report of `template`'s data under another name and identity (the recorded outputs are
    /// read once, so every report of a burst carries the same parts).
    fn report_like(&self, template: &Machine, hostname: &str) -> (u16, Option<String>, Value) {
        let mut m = template.clone();
        m.hostname = hostname.to_owned();
        m.machine_id = random_hex(16);
        m.serial = format!("SN{}", random_hex(4).to_uppercase());
        m.uuid = crate::support::uuid();
        let body = m.report(None).to_string();
        self.send("POST", "/api/v1/reports", body.as_bytes())
    }

    fn host(&self, hostname: &str) -> Option<Value> {
        let (status, _, body) = self.send("GET", &format!("/api/v1/hosts/{hostname}"), b"");
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET {hostname}: {other} {body:?}"),
        }
    }

    /// A clean stop: SIGTERM, then wait.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted for the test, unmounted at the end.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn sqlite_on_a_full_disk_acknowledges_only_what_it_stored_and_recovers() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("auto-server-full-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir(&dir);
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let fs = Tmpfs(dir.clone());
    let logs = std::env::temp_dir().join(format!("auto-server-full-{}", random_hex(4)));
    std::fs::create_dir_all(&logs).expect("log dir");
    let db = format!("sqlite://{}", fs.0.join("x.db").display());
    let master = logs.join("master.key");
    let log = logs.join("server.log");
    let server = Proc::start(&db, &master, &log, None);

    // Fill the disk: every answer is a 201 or a 503 with Retry-After.
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..3000 {
        let name = format!("full-{i}");
        let (status, retry, body) = server.report(&name);
        match status {
            200..=299 => stored.push(name),
            503 => {
                assert!(retry.is_some(), "a 503 without Retry-After: {body:?}");
                assert_eq!(body["code"], "database_unavailable", "{body:?}");
                refused += 1;
                if refused >= 10 {
                    break;
                }
            }
            other => panic!("report {i}: {other} {body:?}"),
        }
    }
    if refused < 10 {
        // 2xx answers past what 2 MB can hold: see whether they were stored at all.
        let sample: Vec<&String> = stored.iter().step_by(100).collect();
        let lost: Vec<(&String, u16)> = sample
            .iter()
            .map(|n| (*n, server.send("GET", &format!("/api/v1/hosts/{n}"), b"").0))
            .filter(|(_, status)| *status != 200)
            .collect();
        panic!(
            "the 2 MB disk never filled: {} reports got a 2xx; of {} of them sampled, {} are \
             not readable (acknowledged, not committed; name and GET status): {lost:?}",
            stored.len(),
            sample.len(),
            lost.len()
        );
    }
    assert!(
        !stored.is_empty(),
        "nothing was stored before the disk filled"
    );
    // (A signed GET records its nonce, a write: on a full disk it is a 503 too. The reads are
    // checked once space is back, in the same server process.)

    // Space comes back: the same server process takes reports again.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&fs.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "cannot grow the tmpfs");
    for name in &stored {
        assert!(
            server.host(name).is_some(),
            "{name} got a 2xx but is not stored"
        );
    }
    for i in 0..20 {
        let name = format!("after-{i}");
        let (status, _, body) = server.report(&name);
        assert!((200..300).contains(&status), "{name}: {status} {body:?}");
        assert!(server.host(&name).is_some(), "{name} not readable");
        stored.push(name);
    }
    // No connection is left inside a transaction: another writer gets the lock.
    {
        use sqlx::{Connection, Executor};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&db).await.expect("open");
            conn.execute("BEGIN IMMEDIATE")
                .await
                .expect("BEGIN IMMEDIATE from a second connection");
            conn.execute("ROLLBACK").await.expect("rollback");
            let _ = conn.close().await;
        });
    }

    // A clean stop and a restart keep every acknowledged report.
    let secret = server.secret.clone();
    server.stop();
    let server = Proc::start(&db, &master, &log, Some(secret));
    for name in &stored {
        assert!(server.host(name).is_some(), "{name} lost across a restart");
    }
    server.stop();
    drop(fs);
    let _ = std::fs::remove_dir_all(&logs);
}

fn pg_exec(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        conn.execute(sql).await.expect("admin statement");
        let _ = conn.close().await;
    });
}

/// A value with every leaf replaced by its type: what was stored, not the values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("bool"),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
    }
}

#[test]
#[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
fn postgres_sessions_killed_during_a_burst_lose_no_acknowledged_report() {
    let Some(Backend::Postgres(admin_url)) = Backend::postgres() else {
        panic!("AUTO_TEST_PG_URL is unset");
    };
    let name = format!("auto_full_{}", random_hex(6));
    pg_exec(&admin_url, &format!("CREATE DATABASE {name}"));
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin_url.clone(), String::new()),
    };
    let host_part = base[..base.rfind('/').expect("a database in the url")].to_owned();
    let db = format!("{host_part}/{name}{query}");
    let dir = std::env::temp_dir().join(format!("auto-server-pgkill-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).expect("dir");
    let server = Proc::start(&db, &dir.join("master.key"), &dir.join("server.log"), None);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let admin_url = admin_url.clone();
        let name = name.clone();
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150));
                pg_exec(
                    &admin_url,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    ),
                );
                kills += 1;
            }
            kills
        })
    };
    let template = Machine::new("template");
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..150 {
        let host = format!("burst-{i}");
        let (status, retry, body) = server.report_like(&template, &host);
        match status {
            200..=299 => stored.push(host),
            503 => {
                assert!(retry.is_some(), "{body:?}");
                refused += 1;
            }
            other => panic!("{host}: {other} {body:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().expect("killer");
    eprintln!(
        "{} stored, {refused} refused, {kills} kill rounds",
        stored.len()
    );
    // Every acknowledged report is whole: the same components, items and parts as every other
    // one (values differ: hostname, identity, uptime).
    let mut shapes = std::collections::BTreeSet::new();
    for host in &stored {
        let detail = server.host(host).unwrap_or_else(|| panic!("{host} lost"));
        shapes.insert(shape(&detail["plugins"]).to_string());
    }
    assert!(shapes.len() <= 1, "reports stored differently: {shapes:?}");
    // The server recovers by itself.
    let (status, _, body) = server.report("after-burst");
    assert!((200..300).contains(&status), "{status} {body:?}");
    server.stop();
    pg_exec(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unsigned GET: (status, body as text).
fn plain(base: &str, path: &str) -> (u16, String) {
    match ureq::get(&format!("{base}{path}")).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// `/readyz` (issue 13) on a real full disk: 503 with its reason while the filesystem is full, 200
/// again once it is grown, in the same process; `/healthz` stays 200 throughout (liveness), and
/// `/metrics` counts the refused reports and the database errors.
#[test]
fn readyz_fails_while_the_disk_is_full_and_recovers_without_a_restart() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("auto-server-ready-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir(&dir);
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let fs = Tmpfs(dir.clone());
    let logs = std::env::temp_dir().join(format!("auto-server-ready-{}", random_hex(4)));
    std::fs::create_dir_all(&logs).expect("log dir");
    let db = format!("sqlite://{}", fs.0.join("x.db").display());
    let server = Proc::start(
        &db,
        &logs.join("master.key"),
        &logs.join("server.log"),
        None,
    );
    assert_eq!(plain(&server.base, "/readyz"), (200, "ready\n".to_owned()));

    let mut refused = 0;
    let mut stored = 0;
    for i in 0..3000 {
        let (status, _, body) = server.report(&format!("full-{i}"));
        match status {
            200..=299 => stored += 1,
            503 => {
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("report {i}: {other} {body:?}"),
        }
    }
    assert_eq!(refused, 3, "the 2 MB disk never filled ({stored} stored)");
    // the answer of a probe is reused for a second: wait it out
    std::thread::sleep(Duration::from_millis(1100));
    let (status, reason) = plain(&server.base, "/readyz");
    assert_eq!(status, 503, "ready on a full disk: {reason}");
    assert!(
        reason.starts_with("database not writable: ") && reason.ends_with('\n'),
        "{reason:?}"
    );
    assert_eq!(reason.lines().count(), 1, "{reason:?}");
    eprintln!("readyz on a full disk: {}", reason.trim());
    assert_eq!(
        plain(&server.base, "/healthz").0,
        200,
        "liveness is not readiness"
    );
    let (status, metrics) = plain(&server.base, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "auto_server_reports_total{{outcome=\"unavailable\"}} {refused}\n"
        )),
        "{metrics}"
    );
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("auto_server_database_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("database errors in the scrape");
    assert!(
        errors > refused,
        "{errors} database errors for {refused} refused reports and a failed probe"
    );

    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&fs.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "cannot grow the tmpfs");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        plain(&server.base, "/readyz"),
        (200, "ready\n".to_owned()),
        "not ready again after the disk was grown"
    );
    let (status, _, body) = server.report("after");
    assert!((200..300).contains(&status), "{status} {body:?}");
    server.stop();
    drop(fs);
    let _ = std::fs::remove_dir_all(&logs);
}
