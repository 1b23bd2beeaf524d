//! Helpers shared by every test: a real `auto-server` process on a free port over a private
//! database (a temp SQLite file, or a fresh PostgreSQL database when AUTO_TEST_PG_URL is set),
//! a signing HTTP client, and report builders.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_auto-server");

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The admin URL; each test makes its own database under it.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when AUTO_TEST_PG_URL is set; with AUTO_TEST_REQUIRE_PG=1 and no URL, fails.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("AUTO_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                if std::env::var("AUTO_TEST_REQUIRE_PG").as_deref() == Ok("1") {
                    panic!("AUTO_TEST_REQUIRE_PG=1 but AUTO_TEST_PG_URL is unset: run scripts/pg.sh and export its url");
                }
                eprintln!("skipped: AUTO_TEST_PG_URL is unset");
                None
            }
        }
    }
}

/// Runs every named case once per backend: `mod sqlite { ... }` and `mod postgres { ... }`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test]
               #[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
               fn $name() {
                match $crate::support::Backend::postgres() {
                    Some(b) => super::$name(b),
                    None => panic!("AUTO_TEST_PG_URL is unset: the PostgreSQL cases need a server (scripts/pg.sh start prints its url)"),
                }
            } )*
        }
    };
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("random source");
    hex::encode(buf)
}

pub fn uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running server and what a test needs to talk to it.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub key: String,
    pub secret: String,
    pub dir: PathBuf,
    pub db_url: String,
    backend: Backend,
    pg_db: Option<String>,
}

/// An HTTP answer: status, content type and parsed body (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

fn pg_admin(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to AUTO_TEST_PG_URL");
        conn.execute(sql).await.expect("admin statement");
        let _ = conn.close().await;
    });
}

fn with_database(url: &str, db: &str) -> String {
    // postgres://user@host:port/admin_db?params -> same with db
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = path_start.map_or(base, |i| &base[..i]);
    format!("{host_part}/{db}{query}")
}

