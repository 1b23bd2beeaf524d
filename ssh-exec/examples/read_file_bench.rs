//! Measures how to read a remote file: `cat` over an exec channel (what [`SshSession::read_file`]
//! does) against SFTP (libssh2's, subsystem started once per connection). One host, sequential,
//! so the numbers are latency per read and client CPU per read.
//!
//! ```text
//! cargo run --release -p ssh-exec --example read_file_bench -- /tmp/auto-testbed [READS]
//! ```

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ssh_exec::{ConnectOptions, HostKeyPolicy, KnownHosts, SshAuth, SshSession, SshTarget};

const FILES: [&str; 3] = ["/etc/os-release", "/proc/cpuinfo", "/proc/meminfo"];

fn cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn report(what: &str, reads: u32, wall: Duration, cpu: Duration) {
    println!(
        "{what:<34} {:>7.2} ms/read wall {:>6.3} ms/read client cpu",
        wall.as_secs_f64() * 1000.0 / f64::from(reads),
        cpu.as_secs_f64() * 1000.0 / f64::from(reads)
    );
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/auto-testbed".to_string()),
    );
    let reads: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(300);
    let hosts = std::fs::read_to_string(dir.join("hosts.txt")).unwrap_or_default();
    let Some((host, address)) = hosts.lines().next().and_then(|l| l.split_once(' ')) else {
        eprintln!(
            "read_file_bench: no hosts in {}",
            dir.join("hosts.txt").display()
        );
        return ExitCode::from(2);
    };
    let target = SshTarget::new(host, address.trim());
    let key = dir.join("id_ed25519");

    // cat over exec, through ssh-exec
    let known_hosts = match KnownHosts::load(dir.join("known_hosts"), HostKeyPolicy::Strict) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("read_file_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let auth = match SshAuth::key_file(&key, None) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("read_file_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let session =
        match SshSession::connect(&target, &auth, &known_hosts, &ConnectOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("read_file_bench: {e}");
                return ExitCode::from(2);
            }
        };
    let (t0, c0) = (Instant::now(), cpu());
    for i in 0..reads {
        if let Err(e) = session.read_file(Path::new(FILES[i as usize % 3])) {
            eprintln!("read_file_bench: {e}");
            return ExitCode::from(1);
        }
    }
    report("cat over exec (read_file)", reads, t0.elapsed(), cpu() - c0);

    // SFTP with plain blocking libssh2: subsystem start, then open/read/close per file
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let tcp = TcpStream::connect((target.address.as_str(), 22))?;
        tcp.set_nodelay(true)?;
        let mut s = ssh2::Session::new()?;
        s.set_tcp_stream(tcp);
        s.method_pref(ssh2::MethodType::Kex, "curve25519-sha256")?;
        s.handshake()?;
        s.userauth_pubkey_file("root", None, &key, None)?;
        let (t0, c0) = (Instant::now(), cpu());
        let sftp = s.sftp()?;
        report("sftp subsystem start (once)", 1, t0.elapsed(), cpu() - c0);
        let (t0, c0) = (Instant::now(), cpu());
        let mut buf = Vec::new();
        for i in 0..reads {
            buf.clear();
            sftp.open(Path::new(FILES[i as usize % 3]))?
                .read_to_end(&mut buf)?;
        }
        report("sftp open+read+close", reads, t0.elapsed(), cpu() - c0);
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("read_file_bench: sftp: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
