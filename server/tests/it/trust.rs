//! Trust (issue 9): nonces outlive their window, nothing is written before a signature is
//! verified, every authentication failure is the same 401, key scopes, connection limits, and
//! private database files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{now, random_hex, Backend, Machine, Server};

/// Every table's row count, read from the database itself.
fn row_counts(db_url: &str) -> Vec<(String, i64)> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::AnyConnection::connect(db_url)
            .await
            .expect("connect to the test database");
        let list = if db_url.starts_with("sqlite:") {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        } else {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        };
        let tables: Vec<String> = sqlx::query(list)
            .fetch_all(&mut conn)
            .await
            .expect("list tables")
            .iter()
            .map(|r| r.try_get::<String, _>(0).expect("name"))
            .collect();
        let mut counts = Vec::new();
        for t in tables {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&mut conn)
                .await
                .expect("count")
                .try_get(0)
                .expect("count");
            counts.push((t, n));
        }
        let _ = conn.close().await;
        counts
    })
}

fn a_replayed_nonce_is_refused_until_its_timestamp_has_left_the_window(b: Backend) {
    // skew 3 s, pruning every second: a request stamped now + skew is valid until now + 2 x skew,
    // so its nonce must survive the prunings that run meanwhile.
    let s = Server::start_with(b, &["--clock-skew-secs", "3", "--nonce-prune-secs", "1"]);
    let path = "/api/v1/hosts";
    let stamped = now() + 3;
    let h = s.signed_headers("GET", path, b"", stamped, &random_hex(16));
    assert_eq!(s.raw("GET", path, b"", &h).status, 200);
    // Prunings run at least three times; the timestamp is still inside the window (now <= ts + 3).
    std::thread::sleep(Duration::from_millis(4500));
    assert!(now() <= stamped + 3, "the test machine was too slow");
    let replay = s.raw("GET", path, b"", &h);
    assert_eq!(
        replay.status, 401,
        "the replay was accepted: {:?}",
        replay.body
    );
    // A fresh request still passes.
    assert_eq!(s.get(path).status, 200);
}

fn refused_requests_write_nothing(b: Backend) {
    let mut s = Server::start_with(b, &["--max-body-bytes", "4096"]);
    // one accepted write first
    let seed = serde_json::json!({"hostname": "seed-1", "address": "10.0.0.1", "port": 22});
    assert!(s.post("/api/v1/hosts", &seed).status < 300);
    let before = row_counts(&s.db_url);
    let path = "/api/v1/reports";
    let big = vec![b'x'; 8192];
    let small = br#"{"schema":2,"hostname":"forged-1"}"#.to_vec();
    let secret = s.secret.clone();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..200 {
        let (body, headers) = match i % 5 {
            // a known key, a current timestamp, a forged signature and a body over the limit
            0 => {
                s.secret = random_hex(32);
                (
                    &big,
                    s.signed_headers("POST", path, &big, now(), &random_hex(16)),
                )
            }
            // the same, under the limit
            1 => {
                s.secret = random_hex(32);
                (
                    &small,
                    s.signed_headers("POST", path, &small, now(), &random_hex(16)),
                )
            }
            // an unknown key
            2 => {
                s.secret = secret.clone();
                let mut h = s.signed_headers("POST", path, &small, now(), &random_hex(16));
                h[0].1 = format!("nobody-{i}");
                (&small, h)
            }
            // a stale timestamp with the right secret
            3 => {
                s.secret = secret.clone();
                (
                    &small,
                    s.signed_headers("POST", path, &small, now() - 3600, &random_hex(16)),
                )
            }
            // no signature at all, a large body
            _ => (&big, Vec::new()),
        };
        let a = s.raw("POST", path, body, &headers);
        *statuses.entry(a.status).or_default() += 1;
    }
    s.secret = secret;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [401, 413],
        "{statuses:?}"
    );
    assert_eq!(
        row_counts(&s.db_url),
        before,
        "a refused request wrote to the database"
    );
}

fn every_authentication_failure_is_the_same_401(b: Backend) {
    let mut s = Server::start(b);
    let path = "/api/v1/hosts";
    let mut bodies: Vec<(&str, Value)> = Vec::new();
    let mut h = s.signed_headers("GET", path, b"", now(), &random_hex(16));
    h[0].1 = "nobody".into();
    bodies.push(("unknown key", s.raw("GET", path, b"", &h).body));
    let secret = s.secret.clone();
    s.secret = random_hex(32);
    let h = s.signed_headers("GET", path, b"", now(), &random_hex(16));
    bodies.push(("known key, bad signature", s.raw("GET", path, b"", &h).body));
    s.secret = secret;
    let h = s.signed_headers("GET", path, b"", now() - 3600, &random_hex(16));
    bodies.push(("stale timestamp", s.raw("GET", path, b"", &h).body));
    let h = s.signed_headers("GET", path, b"", now(), &random_hex(16));
    assert_eq!(s.raw("GET", path, b"", &h).status, 200);
    bodies.push(("replayed nonce", s.raw("GET", path, b"", &h).body));
    bodies.push(("unsigned", s.raw("GET", path, b"", &[]).body));
    let (_, first) = &bodies[0];
    assert_eq!(first["code"], "unauthorized", "{first:?}");
    assert_eq!(first["status"], 401, "{first:?}");
    for (what, body) in &bodies {
        assert_eq!(body, first, "{what} answers differently");
    }
    // the reason is in the server log
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    assert!(
        log.contains("no active key named \\\"nobody\\\"") || log.contains("nobody"),
        "{log}"
    );
}

