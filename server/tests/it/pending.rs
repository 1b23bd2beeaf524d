//! Registered hosts and the list of hosts due for collection.

use serde_json::json;

use crate::support::{Backend, Machine, Server};

fn pending_hosts_are_registered_and_not_reported_today(b: Backend) {
    let s = Server::start(b);
    let a = s.post(
        "/api/v1/hosts",
        &json!({"hostname": "db-1", "address": "10.0.0.7", "port": 2222}),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(
        s.post(
            "/api/v1/hosts",
            &json!({"hostname": "db-2", "address": "10.0.0.8"})
        )
        .status,
        201
    );
    // Registering again updates the address.
    assert_eq!(
        s.post(
            "/api/v1/hosts",
            &json!({"hostname": "db-2", "address": "10.0.0.9"})
        )
        .status,
        200
    );
    let out = s.admin(&[
        "hosts",
        "add",
        "db-3",
        "--address",
        "db-3.example",
        "--port",
        "22",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A host that reports by itself has no address: never pending.
    s.report(&Machine::new("agent-1").report(None));
    let p = s.get("/api/v1/hosts/pending");
    assert_eq!(p.status, 200);
    assert_eq!(
        p.body,
        json!([
            {"hostname": "db-1", "address": "10.0.0.7", "port": 2222},
            {"hostname": "db-2", "address": "10.0.0.9", "port": 22},
            {"hostname": "db-3", "address": "db-3.example", "port": 22},
        ])
    );
    // db-1 reports (its first report claims the registered name), and is no longer due.
    let r = s.report(&Machine::new("db-1").report(None));
    assert_eq!(r.status, 201, "{:?}", r.body);
    let p = s.get("/api/v1/hosts/pending");
    let names: Vec<_> = p
        .body
        .as_array()
        .map(|a| a.iter().map(|h| h["hostname"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("db-2"), json!("db-3")]);
    assert_eq!(s.get("/api/v1/hosts/db-1").body["address"], "10.0.0.7");
}

fn bad_registrations_are_400(b: Backend) {
    let s = Server::start(b);
    let a = s.post(
        "/api/v1/hosts",
        &json!({"hostname": "db 1", "address": "10.0.0.7"}),
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "malformed_host");
    let a = s.post("/api/v1/hosts", &json!({"hostname": "db-1"}));
    assert_eq!(a.status, 400);
    assert!(a.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("address")));
    let a = s.get("/api/v1/hosts/nope");
    assert_eq!(a.status, 404);
    assert_eq!(a.body["code"], "unknown_host");
    assert_eq!(s.get("/api/v1/changes?limit=0").status, 400);
}

crate::both!(
    pending_hosts_are_registered_and_not_reported_today,
    bad_registrations_are_400
);
