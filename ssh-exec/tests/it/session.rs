//! Connect, run, read, and every way a host can refuse or hang. Hosts by role:
//! 1-3 normal, 4 sshd stopped, 5 re-keyed, 6 accept-new, 7 every command hangs, 8 sshd frozen.

use std::path::Path;
use std::time::{Duration, Instant};

use ssh_exec::{
    ConnectOptions, HostKeyPolicy, KnownHosts, Secret, SetupError, SshAuth, SshError, SshSession,
    SshTarget, Watch,
};

use crate::testbed::Testbed;
use crate::Test;

/// Every test with its name, in run order.
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        pub const TESTS: &[Test] = &[$((stringify!($name), $name)),*];
    };
}

tests![
    connect_and_run_on_several_hosts,
    curve25519_and_each_cipher,
    output_exit_code_and_large_streams,
    one_session_shared_by_threads,
    read_file,
    password_and_passphrase_auth,
    ecdsa_key_that_ssh_key_cannot_read,
    agent_auth,
    wrong_password_refused,
    unknown_host_key_refused,
    changed_host_key_refused,
    accept_new_records_then_enforces,
    stopped_sshd_is_connect_refused_quickly,
    frozen_sshd_is_handshake_timeout,
    hanging_command_times_out_other_hosts_fine,
    command_timeout_keeps_session_usable,
    watch_sends_eof_at_its_time_and_returns_at_done,
];

const T: Duration = Duration::from_secs(10);

fn options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    }
}

fn connect(bed: &Testbed, n: usize) -> SshSession {
    let target = bed.target(n);
    SshSession::connect(target, &bed.key_auth(), &bed.known_hosts(), &options())
        .unwrap_or_else(|e| panic!("connect to {}: {e}", target.host))
}

fn connect_err(target: &SshTarget, auth: &SshAuth, known_hosts: &KnownHosts) -> SshError {
    match SshSession::connect(target, auth, known_hosts, &options()) {
        Ok(_) => panic!("connect to {} should have failed", target.host),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&target.host), "error names the host: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
            assert!(text.starts_with("ssh "), "lower-case message: {text}");
            e
        }
    }
}

fn stdout(out: &ssh_exec::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn connect_and_run_on_several_hosts(bed: &Testbed) {
    let known_hosts = bed.known_hosts();
    let auth = bed.key_auth();
    std::thread::scope(|s| {
        for n in 1..=3 {
            let (known_hosts, auth) = (&known_hosts, &auth);
            s.spawn(move || {
                let target = bed.target(n);
                let session = SshSession::connect(target, auth, known_hosts, &options())
                    .unwrap_or_else(|e| panic!("{e}"));
                let out = session.run("hostname", T).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(stdout(&out), target.host);
                assert_eq!(out.exit_code, Some(0));
                let out = session
                    .run("cat /etc/machine-id; whoami", T)
                    .unwrap_or_else(|e| panic!("{e}"));
                let text = stdout(&out);
                assert!(text.ends_with("root"), "{text}");
                assert_eq!(text.lines().next().map(str::len), Some(32), "{text}");
            });
        }
    });
}

/// The vendored libssh2 speaks curve25519-sha256 and every cipher of the default list.
fn curve25519_and_each_cipher(bed: &Testbed) {
    for cipher in ConnectOptions::default().ciphers.split(',') {
        let opts = ConnectOptions {
            kex: "curve25519-sha256".to_string(),
            ciphers: cipher.to_string(),
            ..options()
        };
        let session =
            SshSession::connect(bed.target(1), &bed.key_auth(), &bed.known_hosts(), &opts)
                .unwrap_or_else(|e| panic!("kex curve25519-sha256, cipher {cipher}: {e}"));
        assert_eq!(
            stdout(&session.run("hostname", T).expect("run")),
            "node-001"
        );
    }
}

fn output_exit_code_and_large_streams(bed: &Testbed) {
    let session = connect(bed, 1);
    let out = session
        .run("echo out; echo err >&2; exit 3", T)
        .expect("run");
    assert_eq!(stdout(&out), "out");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "err");
    assert_eq!(out.exit_code, Some(3));
    // more than libssh2's 2 MiB channel window, on both streams at once
    let out = session
        .run(
            "head -c 3000000 /dev/zero; head -c 2500000 /dev/zero >&2",
            T,
        )
        .expect("run large");
    assert_eq!(out.stdout.len(), 3_000_000);
    assert_eq!(out.stderr.len(), 2_500_000);
    assert_eq!(out.exit_code, Some(0));
    let out = session.run("kill -9 $$", T).expect("run killed");
    assert_eq!(out.exit_code, None, "killed by a signal");
}