/// Signs with another key of the same server.
fn as_key<T>(s: &mut Server, name: &str, secret: &str, f: impl FnOnce(&Server) -> T) -> T {
    let saved = (s.key.clone(), s.secret.clone());
    s.key = name.into();
    s.secret = secret.into();
    let out = f(s);
    (s.key, s.secret) = saved;
    out
}

fn create_key(s: &Server, args: &[&str]) -> String {
    let out = s.admin(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A host key, `web-1-agent`, bound to the host web-1 (which it registers).
fn web_1_key(s: &Server) -> String {
    create_key(
        s,
        &[
            "keys",
            "create",
            "web-1-agent",
            "--scope",
            "host",
            "--host",
            "web-1",
        ],
    )
}

fn keys_have_scopes(b: Backend) {
    let mut s = Server::start(b);
    let read = create_key(&s, &["keys", "create", "dash", "--scope", "read"]);
    let web = web_1_key(&s);
    // a host key needs its host; --host is for host keys only
    let out = s.admin(&["keys", "create", "x", "--scope", "host"]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.admin(&["keys", "create", "y", "--host", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    let list = String::from_utf8_lossy(&s.admin(&["keys", "list"]).stdout).into_owned();
    assert!(
        list.lines().any(|l| l.starts_with("dash\tread\t")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("web-1-agent\thost web-1\t")),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("it\tfleet\t")), "{list}");
    // the host key registered its host, without an address
    assert_eq!(s.get("/api/v1/hosts/web-1").status, 200);

    // read: GET only, and a refused write writes nothing
    assert_eq!(
        as_key(&mut s, "dash", &read, |s| s.get("/api/v1/hosts")).status,
        200
    );
    let before = row_counts(&s.db_url);
    let new_host = serde_json::json!({"hostname": "db-9", "address": "10.0.0.9", "port": 22});
    let a = as_key(&mut s, "dash", &read, |s| {
        s.post("/api/v1/hosts", &new_host)
    });
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("forbidden")),
        "{:?}",
        a.body
    );
    let forged = serde_json::json!({"schema": 2, "hostname": "db-9"});
    let a = as_key(&mut s, "dash", &read, |s| s.report(&forged));
    assert_eq!(a.status, 403, "{:?}", a.body);
    // a host key may not register hosts either
    let a = as_key(&mut s, "web-1-agent", &web, |s| {
        s.post("/api/v1/hosts", &new_host)
    });
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert_eq!(row_counts(&s.db_url), before, "a refused write wrote");
    // a fleet key may
    assert!(s.post("/api/v1/hosts", &new_host).status < 300);
}

fn a_host_key_reports_only_for_its_own_host(b: Backend) {
    let mut s = Server::start(b);
    let web = web_1_key(&s);
    // a host key reports for its own host, not for another
    let a = as_key(&mut s, "web-1-agent", &web, |s| {
        s.report(&Machine::new("web-1").report(None))
    });
    assert!(a.status < 300, "{:?}", a.body);
    let a = as_key(&mut s, "web-1-agent", &web, |s| {
        s.report(&Machine::new("web-2").report(None))
    });
    assert_eq!(a.status, 403, "{:?}", a.body);
}

/// Reports arriving together are applied together (on SQLite several in one transaction): each
/// keeps its own outcome. Accepted ones are stored, refused ones (a host key writing another
/// host, a replayed request) write nothing, and none of them changes what the others get.
fn reports_arriving_together_keep_their_own_outcomes(b: Backend) {
    let mut s = Server::start(b);
    let web = web_1_key(&s);
    let path = "/api/v1/reports";
    let sign = |key: &str, secret: &str, body: &[u8], nonce: &str| {
        let ts = now();
        let sig = auto_proto::sign::signature(secret.as_bytes(), "POST", path, ts, nonce, body);
        vec![
            (auto_proto::sign::HEADER_KEY, key.to_owned()),
            (auto_proto::sign::HEADER_TIMESTAMP, ts.to_string()),
            (auto_proto::sign::HEADER_NONCE, nonce.to_owned()),
            (auto_proto::sign::HEADER_SIGNATURE, sig),
        ]
    };
    // 16 new hosts (fleet key), 16 foreign hosts (web-1's key: 403), and 8 requests each sent
    // twice with the same nonce (one is a replay: 401)
    let mut requests = Vec::new();
    for i in 0..16 {
        let body = Machine::new(&format!("new-{i}")).report(None).to_string();
        let h = sign(&s.key, &s.secret, body.as_bytes(), &random_hex(16));
        requests.push(("new", body, h));
        let body = Machine::new(&format!("foreign-{i}"))
            .report(None)
            .to_string();
        let h = sign("web-1-agent", &web, body.as_bytes(), &random_hex(16));
        requests.push(("foreign", body, h));
    }
    for i in 0..8 {
        let body = Machine::new(&format!("twice-{i}")).report(None).to_string();
        let h = sign(&s.key, &s.secret, body.as_bytes(), &random_hex(16));
        requests.push(("twice", body.clone(), h.clone()));
        requests.push(("twice", body, h));
    }
    let nonces = |s: &Server| s.sql_number("SELECT COUNT(*) FROM nonces");
    let nonces_before = nonces(&s);
    let barrier = std::sync::Barrier::new(requests.len());
    let answers: Vec<(&str, u16)> = std::thread::scope(|scope| {
        let (s, barrier) = (&s, &barrier);
        let threads: Vec<_> = requests
            .iter()
            .map(|(kind, body, h)| {
                scope.spawn(move || {
                    barrier.wait();
                    (*kind, s.raw("POST", path, body.as_bytes(), h).status)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let count = |kind: &str, status: u16| {
        answers
            .iter()
            .filter(|(k, st)| *k == kind && *st == status)
            .count()
    };
    assert_eq!(count("new", 201), 16, "{answers:?}");
    assert_eq!(count("foreign", 403), 16, "{answers:?}");
    assert_eq!(
        (count("twice", 201), count("twice", 401)),
        (8, 8),
        "{answers:?}"
    );
    // only the accepted requests left their nonce: a refused one wrote nothing
    assert_eq!(nonces(&s) - nonces_before, 16 + 8);
    for i in 0..16 {
        let a = s.get(&format!("/api/v1/hosts/new-{i}"));
        assert_eq!(a.status, 200, "new-{i} acknowledged but not stored");
        assert_eq!(
            s.get(&format!("/api/v1/hosts/foreign-{i}")).status,
            404,
            "a refused report wrote foreign-{i}"
        );
    }
    for i in 0..8 {
        assert_eq!(s.get(&format!("/api/v1/hosts/twice-{i}")).status, 200);
    }
    // web-1's key still works for web-1 after its refusals
    let a = as_key(&mut s, "web-1-agent", &web, |s| {
        s.report(&Machine::new("web-1").report(None))
    });
    assert!(a.status < 300, "{:?}", a.body);
}

fn idle_and_slow_connections_do_not_block_the_server(b: Backend) {
    let s = Server::start_with(
        b,
        &["--header-timeout-secs", "2", "--keep-alive-secs", "30"],
    );
    let addr = s.base.trim_start_matches("http://").to_owned();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let started = Instant::now();
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // slowloris: a header line every 500 ms, never the end of the head
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .expect("write");
    let started = Instant::now();
    let closed_after = loop {
        std::thread::sleep(Duration::from_millis(500));
        let wrote = slow.write_all(b"x-slow: 1\r\n");
        let mut buf = [0u8; 64];
        slow.set_read_timeout(Some(Duration::from_millis(10))).ok();
        let read = slow.read(&mut buf);
        if wrote.is_err()
            || matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut)
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slowloris was never closed"
        );
    };
    assert!(
        closed_after >= Duration::from_millis(1500),
        "{closed_after:?}"
    );
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
    drop(idle);
}

fn a_full_server_answers_503_rather_than_hanging(b: Backend) {
    let s = Server::start_with(b, &["--max-clients", "20"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer:?}"
    );
    drop(idle);
    // once the idle connections are gone, the server answers again
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
}

#[test]
fn database_files_and_the_master_key_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(Backend::Sqlite);
    let host = serde_json::json!({"hostname": "p-1", "address": "10.0.0.1", "port": 22});
    assert!(s.post("/api/v1/hosts", &host).status < 300);
    for name in ["it.db", "it.db-wal", "it.db-shm", "master.key"] {
        let meta = std::fs::metadata(s.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
}

crate::both!(
    a_replayed_nonce_is_refused_until_its_timestamp_has_left_the_window,
    refused_requests_write_nothing,
    every_authentication_failure_is_the_same_401,
    keys_have_scopes,
    a_host_key_reports_only_for_its_own_host,
    reports_arriving_together_keep_their_own_outcomes,
    idle_and_slow_connections_do_not_block_the_server,
    a_full_server_answers_503_rather_than_hanging,
);
