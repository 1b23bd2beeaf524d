//! Fan out to every host of a testbed: connect, run 3 commands and read 3 files per host (the
//! six things the collectors ask for), on a bounded thread pool. Prints wall time and this
//! process's user+sys CPU per host (getrusage).
//!
//! ```text
//! cargo run --release -p ssh-exec --example fanout -- --dir /tmp/auto-testbed [--workers 100]
//!     [--hosts FILE] [--known-hosts FILE] [--key FILE [--passphrase-file FILE]] [--quiet]
//!     [--true]    (connect and run `true` only: the same work as `ssh host true`)
//! ```
//! Exit code: 0 all hosts ok, 1 some failed, 2 usage or set-up error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ssh_exec::{ConnectOptions, HostKeyPolicy, KnownHosts, Secret, SshAuth, SshSession, SshTarget};

const COMMANDS: [&str; 3] = ["hostname", "lsblk -J", "ip -j addr"];
const FILES: [&str; 3] = ["/etc/os-release", "/proc/cpuinfo", "/proc/meminfo"];

struct Args {
    hosts: PathBuf,
    known_hosts: PathBuf,
    key: PathBuf,
    passphrase_file: Option<PathBuf>,
    workers: usize,
    quiet: bool,
    /// Connect and run `true` only: the same work as `ssh host true`.
    just_true: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = PathBuf::from("/tmp/auto-testbed");
    let (mut hosts, mut known_hosts, mut key) = (None, None, None);
    let mut passphrase_file = None;
    let mut workers = 100;
    let mut quiet = false;
    let mut just_true = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => dir = PathBuf::from(value("--dir")?),
            "--hosts" => hosts = Some(PathBuf::from(value("--hosts")?)),
            "--known-hosts" => known_hosts = Some(PathBuf::from(value("--known-hosts")?)),
            "--key" => key = Some(PathBuf::from(value("--key")?)),
            "--passphrase-file" => {
                passphrase_file = Some(PathBuf::from(value("--passphrase-file")?))
            }
            "--workers" => {
                workers = value("--workers")?
                    .parse()
                    .map_err(|e| format!("--workers: {e}"))?
            }
            "--quiet" => quiet = true,
            "--true" => just_true = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        hosts: hosts.unwrap_or_else(|| dir.join("hosts.txt")),
        known_hosts: known_hosts.unwrap_or_else(|| dir.join("known_hosts")),
        key: key.unwrap_or_else(|| dir.join("id_ed25519")),
        passphrase_file,
        workers: workers.max(1),
        quiet,
        just_true,
    })
}

fn read_targets(path: &Path) -> Result<Vec<SshTarget>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut targets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next()) {
            (Some(host), Some(address)) => targets.push(SshTarget::new(host, address)),
            _ => {
                return Err(format!(
                    "{}:{}: expected `name address`",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(targets)
}

/// This process's user and system CPU time so far.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

fn collect_one(
    target: &SshTarget,
    auth: &SshAuth,
    known_hosts: &KnownHosts,
    options: &ConnectOptions,
    just_true: bool,
) -> Result<usize, ssh_exec::SshError> {
    let session = SshSession::connect(target, auth, known_hosts, options)?;
    if just_true {
        return session
            .run("true", Duration::from_secs(10))
            .map(|o| o.stdout.len());
    }
    let mut bytes = 0;
    for command in COMMANDS {
        let out = session.run(command, Duration::from_secs(10))?;
        bytes += out.stdout.len();
    }
    for file in FILES {
        bytes += session.read_file(Path::new(file))?.len();
    }
    Ok(bytes)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let targets = match read_targets(&args.hosts) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            eprintln!("fanout: no hosts in {}", args.hosts.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let cpu_start = cpu_time();
    let start = Instant::now();
    // parsed once for the whole fan-out
    let known_hosts = match KnownHosts::load(&args.known_hosts, HostKeyPolicy::Strict) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let passphrase = match args
        .passphrase_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    // read (and decrypted) once for every connection
    let auth = match SshAuth::key_file(&args.key, passphrase.as_ref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let options = ConnectOptions::default();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let bytes = AtomicUsize::new(0);
    let slowest = Mutex::new((Duration::ZERO, String::new()));
    let workers = args.workers.min(targets.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = targets.get(i) else { break };
                let t0 = Instant::now();
                let result = collect_one(target, &auth, &known_hosts, &options, args.just_true);
                let took = t0.elapsed();
                {
                    let mut slow = slowest.lock().unwrap_or_else(|p| p.into_inner());
                    if took > slow.0 {
                        *slow = (took, target.host.clone());
                    }
                }
                match result {
                    Ok(n) => {
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string()),
                }
            });
        }
    });
    let wall = start.elapsed();
    let cpu_end = cpu_time();
    let user = cpu_end.0.saturating_sub(cpu_start.0);
    let sys = cpu_end.1.saturating_sub(cpu_start.1);
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if !args.quiet {
        for f in &failures {
            eprintln!("{f}");
        }
    }
    let n = targets.len();
    let (slow_time, slow_host) = slowest.into_inner().unwrap_or_else(|p| p.into_inner());
    let per_host_ms = (user + sys).as_secs_f64() * 1000.0 / n as f64;
    println!(
        "fanout: {n} hosts, {} ok, {} failed, {workers} workers, {} a host, {} bytes: \
         wall {:.2} s, client cpu {:.1} ms/host (user {:.0} ms, sys {:.0} ms), \
         slowest host {slow_host} {:.2} s",
        n - failures.len(),
        failures.len(),
        if args.just_true {
            "`true`"
        } else {
            "6 requests"
        },
        bytes.load(Ordering::Relaxed),
        wall.as_secs_f64(),
        per_host_ms,
        user.as_secs_f64() * 1000.0,
        sys.as_secs_f64() * 1000.0,
        slow_time.as_secs_f64(),
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