fn one_session_shared_by_threads(bed: &Testbed) {
    let session = connect(bed, 2);
    std::thread::scope(|s| {
        for t in 0..4 {
            let session = &session;
            s.spawn(move || {
                for i in 0..5 {
                    let out = session.run(&format!("echo {t}-{i}"), T).expect("run");
                    assert_eq!(stdout(&out), format!("{t}-{i}"));
                }
            });
        }
    });
    assert!(!session.is_broken());
}

fn read_file(bed: &Testbed) {
    let session = connect(bed, 3);
    let hostname = session.read_file(Path::new("/etc/hostname")).expect("read");
    assert_eq!(String::from_utf8_lossy(&hostname).trim(), "node-003");
    let cpuinfo = session
        .read_file(Path::new("/proc/cpuinfo"))
        .expect("read cpuinfo");
    assert!(String::from_utf8_lossy(&cpuinfo).contains("processor"));
    let quoted = session
        .read_file(Path::new("/tmp/it's not there"))
        .expect_err("missing file");
    assert!(matches!(quoted, SshError::ReadFailed { .. }), "{quoted}");
    assert!(quoted.to_string().contains("no such file"), "{quoted}");
}

fn password_and_passphrase_auth(bed: &Testbed) {
    let known_hosts = bed.known_hosts();
    let target = bed.target(1);
    let session = SshSession::connect(
        target,
        &SshAuth::Password(bed.password()),
        &known_hosts,
        &options(),
    )
    .unwrap_or_else(|e| panic!("password login: {e}"));
    assert_eq!(
        stdout(&session.run("hostname", T).expect("run")),
        "node-001"
    );
    let path = bed.dir.join("id_ed25519_pass");
    let auth = SshAuth::key_file(&path, Some(&bed.passphrase())).expect("decrypts");
    let session = SshSession::connect(target, &auth, &known_hosts, &options())
        .unwrap_or_else(|e| panic!("passphrase key: {e}"));
    assert_eq!(
        stdout(&session.run("hostname", T).expect("run")),
        "node-001"
    );
    let wrong = Secret::new("not the passphrase".to_string());
    let e = SshAuth::key_file(&path, Some(&wrong)).expect_err("wrong passphrase");
    assert!(matches!(e, SetupError::Key { .. }), "{e}");
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    let e = SshAuth::key_file(&path, None).expect_err("no passphrase");
    assert!(e.to_string().contains("encrypted"), "{e}");
    // a key the server does not know
    let stranger = bed.dir.join("stranger_key");
    let _ = std::fs::remove_file(&stranger);
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let auth = SshAuth::key_file(&stranger, None).expect("load");
    let e = connect_err(target, &auth, &known_hosts);
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e}");
}

/// An ECDSA key whose private scalar OpenSSH wrote one byte short (one key in 256; ssh-key refuses
/// it, "length invalid"): it loads, and libssh2 logs in with it. The fixture's public key is added
/// to the testbed's authorized_keys for this test and taken out again.
fn ecdsa_key_that_ssh_key_cannot_read(bed: &Testbed) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecdsa-p256-short-scalar");
    let public = std::fs::read_to_string(fixture.with_extension("pub")).expect("fixture .pub");
    let authorized = bed.dir.join("authorized_keys");
    let before = std::fs::read_to_string(&authorized).expect("authorized_keys");
    std::fs::write(&authorized, format!("{before}{public}")).expect("authorise the fixture");
    let auth = SshAuth::key_file(&fixture, None).expect("loads");
    let connected = SshSession::connect(bed.target(1), &auth, &bed.known_hosts(), &options());
    std::fs::write(&authorized, before).expect("authorized_keys as it was");
    let session = connected.unwrap_or_else(|e| panic!("ecdsa key login: {e}"));
    assert_eq!(
        stdout(&session.run("hostname", T).expect("run")),
        "node-001"
    );
}

