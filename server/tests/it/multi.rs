//! More than one server (issue 13): two `auto-server serve` processes on one PostgreSQL. Nothing
//! another process needs lives in a process: the identity decision, nonces, sessions and the
//! login rate limit are in the database.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::{now, random_hex, Backend, Machine, Server, BIN};

fn two_servers() -> (Server, Server) {
    let Some(backend @ Backend::Postgres(_)) = Backend::postgres() else {
        panic!("AUTO_TEST_PG_URL is unset: the PostgreSQL cases need a server");
    };
    let a = Server::start(backend);
    let b = a.peer();
    (a, b)
}

#[test]
#[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
fn twenty_first_reports_for_one_name_over_two_servers_make_one_host() {
    let (a, b) = two_servers();
    let servers = Arc::new([a, b]);
    let start = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let servers = servers.clone();
            let start = start.clone();
            // twenty machines that all believe they are `contested` and have never reported
            let body = Machine::new("contested").report(None).to_string();
            std::thread::spawn(move || {
                let server = &servers[i % 2];
                let headers = server.signed_headers(
                    "POST",
                    "/api/v1/reports",
                    body.as_bytes(),
                    now(),
                    &random_hex(16),
                );
                start.wait();
                let a = server.raw("POST", "/api/v1/reports", body.as_bytes(), &headers);
                (i % 2, a.status, a.body)
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let created: Vec<_> = answers.iter().filter(|(_, s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (_, status, body) in answers.iter().filter(|(_, s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body:?}");
        assert_eq!(body["code"], "hostname_taken", "{body:?}");
    }
    // both servers answered some of them
    assert!(answers.iter().any(|(s, _, _)| *s == 0) && answers.iter().any(|(s, _, _)| *s == 1));
    for server in servers.iter() {
        let list = server.get("/api/v1/hosts?q=contested");
        assert_eq!(list.status, 200, "{:?}", list.body);
        let hosts = list.body.as_array().cloned().unwrap_or_default();
        assert_eq!(hosts.len(), 1, "{:?}", list.body);
        // the 19 refusals are in the error log, whichever server took them
        let taken = server
            .errors()
            .iter()
            .filter(|e| e["code"] == "hostname_taken")
            .count();
        assert_eq!(taken, 19);
    }
}

#[test]
#[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
fn a_request_accepted_by_one_server_is_refused_by_the_other() {
    let (a, b) = two_servers();
    let body = Machine::new("replayed").report(None).to_string();
    let headers = a.signed_headers(
        "POST",
        "/api/v1/reports",
        body.as_bytes(),
        now(),
        &random_hex(16),
    );
    let first = a.raw("POST", "/api/v1/reports", body.as_bytes(), &headers);
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replay = b.raw("POST", "/api/v1/reports", body.as_bytes(), &headers);
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    assert_eq!(replay.body["code"], "unauthorized");
    // a signed GET's nonce too
    let headers = a.signed_headers("GET", "/api/v1/hosts", b"", now(), &random_hex(16));
    assert_eq!(a.raw("GET", "/api/v1/hosts", b"", &headers).status, 200);
    assert_eq!(b.raw("GET", "/api/v1/hosts", b"", &headers).status, 401);
}

/// (status, location, set-cookie values, body)
fn page(
    s: &Server,
    method: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, String, Vec<String>, String) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let req = agent
        .request(method, &format!("{}{path}", s.base))
        .set("cookie", cookie);
    let result = if method == "GET" {
        req.call()
    } else {
        req.send_form(form)
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let location = resp.header("location").unwrap_or("").to_owned();
    let cookies = resp
        .all("set-cookie")
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    (
        status,
        location,
        cookies,
        resp.into_string().unwrap_or_default(),
    )
}

#[test]
#[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
fn a_session_made_on_one_server_works_and_ends_on_the_other() {
    let (a, b) = two_servers();
    crate::ui::add_user(&a, "ada", "viewer", "ada-password-1");
    // the login form's double-submit token: our own value in the cookie and the form
    let token = random_hex(32);
    let (status, location, cookies, body) = page(
        &a,
        "POST",
        "/ui/login",
        &format!("auto_login={token}"),
        &[
            ("csrf", &token),
            ("user", "ada"),
            ("password", "ada-password-1"),
            ("next", "/ui/"),
        ],
    );
    assert_eq!(status, 303, "{body}");
    assert_eq!(location, "/ui/");
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("auto_session="))
        .and_then(|c| c.split(';').next())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"))
        .to_owned();
    let cookie = format!("auto_session={session}");
    let (status, _, _, body) = page(&b, "GET", "/ui/", &cookie, &[]);
    assert_eq!(status, 200, "the session from A does not open B's pages");
    // log out on A with the session's form token
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the logout form's token")
        .to_owned();
    let (status, location, _, _) = page(&a, "POST", "/ui/logout", &cookie, &[("csrf", &csrf)]);
    assert_eq!((status, location.as_str()), (303, "/ui/login"));
    let (status, location, _, _) = page(&b, "GET", "/ui/", &cookie, &[]);
    assert_eq!(status, 303, "B still takes the session A ended");
    assert!(location.starts_with("/ui/login"), "{location}");

    // failed logins counted on A refuse on B (5 per user name in 15 minutes)
    for server in [&a, &b, &a, &b, &a] {
        let t = random_hex(32);
        let (status, ..) = page(
            server,
            "POST",
            "/ui/login",
            &format!("auto_login={t}"),
            &[
                ("csrf", &t),
                ("user", "ada"),
                ("password", "wrong"),
                ("next", "/ui/"),
            ],
        );
        assert_eq!(status, 401);
    }
    let t = random_hex(32);
    let (status, ..) = page(
        &b,
        "POST",
        "/ui/login",
        &format!("auto_login={t}"),
        &[
            ("csrf", &t),
            ("user", "ada"),
            ("password", "ada-password-1"),
            ("next", "/ui/"),
        ],
    );
    assert_eq!(status, 429, "the rate limit is per process");
}

/// Starts `serve` on `listen` and returns (child, base; empty if it did not start); the caller
/// kills the child.
pub fn serve(
    db: &str,
    master: &std::path::Path,
    log: &std::path::Path,
    listen: &str,
    extra: &[&str],
) -> (std::process::Child, String) {
    let log = std::fs::File::create(log).expect("log");
    let mut child = Command::new(BIN)
        .args(["--db", db, "--master-key"])
        .arg(master)
        .args(["--log", "info,sqlx=warn", "serve", "--listen", listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start auto-server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    (
        child,
        line.trim()
            .strip_prefix("auto-server listening on ")
            .unwrap_or("")
            .to_owned(),
    )
}

#[test]
#[ignore = "PostgreSQL: run with --include-ignored and AUTO_TEST_PG_URL (scripts/test.sh does)"]
fn two_servers_started_at_once_on_an_empty_database_both_serve() {
    let Some(Backend::Postgres(admin)) = Backend::postgres() else {
        panic!("AUTO_TEST_PG_URL is unset");
    };
    // an empty database, then both servers at once: both migrate, one applies each migration
    let holder = Server::start(Backend::Postgres(admin));
    holder.admin(&["migrate"]);
    {
        use sqlx::{Connection, Executor};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&holder.db_url)
                .await
                .expect("connect");
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
                .await
                .expect("empty the database");
            let _ = conn.close().await;
        });
    }
    let master = holder.dir.join("master.key");
    let starts: Vec<_> = (0..2)
        .map(|i| {
            let db = holder.db_url.clone();
            let master = master.clone();
            let log = holder.dir.join(format!("race-{i}.log"));
            std::thread::spawn(move || (serve(&db, &master, &log, "127.0.0.1:0", &[]), log))
        })
        .collect();
    for s in starts {
        let ((mut child, base), log) = s.join().expect("thread");
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            !base.is_empty(),
            "a server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
