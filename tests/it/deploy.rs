//! `auto-client deploy` end to end: real sshd hosts (scripts/testbed.sh), a per-host key each from
//! the real `auto-server keys create HOST-agent --scope host --host HOST`, the agent and the
//! shipped collectors uploaded over SFTP; then each host reports by itself in agent mode (the
//! deployed agent run there over ssh) and is on the server; a second deploy changes nothing and
//! says so; `--dry-run` finds a key file made world-readable and leaves it so, a deploy fixes it.
//!
//! The testbed's hosts share this machine's filesystem (only /etc/hostname, /etc/machine-id, /root
//! and /etc/shadow are their own), so each host is deployed under its own `--root DIR/{host}`.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::support::{bin, stderr, Key, Server};

/// Hosts deployed to (AUTO_DEPLOY_HOSTS overrides; 20 by default).
fn host_count() -> usize {
    std::env::var("AUTO_DEPLOY_HOSTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

const NET: &str = "10.236";

struct Testbed {
    dir: PathBuf,
}

impl Testbed {
    fn script(&self, args: &[&str]) {
        let out = Command::new(test_support::workspace_root().join("scripts/testbed.sh"))
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
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(test_support::workspace_root().join("scripts/testbed.sh"))
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

/// auto-server on the testbed's bridge address, so that the hosts reach it; killed on drop.
struct BridgeServer {
    url: String,
    child: Child,
}

impl Drop for BridgeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_on_bridge(dir: &Path) -> BridgeServer {
    let mut child = Command::new(bin("auto-server"))
        .args(["serve", "--db", &Server::db_url(dir), "--listen"])
        .arg(format!("{NET}.0.1:0"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("auto-server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("auto-server prints its address");
    let url = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    assert!(url.starts_with("http://"), "{line:?}");
    BridgeServer { url, child }
}

/// A copy of `path` without debug info (the debug build is ~110 MB, 20 hosts' worth of it is not).
fn stripped(path: &Path, to: &Path) -> PathBuf {
    let out = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(path)
        .output()
        .expect("strip runs");
    assert!(out.status.success(), "strip: {}", stderr(&out));
    to.to_path_buf()
}

#[test]
#[cfg_attr(
    not(auto_client_e2e),
    ignore = "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)"
)]
fn deploy_installs_the_agent_on_every_host_which_then_reports_by_itself_and_a_second_deploy_changes_nothing(
) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (network namespaces)"
    );
    let n = host_count();
    let tmp = tempfile::tempdir().expect("tempdir");
    let tb = Testbed {
        dir: tmp.path().join("testbed"),
    };
    tb.script(&[
        "up",
        &n.to_string(),
        "--net",
        NET,
        "--name",
        "dpl",
        "--bridge",
        "adpl0",
    ]);
    let hosts: Vec<String> = std::fs::read_to_string(tb.dir.join("hosts.txt"))
        .expect("hosts.txt")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), n);

    // one key per host, named after it, as the README says
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    for h in &hosts {
        let out = Command::new(bin("auto-server"))
            .args([
                "keys",
                "create",
                &format!("{h}-agent"),
                "--scope",
                "host",
                "--host",
                h,
            ])
            .args(["--db", &Server::db_url(tmp.path())])
            .output()
            .expect("keys create");
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::write(keys.join(h), &out.stdout).expect("key file");
    }
    let reader = Key::new(
        tmp.path(),
        "reader",
        &Server::create_key(tmp.path(), "reader"),
    );
    let server = serve_on_bridge(tmp.path());

    // what goes to the hosts: the agent and the six shipped collectors, without debug info
    let libs = tmp.path().join("libs");
    std::fs::create_dir(&libs).expect("libs");
    let mut plugins = String::new();
    for name in test_support::SHIPPED {
        let lib = stripped(
            &test_support::shipped(name),
            &libs.join(format!("libcollector_{name}.so")),
        );
        plugins.push_str(&format!(
            "[plugins.{name}]\npath = {:?}\ntimeout = \"10s\"\n{}",
            lib.display().to_string(),
            if name == "nic" {
                "options = { include_veth = true }\n"
            } else {
                ""
            }
        ));
    }
    std::fs::write(tmp.path().join("plugins.toml"), plugins).expect("plugins.toml");
    let agent = stripped(&bin("auto-client"), &tmp.path().join("auto-client"));
    let roots = tmp.path().join("roots");
    let root_of = |h: &str| roots.join(h);

    let deploy = |extra: &[&str]| {
        let out = Command::new(bin("auto-client"))
            .arg("--plugins")
            .arg(tmp.path().join("plugins.toml"))
            .arg("deploy")
            .arg("--hosts-file")
            .arg(tb.dir.join("hosts.txt"))
            .arg("--ssh-identity")
            .arg(tb.dir.join("id_ed25519"))
            .arg("--known-hosts")
            .arg(tb.dir.join("known_hosts"))
            .args(["--api", &server.url, "--workers", "8"])
            .arg("--keys-dir")
            .arg(&keys)
            .arg("--root")
            .arg(format!("{}/{{host}}", roots.display()))
            .arg("--binary")
            .arg(&agent)
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .expect("auto-client deploy runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.code(), stdout, stderr(&out))
    };

    // 1. the first deploy installs everything and runs each agent once
    let (code, stdout, err) = deploy(&[]);
    assert_eq!(code, Some(0), "{stdout}\n{err}");
    assert!(
        stdout.contains(&format!("deploy: {n} hosts changed")),
        "{stdout}"
    );
    assert!(
        err.contains(&format!("{n} hosts: {n} ok, 0 failed")),
        "{err}"
    );
    for h in &hosts {
        let r = root_of(h);
        for (path, mode) in [
            ("usr/bin/auto-client", 0o755),
            ("usr/lib/auto-client/libcollector_os.so", 0o644),
            ("etc/auto-client/auto-client.toml", 0o644),
            ("etc/auto-client/key", 0o600),
            ("usr/lib/auto-client", 0o755),
        ] {
            let m = std::fs::metadata(r.join(path)).expect(path);
            assert_eq!((m.uid(), m.mode() & 0o7777), (0, mode), "{h}: {path}");
        }
        // the first run's cert: the server accepted the host under its own name
        assert_eq!(
            std::fs::read_to_string(r.join("var/lib/auto-client/cert"))
                .expect("cert")
                .trim(),
            h
        );
    }

    // 2. each host reports by itself in agent mode: the deployed agent, run there over ssh
    for h in &hosts {
        let r = root_of(h);
        let out = Command::new("ssh")
            .arg("-F")
            .arg(tb.dir.join("ssh_config"))
            .arg(h)
            .arg(format!(
                "{}/usr/bin/auto-client --config {}/etc/auto-client/auto-client.toml run",
                r.display(),
                r.display()
            ))
            .output()
            .expect("ssh runs");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{h}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("report accepted"),
            "{h}: {}",
            stderr(&out)
        );
    }
    let listed = server_hosts(&server.url, &reader);
    for h in &hosts {
        assert!(listed.contains(h), "{h} not on the server: {listed:?}");
    }

    // 3. a second deploy changes nothing, and says so
    let (code, stdout, err) = deploy(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains(&format!(
            "deploy: nothing changed: {n} hosts already up to date"
        )),
        "{stdout}"
    );

    // 4. --dry-run sees a key made readable by others and leaves it; a deploy puts 0600 back
    use std::os::unix::fs::PermissionsExt;
    let key = root_of(&hosts[0]).join("etc/auto-client/key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, stdout, _) = deploy(&["--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("deploy --dry-run: 1 hosts would change (1 changes)"),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&key).expect("key").mode() & 0o777, 0o644);
    let (code, stdout, _) = deploy(&["--no-run"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("deploy: 1 hosts changed (1 changes)"),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&key).expect("key").mode() & 0o777, 0o600);
}

/// The host names the server holds (`auto-client api /api/v1/hosts`).
fn server_hosts(url: &str, key: &Key) -> String {
    let out = Command::new(bin("auto-client"))
        .args(["api", "/api/v1/hosts", "--api", url, "--key-id", &key.id])
        .arg("--key-file")
        .arg(&key.file)
        .output()
        .expect("auto-client api");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}