fn agent_auth(bed: &Testbed) {
    let sock = bed.scratch("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let result = std::panic::catch_unwind(|| {
        let t0 = Instant::now();
        while !sock.exists() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // libssh2 reads SSH_AUTH_SOCK; the tests run one at a time
        std::env::set_var("SSH_AUTH_SOCK", &sock);
        let added = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(bed.dir.join("id_ed25519"))
            .env("SSH_AUTH_SOCK", &sock)
            .status()
            .expect("ssh-add");
        assert!(added.success());
        let session = SshSession::connect(
            bed.target(2),
            &SshAuth::Agent,
            &bed.known_hosts(),
            &options(),
        )
        .unwrap_or_else(|e| panic!("agent login: {e}"));
        assert_eq!(
            stdout(&session.run("hostname", T).expect("run")),
            "node-002"
        );
    });
    std::env::remove_var("SSH_AUTH_SOCK");
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn wrong_password_refused(bed: &Testbed) {
    let auth = SshAuth::Password(Secret::new("wrong password".to_string()));
    let t0 = Instant::now();
    let e = connect_err(bed.target(2), &auth, &bed.known_hosts());
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e}");
    assert_eq!(e.kind(), "auth_failed");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

fn unknown_host_key_refused(bed: &Testbed) {
    // a known_hosts without node-002
    let text = std::fs::read_to_string(bed.dir.join("known_hosts")).expect("known_hosts");
    let path = bed.scratch("known_hosts.without-2");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("node-002,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).expect("write");
    let known_hosts = KnownHosts::load(&path, HostKeyPolicy::Strict).expect("load");
    let e = connect_err(bed.target(2), &bed.key_auth(), &known_hosts);
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e}");
    assert!(
        e.to_string().contains("SHA256:"),
        "names the fingerprint: {e}"
    );
    // the other hosts still connect with the same KnownHosts
    SshSession::connect(bed.target(1), &bed.key_auth(), &known_hosts, &options())
        .expect("node-001");
}

fn changed_host_key_refused(bed: &Testbed) {
    bed.script(&["rekey", "node-005"]).expect("rekey");
    let e = connect_err(bed.target(5), &bed.key_auth(), &bed.known_hosts());
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
    assert!(e.to_string().contains("host key changed"), "{e}");
    // accept-new does not accept a changed key either
    let tofu =
        KnownHosts::load(bed.dir.join("known_hosts"), HostKeyPolicy::AcceptNew).expect("load");
    let e = connect_err(bed.target(5), &bed.key_auth(), &tofu);
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
}

fn accept_new_records_then_enforces(bed: &Testbed) {
    let path = bed.scratch("known_hosts.tofu");
    let target = bed.target(6);
    let tofu = KnownHosts::load(&path, HostKeyPolicy::AcceptNew).expect("missing file is empty");
    assert!(tofu.is_empty());
    SshSession::connect(target, &bed.key_auth(), &tofu, &options()).expect("first use");
    let recorded = std::fs::read_to_string(&path).expect("recorded");
    assert!(recorded.starts_with("node-006,10."), "{recorded}");
    assert_eq!(recorded.lines().count(), 1);
    // again, and from a fresh parse, strictly
    SshSession::connect(target, &bed.key_auth(), &tofu, &options()).expect("second use");
    let strict = KnownHosts::load(&path, HostKeyPolicy::Strict).expect("load");
    SshSession::connect(target, &bed.key_auth(), &strict, &options()).expect("strict");
    assert_eq!(
        std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count(),
        1
    );
    // the host changes its key: refused, nothing appended
    bed.script(&["rekey", "node-006"]).expect("rekey");
    let e = connect_err(target, &bed.key_auth(), &tofu);
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count(),
        1
    );
}

