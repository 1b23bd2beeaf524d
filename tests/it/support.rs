//! Helpers for the end-to-end tests: building the binaries and plugins with cargo, a real
//! auto-server on a loopback port over a temp SQLite file, and running auto-client against it.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

pub use test_support::{cargo_build, workspace_root, Built};

/// auto-client, auto-server and the misbehaving test plugin, built once per test run.
pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &[
                "-p",
                "auto-client",
                "-p",
                "auto-server",
                "-p",
                "test-plugin-misbehave",
            ],
            None,
        )
    })
}

pub fn bin(name: &str) -> PathBuf {
    built()
        .bins
        .get(name)
        .unwrap_or_else(|| panic!("{name} was not built"))
        .clone()
}

pub fn misbehave() -> PathBuf {
    built()
        .libs
        .get("test-plugin-misbehave")
        .expect("test-plugin-misbehave was built")
        .clone()
}

/// A `[plugins.NAME]` table for the misbehaving plugin with these options (TOML inline table body).
pub fn misbehaving(name: &str, options: &str, extra: &str) -> String {
    format!(
        "[plugins.{name}]\npath = {:?}\nsymbol = \"misbehave_v1\"\noptions = {{ {options} }}\n{extra}\n",
        misbehave().display().to_string()
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real auto-server over a SQLite file in `dir`; killed on drop.
pub struct Server {
    pub url: String,
    child: Child,
}

impl Server {
    pub fn db_url(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("cmdb.sqlite").display())
    }

    /// Starts `auto-server serve` on `port` (0: any) and waits until it listens.
    pub fn start(dir: &Path, port: u16, no_auth: bool) -> Server {
        let db = Self::db_url(dir);
        let mut cmd = Command::new(bin("auto-server"));
        cmd.args([
            "serve",
            "--db",
            &db,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        if no_auth {
            cmd.arg("--no-auth");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("auto-server starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("auto-server prints its address");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from auto-server: {line:?}"))
            .to_string();
        Server { url, child }
    }

    /// `auto-server keys create NAME`: the secret.
    pub fn create_key(dir: &Path, name: &str) -> String {
        let out = Command::new(bin("auto-server"))
            .args(["keys", "create", name, "--db", &Self::db_url(dir)])
            .output()
            .expect("auto-server keys runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// An unsigned GET works only against --no-auth; signed reads use `get_signed`.
    pub fn get_signed(&self, path: &str, key: &Key) -> Value {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let nonce = format!("{:032x}", rand_u128());
        let sig = auto_proto::sign::signature(key.secret.as_bytes(), "GET", path, ts, &nonce, b"");
        let resp = ureq::get(&format!("{}{}", self.url, path))
            .set(auto_proto::sign::HEADER_KEY, &key.id)
            .set(auto_proto::sign::HEADER_TIMESTAMP, &ts.to_string())
            .set(auto_proto::sign::HEADER_NONCE, &nonce)
            .set(auto_proto::sign::HEADER_SIGNATURE, &sig)
            .call();
        match resp {
            Ok(r) => r.into_json().expect("json"),
            Err(ureq::Error::Status(404, _)) => Value::Null,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = file.read_exact(&mut b);
    }
    u128::from_le_bytes(b)
}

/// An agent key written to a 0600 file.
pub struct Key {
    pub id: String,
    pub secret: String,
    pub file: PathBuf,
}

impl Key {
    pub fn new(dir: &Path, id: &str, secret: &str) -> Key {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join(format!("{id}.key"));
        std::fs::write(&file, format!("{secret}\n")).expect("write key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Key {
            id: id.to_string(),
            secret: secret.to_string(),
            file,
        }
    }
}

/// One agent's private state: its plugins.toml, cert file, spool and the data its `os` reports.
pub struct AgentDir {
    pub dir: PathBuf,
}

impl AgentDir {
    /// An agent whose `os` collector answers from `os.json` (so a test can rename the host), plus
    /// `extra` plugins.toml text.
    pub fn new(parent: &Path, name: &str, extra: &str) -> AgentDir {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let os_json = dir.join("os.json");
        let toml = misbehaving(
            "os",
            &format!(
                "behaviour = \"echo_file\", path = {:?}",
                os_json.display().to_string()
            ),
            "",
        ) + extra;
        std::fs::write(dir.join("plugins.toml"), toml).expect("write plugins.toml");
        AgentDir { dir }
    }

    /// Sets what the `os` collector reports: the hostname and an os_version.
    pub fn set_os(&self, hostname: &str, version: &str) {
        let os = serde_json::json!({
            "facts": {"os_name": "Debian GNU/Linux", "os_version": version,
                "kernel": "6.1.0-test", "arch": "x86_64"},
            "volatile": {"uptime_seconds": 100},
            "identity": {"hostname": hostname, "machine_id": null}
        });
        std::fs::write(self.dir.join("os.json"), os.to_string()).expect("write os.json");
    }

    pub fn cert(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("cert"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn spooled(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("spool"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The `auto-client run` command for this agent (not started).
    pub fn command(&self, api: &str, key: Option<&Key>, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin("auto-client"));
        cmd.arg("--plugins")
            .arg(self.dir.join("plugins.toml"))
            .arg("run")
            .args(["--api", api])
            .arg("--cert-file")
            .arg(self.dir.join("cert"))
            .arg("--spool-dir")
            .arg(self.dir.join("spool"))
            .args(extra)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .env_remove("AUTO_CLIENT_CONFIG");
        if let Some(k) = key {
            cmd.args(["--key-id", &k.id]).arg("--key-file").arg(&k.file);
        }
        cmd
    }

    pub fn run(&self, api: &str, key: Option<&Key>, extra: &[&str]) -> Output {
        self.command(api, key, extra)
            .output()
            .expect("auto-client runs")
    }
}

/// Polls `f` until it gives `Some`, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A long-running child that is killed if the test ends first (a failed assert): an agent with
/// `--interval` would otherwise run on after the test.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `command` in the background with `RUST_LOG=info`, its stderr written to `log` (read
/// while and after it runs), its stdout dropped; killed when the guard is dropped.
pub fn spawn_logged(command: &mut Command, log: &Path) -> KillOnDrop {
    KillOnDrop(
        command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("it starts"),
    )
}

/// Sends SIGTERM to `child` and waits (60 s at most) for it to end: its exit status, and how long
/// it took to stop.
pub fn sigterm(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let asked = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_for(Duration::from_secs(60), "the process to stop", || {
        child.try_wait().ok().flatten()
    });
    (status, asked.elapsed())
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
