//! `GET /metrics` after real traffic, read with a Prometheus text-format parser (the
//! `prometheus-parse` crate, as a scraper would), and who may read it.

use std::collections::HashMap;

use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::support::{random_hex, Backend, Machine, Server};

/// The scrape as `name{label=value}` → value (a histogram's buckets as `name{le=X}`).
fn scrape(server: &Server, headers: &[(&str, String)]) -> (u16, String, HashMap<String, f64>) {
    let mut req = ureq::get(&format!("{}/metrics", server.base));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET /metrics: {e}"),
    };
    let status = resp.status();
    let content_type = resp.header("content-type").unwrap_or("").to_owned();
    let text = resp.into_string().expect("body");
    if status != 200 {
        return (status, content_type, HashMap::new());
    }
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                out.insert(key, v);
            }
            Value::Histogram(buckets) => {
                for b in buckets {
                    out.insert(format!("{}{{le={}}}", s.metric, b.less_than), b.count);
                }
            }
            Value::Summary(_) => panic!("no summaries expected: {}", s.metric),
        }
    }
    (status, content_type, out)
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from the scrape: {:?}", m.keys()))
}

fn reports_and_refusals_are_counted(backend: Backend) {
    let server = Server::start(backend);
    // Three new hosts, one of them again (updated), one malformed, one unsigned, one replay.
    let machines: Vec<Machine> = (0..3).map(|i| Machine::new(&format!("m-{i}"))).collect();
    for m in &machines {
        let a = server.report(&m.report(None));
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let a = server.report(&machines[0].report(Some("m-0")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = server.report(&json!({"schema": 2, "hostname": "broken"}));
    assert_eq!(a.status, 400, "{:?}", a.body);
    let body = machines[1].report(Some("m-1")).to_string();
    let a = server.raw("POST", "/api/v1/reports", body.as_bytes(), &[]);
    assert_eq!(a.status, 401, "{:?}", a.body);
    let headers = server.signed_headers(
        "POST",
        "/api/v1/reports",
        body.as_bytes(),
        crate::support::now(),
        &random_hex(16),
    );
    let a = server.raw("POST", "/api/v1/reports", body.as_bytes(), &headers);
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = server.raw("POST", "/api/v1/reports", body.as_bytes(), &headers);
    assert_eq!(a.status, 401, "{:?}", a.body);
    // Other requests are not reports.
    assert_eq!(server.get("/api/v1/hosts").status, 200);

    let (status, content_type, m) = scrape(&server, &[]);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let outcome = |o: &str| get(&m, &format!("auto_server_reports_total{{outcome={o}}}"));
    assert_eq!(outcome("created"), 3.0);
    assert_eq!(outcome("updated"), 2.0);
    assert_eq!(outcome("malformed"), 1.0);
    assert_eq!(outcome("unauthorized"), 1.0);
    assert_eq!(outcome("replayed"), 1.0);
    assert_eq!(outcome("conflict"), 0.0);
    assert_eq!(outcome("unavailable"), 0.0);
    let sent = 8.0;
    assert_eq!(get(&m, "auto_server_ingest_duration_seconds_count{}"), sent);
    assert_eq!(get(&m, "auto_server_ingest_duration_seconds{le=inf}"), sent);
    let sum = get(&m, "auto_server_ingest_duration_seconds_sum{}");
    assert!(sum > 0.0 && sum < 60.0 * sent, "{sum}");
    // buckets are cumulative
    let mut les: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix("auto_server_ingest_duration_seconds{le=")?;
            Some((le.trim_end_matches('}').parse::<f64>().ok()?, *v))
        })
        .collect();
    les.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(les.len() >= 10, "{les:?}");
    assert!(les.windows(2).all(|w| w[0].1 <= w[1].1), "{les:?}");
    assert_eq!(get(&m, "auto_server_hosts{}"), 3.0);
    assert_eq!(get(&m, "auto_server_hosts_stale{}"), 0.0);
    assert_eq!(get(&m, "auto_server_database_errors_total{}"), 0.0);
    // this scrape's own connection
    assert!(get(&m, "auto_server_open_connections{}") >= 1.0);
    assert_eq!(
        get(
            &m,
            &format!(
                "auto_server_build_info{{version={}}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    // A registered host that never reported is stale, and so is one not seen for stale_days; the
    // counts are cached for 15 s, so a new server process shows them at once.
    let out = server.admin(&["hosts", "add", "never", "--address", "192.0.2.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // and one whose last report is older than stale_days (7): 8 days ago
    server
        .sql("UPDATE hosts SET last_report_at = last_report_at - 8 * 86400 WHERE hostname = 'm-2'");
    let peer = server.peer();
    let (_, _, m) = scrape(&peer, &[]);
    assert_eq!(get(&m, "auto_server_hosts{}"), 4.0);
    assert_eq!(get(&m, "auto_server_hosts_stale{}"), 2.0);
    // per process: the new one has counted nothing yet
    assert_eq!(get(&m, "auto_server_reports_total{outcome=created}"), 0.0);
}

crate::both!(reports_and_refusals_are_counted);

/// This machine's first non-loopback IPv4 address, if it has one.
fn outside_address() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_owned)
}

#[test]
fn metrics_from_outside_loopback_need_the_token() {
    let Some(ip) = outside_address() else {
        eprintln!("skipped: this machine has no non-loopback IPv4 address");
        return;
    };
    let token = "a-metrics-token-of-32-characters";
    let mut server = Server::start(Backend::Sqlite);
    let (mut child, base) = crate::multi::serve(
        &server.db_url,
        &server.dir.join("master.key"),
        &server.dir.join("outside.log"),
        "0.0.0.0:0",
        &["--metrics-token", token],
    );
    let port = base.rsplit(':').next().expect("port").to_owned();
    server.base = format!("http://{ip}:{port}");
    let (status, _, _) = scrape(&server, &[]);
    assert_eq!(status, 403, "no token from {ip}");
    let (status, _, _) = scrape(
        &server,
        &[(
            "authorization",
            "Bearer wrong-token-of-32-characters!".into(),
        )],
    );
    assert_eq!(status, 403, "a wrong token from {ip}");
    let (status, _, m) = scrape(&server, &[("authorization", format!("Bearer {token}"))]);
    assert_eq!(status, 200);
    assert!(m.contains_key("auto_server_hosts{}"));
    // the API itself is still signed only
    assert_eq!(
        server
            .raw(
                "GET",
                "/api/v1/hosts",
                b"",
                &[("authorization", format!("Bearer {token}"))]
            )
            .status,
        401
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `/readyz` writes: while another connection holds SQLite's write lock (as a stuck writer
/// would), it is 503 with the reason, and 200 once the lock is gone; `/healthz` stays 200.
#[test]
fn readyz_is_503_while_the_database_takes_no_writes() {
    use sqlx::{Connection, Executor};
    let server = Server::start(Backend::Sqlite);
    let plain = |path: &str| match ureq::get(&format!("{}{path}", server.base)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {path}: {e}"),
    };
    assert_eq!(plain("/readyz"), (200, "ready\n".to_owned()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut conn = rt
        .block_on(sqlx::SqliteConnection::connect(&server.db_url))
        .expect("open");
    rt.block_on(conn.execute("BEGIN IMMEDIATE")).expect("lock");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, reason) = plain("/readyz");
    assert_eq!(status, 503, "{reason}");
    assert_eq!(
        reason,
        "database not writable: the write probe took longer than 5 s\n"
    );
    assert_eq!(plain("/healthz").0, 200);
    // A client that gives up while its report waits for the lock: its handler is cancelled in
    // the middle of BEGIN IMMEDIATE; the write connection must not go back to the pool inside a
    // transaction.
    let body = Machine::new("impatient").report(None).to_string();
    let headers = server.signed_headers(
        "POST",
        "/api/v1/reports",
        body.as_bytes(),
        crate::support::now(),
        &random_hex(16),
    );
    let mut req = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .post(&format!("{}/api/v1/reports", server.base));
    for (k, v) in &headers {
        req = req.set(k, v);
    }
    assert!(
        matches!(
            req.send_bytes(body.as_bytes()),
            Err(ureq::Error::Transport(_))
        ),
        "the report did not wait for the lock"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    rt.block_on(conn.execute("ROLLBACK")).expect("unlock");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(plain("/readyz"), (200, "ready\n".to_owned()));
    let a = server.report(&Machine::new("after-the-lock").report(None));
    assert_eq!(a.status, 201, "{:?}", a.body);
}