fn stopped_sshd_is_connect_refused_quickly(bed: &Testbed) {
    bed.script(&["stop", "node-004"]).expect("stop");
    let t0 = Instant::now();
    let e = connect_err(bed.target(4), &bed.key_auth(), &bed.known_hosts());
    assert!(matches!(e, SshError::ConnectRefused { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    bed.script(&["start", "node-004"]).expect("start");
    connect(bed, 4);
}

fn frozen_sshd_is_handshake_timeout(bed: &Testbed) {
    bed.script(&["freeze", "node-008"]).expect("freeze");
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(800),
        ..ConnectOptions::default()
    };
    let t0 = Instant::now();
    let result = SshSession::connect(bed.target(8), &bed.key_auth(), &bed.known_hosts(), &opts);
    let took = t0.elapsed();
    bed.script(&["thaw", "node-008"]).expect("thaw");
    let e = result.expect_err("frozen host");
    assert!(
        matches!(
            e,
            SshError::Timeout {
                stage: "handshake",
                ..
            }
        ),
        "{e}"
    );
    // far below the 10 s default: the option took effect (slack for a loaded CI machine)
    assert!(took < Duration::from_secs(5), "{took:?}");
}

fn hanging_command_times_out_other_hosts_fine(bed: &Testbed) {
    bed.script(&["hang", "node-007"]).expect("hang");
    let hung = connect(bed, 7);
    let others: Vec<SshSession> = (1..=3).map(|n| connect(bed, n)).collect();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let t0 = Instant::now();
            let e = hung
                .run("hostname", Duration::from_secs(1))
                .expect_err("hangs");
            (e, t0.elapsed())
        });
        for (i, session) in others.iter().enumerate() {
            let out = session.run("hostname", T).expect("other host");
            assert_eq!(stdout(&out), format!("node-00{}", i + 1));
        }
        let (e, took) = waiter.join().expect("join");
        assert!(matches!(e, SshError::CommandTimeout { .. }), "{e}");
        assert!(e.to_string().contains("node-007"), "{e}");
        // far below the 30 s default (slack for a loaded CI machine)
        assert!(took < Duration::from_secs(6), "{took:?}");
    });
    bed.script(&["restore", "node-007"]).expect("restore");
}

fn command_timeout_keeps_session_usable(bed: &Testbed) {
    let session = connect(bed, 3);
    for _ in 0..2 {
        let e = session
            .run("sleep 30", Duration::from_millis(300))
            .expect_err("times out");
        assert!(matches!(e, SshError::CommandTimeout { .. }), "{e}");
        assert_eq!(
            stdout(&session.run("echo still here", T).expect("usable")),
            "still here"
        );
    }
    // a command that finishes soon after its timeout frees its channel
    let _ = session.run("sleep 0.3", Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!session.is_broken());
    assert_eq!(
        stdout(&session.run("hostname", T).expect("usable")),
        "node-003"
    );
}

/// `run_with`: the command's stdin ends when `eof_at` says (a `read` of it returns then, not before),
/// and the call returns once both streams hold `done`, though a process the command left behind
/// still holds its stdout (a plain `run` waits for that one until its timeout).
fn watch_sends_eof_at_its_time_and_returns_at_done(bed: &Testbed) {
    let session = connect(bed, 2);
    let started = Instant::now();
    let mut asked = 0;
    let mut eof_at = |_: &[u8]| {
        asked += 1;
        Some(started + Duration::from_millis(700))
    };
    let out = session
        .run_with(
            "read -r line; echo \"eof:$?:$line\"",
            T,
            Watch {
                eof_at: Some(&mut eof_at),
                done: b"",
            },
        )
        .expect("runs");
    assert!(asked >= 1, "asked {asked} times");
    let took = started.elapsed();
    assert_eq!(
        (stdout(&out), out.exit_code),
        ("eof:1:".to_string(), Some(0))
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "EOF after 700 ms, the command took {took:?}"
    );

    let left_behind = "sleep 29.5 & echo out; echo END; echo END >&2";
    let started = Instant::now();
    let out = session
        .run_with(
            left_behind,
            T,
            Watch {
                eof_at: None,
                done: b"END\n",
            },
        )
        .expect("runs");
    assert_eq!(stdout(&out), "out\nEND");
    assert_eq!(out.stderr, b"END\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // without `done` the same command holds the call until its timeout
    let e = session
        .run(left_behind, Duration::from_secs(1))
        .expect_err("held by the sleep");
    assert!(matches!(e, SshError::CommandTimeout { .. }), "{e}");
    assert_eq!(
        stdout(&session.run("echo still here", T).expect("usable")),
        "still here"
    );
    let _ = session.run("pkill -f 'sleep 29.5'", T);
}
