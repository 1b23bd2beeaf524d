//! A full disk under the server, end to end (issue 9): the real agent against the real
//! auto-server whose SQLite file sits on a real 2 MB tmpfs. While the disk is full the server
//! answers 503 and the agent keeps its report in the spool (exit code 1, and says why); once the
//! tmpfs is grown the next run delivers the spooled report, once.
//!
//! Mounting a tmpfs needs root (CI runs as root, scripts/test.sh sets AUTO_CLIENT_E2E=1); as
//! another user the test says it is skipped and passes.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{free_port, stderr, AgentDir, Key, Server};

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o remount,size={size} {}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A signed POST of a report: (status, Retry-After, body).
fn post_report(server: &Server, key: &Key, body: &[u8]) -> (u16, Option<String>, String) {
    let path = "/api/v1/reports";
    let (ts, nonce) = (now(), random_hex(16));
    let sig = auto_proto::sign::signature(key.secret.as_bytes(), "POST", path, ts, &nonce, body);
    let result = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
        .post(&format!("{}{path}", server.url))
        .set("content-type", "application/json")
        .set(auto_proto::sign::HEADER_KEY, &key.id)
        .set(auto_proto::sign::HEADER_TIMESTAMP, &ts.to_string())
        .set(auto_proto::sign::HEADER_NONCE, &nonce)
        .set(auto_proto::sign::HEADER_SIGNATURE, &sig)
        .send_bytes(body);
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("retry-after").map(str::to_owned);
    (status, retry, resp.into_string().unwrap_or_default())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn an_agent_keeps_its_report_while_the_servers_disk_is_full_and_delivers_it_once_space_is_back() {
    if !is_root() {
        eprintln!(
            "skipped: this test mounts a 2 MB tmpfs, which needs root (CI runs as root with \
             AUTO_CLIENT_E2E=1)"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("fs"), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    // The database (and the master key next to it) on the small tmpfs; agents and keys outside.
    let secret = Server::create_key(&fs.dir, "agents");
    let key = Key::new(tmp.path(), "agents", &secret);
    let server = Server::start(&fs.dir, 0, false);

    // A real report to fill the disk with: what an agent spools when no server listens.
    let filler = AgentDir::new(tmp.path(), "filler", "");
    filler.set_os("filler", "1");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = filler.run(&nowhere, Some(&key), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let spooled = filler.spooled();
    assert_eq!(spooled.len(), 1, "{}", stderr(&out));
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(&spooled[0]).expect("read")).expect("json");

    // Fill the disk: a file takes what is free but 256 KiB, then reports until the server
    // answers 503.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(fs.dir.join("filler")).expect("filler");
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().expect("filler size").len();
        f.set_len(len.saturating_sub(256 * 1024))
            .expect("shrink the filler");
    }
    let mut acknowledged = Vec::new();
    let mut first_503 = None;
    for i in 0..2000 {
        let name = format!("filler-{i}");
        let mut report = template.clone();
        report["report_id"] = Value::from(format!(
            "{}-{}-4{}-8{}-{}",
            &random_hex(4),
            &random_hex(2),
            &random_hex(2)[1..],
            &random_hex(2)[1..],
            &random_hex(6)
        ));
        report["hostname"] = Value::from(name.as_str());
        report["previous_hostname"] = Value::Null;
        report["plugins"]["os"]["data"]["identity"]["hostname"] = Value::from(name.as_str());
        let (status, retry, body) = post_report(&server, &key, report.to_string().as_bytes());
        match status {
            200..=299 => acknowledged.push(name),
            503 => {
                assert!(retry.is_some(), "a 503 without Retry-After: {body}");
                assert!(body.contains("database_unavailable"), "{body}");
                first_503 = Some(i);
                break;
            }
            other => panic!("{name}: {other} {body}"),
        }
    }
    let first_503 = first_503.expect("the 2 MB tmpfs never filled: no 503 in 2000 reports");
    eprintln!(
        "the server answered 503 after {first_503} reports ({} acknowledged)",
        acknowledged.len()
    );

    // The agent meets the full disk: exit code 1, the report stays in its spool, and it says why.
    let agent = AgentDir::new(tmp.path(), "kappa", "");
    agent.set_os("kappa", "1");
    let out = agent.run(&server.url, Some(&key), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("503"), "the agent does not say why: {err}");
    assert!(err.contains("kept in the spool"), "{err}");
    let spooled = agent.spooled();
    assert_eq!(spooled.len(), 1, "the report must stay in the spool: {err}");
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&spooled[0]).expect("read")).expect("json");
    let kept_id = kept["report_id"].as_str().expect("report_id").to_owned();
    assert_eq!(agent.cert(), None, "nothing was accepted yet");

    // Space comes back (the same server process, no restart): the next run delivers the spooled
    // report, then its own.
    fs.resize("64m");
    agent.set_os("kappa", "2");
    let out = agent.run(&server.url, Some(&key), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(agent.spooled().is_empty(), "the spool is not empty: {err}");
    assert_eq!(agent.cert().as_deref(), Some("kappa"), "{err}");
    let host = server.get_signed("/api/v1/hosts/kappa", &key);
    assert_eq!(host["plugins"]["os"]["facts"]["os_version"], "2", "{host}");
    // The spooled report arrived (it added the host), once; the new one changed os_version.
    let changes = server.get_signed("/api/v1/hosts/kappa/changes?limit=1000", &key);
    let rows = changes.as_array().cloned().unwrap_or_default();
    let added_by_kept = rows
        .iter()
        .filter(|r| r["report_id"] == kept_id.as_str() && r["action"] == "added")
        .count();
    assert!(
        added_by_kept > 0,
        "the spooled report {kept_id} is not known to the server: {changes}"
    );
    let version_changes: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["item"] == "os_version" && r["action"] == "changed")
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (text(&r["old"]), text(&r["new"]))
        })
        .collect();
    assert_eq!(
        version_changes,
        [("1".to_owned(), "2".to_owned())],
        "{changes}"
    );
    // Every report acknowledged while the disk filled is there.
    for name in &acknowledged {
        assert_eq!(
            server.get_signed(&format!("/api/v1/hosts/{name}"), &key)["hostname"],
            name.as_str(),
            "{name} got a 2xx but is not stored"
        );
    }
    drop(server);
    drop(fs);
}
