//! `PUT /api/v1/hosts/{hostname}/fields`: admin keys only (fleet, host and read keys get 403 and
//! change nothing), each change logged with the key's name, bad bodies refused naming the field,
//! and a report never touches the fields.

use serde_json::{json, Value};

use crate::both;
use crate::support::{now, random_hex, Answer, Backend, Machine, Server};

/// A key made by `keys create NAME --scope SCOPE [--host H]`: its secret.
fn key(s: &Server, name: &str, scope: &[&str]) -> String {
    let mut args = vec!["keys", "create", name, "--scope"];
    args.extend_from_slice(scope);
    let out = s.admin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PUT signed with the named key.
fn put_as(s: &Server, key: &str, secret: &str, path: &str, body: &Value) -> Answer {
    let body = body.to_string();
    let (ts, nonce) = (now(), random_hex(16));
    let sig =
        auto_proto::sign::signature(secret.as_bytes(), "PUT", path, ts, &nonce, body.as_bytes());
    s.raw(
        "PUT",
        path,
        body.as_bytes(),
        &[
            (auto_proto::sign::HEADER_KEY, key.to_owned()),
            (auto_proto::sign::HEADER_TIMESTAMP, ts.to_string()),
            (auto_proto::sign::HEADER_NONCE, nonce),
            (auto_proto::sign::HEADER_SIGNATURE, sig),
            ("content-type", "application/json".to_owned()),
        ],
    )
}

fn only_admin_keys_edit_hand_entered_fields_and_each_change_is_logged(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("db-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    let admin = key(&s, "ops", &["admin"]);
    let reader = key(&s, "grafana", &["read"]);
    let agent = key(&s, "agent-db-1", &["host", "--host", "db-1"]);
    let path = "/api/v1/hosts/db-1/fields";
    let body = json!({"owner": "alice", "rack": "R12", "tags": ["db", "prod"]});

    for (name, secret) in [
        ("it", s.secret.as_str()),
        ("grafana", &reader),
        ("agent-db-1", &agent),
    ] {
        let a = put_as(&s, name, secret, path, &body);
        assert_eq!(a.status, 403, "{name}: {:?}", a.body);
        assert_eq!(a.body["code"], "forbidden");
    }
    let f = s.get(path).body;
    assert_eq!(
        (f["owner"].clone(), f["changes"].clone()),
        (Value::Null, json!([])),
        "{f}"
    );

    let a = put_as(&s, "ops", &admin, path, &body);
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["changed"], 3);
    assert_eq!(a.body["owner"], "alice");
    assert_eq!(a.body["tags"], "db, prod");
    assert_eq!(a.body["updated_by"], "key:ops");
    let f = s.get(path).body;
    let log: Vec<(String, String, Value)> = f["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["by"].as_str().unwrap_or("").to_owned(),
                c["field"].as_str().unwrap_or("").to_owned(),
                c["new"].clone(),
            )
        })
        .collect();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|(by, _, _)| by == "key:ops"), "{log:?}");
    assert!(
        log.contains(&("key:ops".into(), "rack".into(), json!("R12"))),
        "{log:?}"
    );
    // Searchable at once; the tag filter sees the tags.
    let found = s.get("/api/v1/hosts?q=alice").body;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let tagged = s.get("/api/v1/hosts?tag=prod").body;
    assert_eq!(tagged[0]["hostname"], "db-1", "{tagged}");

    // A field left out keeps its value; null clears one; the same value again is no change.
    let a = put_as(
        &s,
        "ops",
        &admin,
        path,
        &json!({"owner": null, "rack": "R12", "notes": "moved\nto row 3"}),
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["changed"], 2);
    assert_eq!(
        (
            a.body["owner"].clone(),
            a.body["rack"].clone(),
            a.body["tags"].clone()
        ),
        (Value::Null, json!("R12"), json!("db, prod"))
    );
    assert_eq!(s.get(path).body["changes"][0]["old"], Value::Null);

    // Bad bodies: a 400 naming the field; nothing written.
    let long = "x".repeat(4001);
    for (bad, names) in [
        (json!({"colour": "red"}), "colour"),
        (json!({"owner": 5}), "owner"),
        (json!({"tags": ["a", 1]}), "tags"),
        (json!({"notes": long}), "notes"),
        (json!({"rack": "R1\u{0007}"}), "rack"),
        (json!(["owner"]), "object"),
    ] {
        let a = put_as(&s, "ops", &admin, path, &bad);
        assert_eq!(a.status, 400, "{bad}: {:?}", a.body);
        assert_eq!(a.body["code"], "malformed_fields");
        assert!(
            a.body["detail"].as_str().unwrap_or("").contains(names),
            "{:?}",
            a.body
        );
    }
    assert_eq!(
        s.get(path).body["changes"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(
        put_as(&s, "ops", &admin, "/api/v1/hosts/nope/fields", &body).status,
        404
    );

    // A report never touches them.
    assert_eq!(s.report(&m.report(Some("db-1"))).status, 200);
    let f = s.get(path).body;
    assert_eq!(
        (f["rack"].clone(), f["notes"].clone()),
        (json!("R12"), json!("moved\nto row 3"))
    );
}

both!(only_admin_keys_edit_hand_entered_fields_and_each_change_is_logged);