impl Server {
    /// A fresh database and a server on it, with one key (`it`) created.
    pub fn start(backend: Backend) -> Server {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: Backend, extra: &[&str]) -> Server {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "auto-server-it-{}-{n}-{}",
            std::process::id(),
            random_hex(4)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (db_url, pg_db) = match &backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.join("it.db").display()), None),
            Backend::Postgres(admin) => {
                let name = format!("auto_it_{}", random_hex(6));
                pg_admin(admin, &format!("CREATE DATABASE {name}"));
                (with_database(admin, &name), Some(name))
            }
        };
        let mut server = Server {
            child: None,
            base: String::new(),
            key: "it".into(),
            secret: String::new(),
            dir,
            db_url,
            backend,
            pg_db,
        };
        let out = server.admin(&["keys", "create", "it"]);
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(server.secret.len(), 64, "a secret is 64 hex digits");
        server.spawn(extra);
        server
    }

    /// Runs an admin subcommand against this server's database.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["--db", &self.db_url, "--master-key"])
            .arg(self.dir.join("master.key"))
            .args(args)
            .env_remove("AUTO_SERVER_CONFIG")
            .output()
            .expect("run auto-server")
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let mut child = Command::new(BIN)
            .args(["--db", &self.db_url, "--master-key"])
            .arg(self.dir.join("master.key"))
            .args([
                "--log",
                "info,sqlx=warn",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start auto-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let base = line
            .trim()
            .strip_prefix("auto-server listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("server did not start: {line:?}\n{log}")
            })
            .to_owned();
        self.base = base;
        self.child = Some(child);
    }

    /// Stops the server and starts it again on the same database.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// Kills the server (SIGKILL) and starts it again on the same database with these flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.spawn(extra);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A request with explicit headers (or none), for auth tests.
    pub fn raw(&self, method: &str, path: &str, body: &[u8], headers: &[(&str, String)]) -> Answer {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut req = agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = if method == "GET" {
            req.call()
        } else {
            req.send_bytes(body)
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error: {e}"),
        };
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_owned();
        let text = resp.into_string().unwrap_or_default();
        Answer {
            status,
            content_type,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Signature headers for a request, with this server's key.
    pub fn signed_headers(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        ts: i64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let sig =
            auto_proto::sign::signature(self.secret.as_bytes(), method, path, ts, nonce, body);
        vec![
            (auto_proto::sign::HEADER_KEY, self.key.clone()),
            (auto_proto::sign::HEADER_TIMESTAMP, ts.to_string()),
            (auto_proto::sign::HEADER_NONCE, nonce.to_owned()),
            (auto_proto::sign::HEADER_SIGNATURE, sig),
        ]
    }

    pub fn signed(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let headers = self.signed_headers(method, path, body, now(), &random_hex(16));
        self.raw(method, path, body, &headers)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.signed("GET", path, b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.signed("POST", path, body.to_string().as_bytes())
    }

    pub fn report(&self, report: &Value) -> Answer {
        self.post("/api/v1/reports", report)
    }

    /// The change log of one host, oldest first.
    pub fn changes_of(&self, hostname: &str) -> Vec<Value> {
        let a = self.get(&format!("/api/v1/hosts/{hostname}/changes?limit=1000"));
        assert_eq!(a.status, 200, "{:?}", a.body);
        let mut v = a.body.as_array().cloned().unwrap_or_default();
        v.reverse();
        v
    }

    pub fn errors(&self) -> Vec<Value> {
        let a = self.get("/api/v1/errors?limit=1000");
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.body.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let (Backend::Postgres(admin), Some(db)) = (&self.backend, &self.pg_db) {
            pg_admin(admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A real collector's output: `plugins/PLUGIN/fixtures/CASE/output.json`, written by that
/// collector's own tests from a recorded machine (so a drift between a collector and the server
/// fails a test here, not in production).
pub fn golden(plugin: &str, case: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugins")
        .join(plugin)
        .join("fixtures")
        .join(case)
        .join("output.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run the collector's tests with AUTO_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded machine each shipped collector's data comes from.
pub const CASES: [(&str, &str); 6] = [
    ("os", "firecracker-vm"),
    ("cpu", "facter-amd64twentyfour"),
    ("memory", "dell-poweredge-ddr4"),
    ("disk", "intel-rste-server"),
    ("nic", "supermicro-bond"),
    ("board", "dell-poweredge-m630"),
];

/// A machine as the six collectors report it (their recorded outputs), with its own identity;
/// tests change its data and report again.
#[derive(Debug, Clone)]
pub struct Machine {
    pub hostname: String,
    pub machine_id: String,
    pub serial: String,
    pub uuid: String,
    /// Each collector's `data`, by plugin name.
    pub data: std::collections::BTreeMap<String, Value>,
}

impl Machine {
    pub fn new(hostname: &str) -> Machine {
        Machine {
            hostname: hostname.into(),
            machine_id: random_hex(16),
            serial: format!("SN{}", random_hex(4).to_uppercase()),
            uuid: uuid(),
            data: CASES
                .iter()
                .map(|(p, case)| ((*p).to_owned(), golden(p, case)))
                .collect(),
        }
    }

    pub fn fact(&self, plugin: &str, name: &str) -> &Value {
        &self.data[plugin]["facts"][name]
    }

    pub fn fact_mut(&mut self, plugin: &str, name: &str) -> &mut Value {
        &mut self.data.get_mut(plugin).expect("plugin")["facts"][name]
    }

    /// The parts of a list the collector saw.
    pub fn parts(&self, plugin: &str, list: &str) -> &Vec<Value> {
        self.data[plugin]["lists"][list]["parts"]
            .as_array()
            .expect("a seen list")
    }

    pub fn parts_mut(&mut self, plugin: &str, list: &str) -> &mut Vec<Value> {
        self.data.get_mut(plugin).expect("plugin")["lists"][list]["parts"]
            .as_array_mut()
            .expect("a seen list")
    }

    pub fn plugins(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, data) in &self.data {
            let mut data = data.clone();
            // This machine's own identity, in the recorded machine's data.
            if name == "os" {
                data["volatile"] = json!({"uptime_seconds": now() % 100_000});
                data["identity"] =
                    json!({"hostname": self.hostname, "machine_id": self.machine_id});
            }
            if name == "board" {
                data["identity"] = json!({"serial": self.serial, "system_uuid": self.uuid});
                data["facts"]["serial"] = json!(self.serial);
                data["facts"]["uuid"] = json!(self.uuid);
            }
            out.insert(
                name.clone(),
                json!({"status": "ok", "version": "0.2.0", "duration_ms": 3, "data": data}),
            );
        }
        Value::Object(out)
    }

    /// A report as a client with cert `previous` sends it.
    pub fn report(&self, previous: Option<&str>) -> Value {
        json!({
            "schema": 2,
            "report_id": uuid(),
            "hostname": self.hostname,
            "previous_hostname": previous,
            "collected_at": "2026-11-23T09:00:00Z",
            "agent": {"version": "0.2.0", "mode": "agent"},
            "plugins": self.plugins(),
        })
    }
}
