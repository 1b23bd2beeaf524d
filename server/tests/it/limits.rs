//! Malformed and oversized bodies: a 400 or 413 problem that says what is wrong; a malformed
//! (authenticated) report also gets an error-log row, an oversized body nothing.

use serde_json::json;

use crate::support::{Backend, Machine, Server};

fn refused(s: &Server, body: &[u8], status: u16, code: &str, says: &str) {
    let a = s.signed("POST", "/api/v1/reports", body);
    assert_eq!(a.status, status, "{:?}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(a.body["code"], code);
    let detail = a.body["detail"].as_str().unwrap_or("");
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
}

fn malformed_reports_say_what_is_wrong(b: Backend) {
    let s = Server::start(b);
    refused(
        &s,
        b"{not json",
        400,
        "malformed_report",
        "body is not json",
    );
    let m = Machine::new("web-1");
    let mut r = m.report(None);
    r["hostname"] = json!("bad name!");
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "hostname \"bad name!\"",
    );
    let mut r = m.report(None);
    r["report_id"] = json!("42");
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "report_id \"42\" is not a uuid",
    );
    let mut r = m.report(None);
    r["plugins"]["disk"]["data"]["lists"]["disks"]["parts"][1] = json!({"size_bytes": 5});
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "plugins.disk.data.lists.disks.parts[1].id: missing",
    );
    let mut r = m.report(None);
    r["extra"] = json!(1);
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "unknown field `extra`",
    );
    let errors = s.errors();
    assert_eq!(
        errors
            .iter()
            .filter(|e| e["code"] == "malformed_report")
            .count(),
        5
    );
    assert!(errors.iter().any(|e| e["hostname"] == "web-1"));
    assert_eq!(s.get("/api/v1/hosts").body, json!([]));
}

fn deep_json_and_long_strings_are_refused(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    let mut r = m.report(None);
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    r["plugins"]["disk"]["data"]["x"] = deep;
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "nesting is 4",
    );
    let mut r = m.report(None);
    r["plugins"]["cpu"]["data"]["facts"]["model"] = json!("x".repeat(9000));
    refused(
        &s,
        r.to_string().as_bytes(),
        400,
        "malformed_report",
        "$.plugins.cpu.data.facts.model is longer than 8192 bytes",
    );
}

fn an_oversized_body_is_413(b: Backend) {
    let s = Server::start(b);
    let mut r = Machine::new("web-1").report(None);
    // 4 MB: more than socket buffers hold, so the client is still sending when the server
    // refuses; it must still read the 413 (the server drains the refused body), not a reset
    let filler: Vec<String> = (0..1000).map(|_| "y".repeat(4000)).collect();
    r["plugins"]["disk"]["data"]["filler"] = json!(filler);
    refused(
        &s,
        r.to_string().as_bytes(),
        413,
        "too_large",
        "larger than the limit of 1048576 bytes",
    );
    // Refused before its signature could be checked: nothing is written, not even an error row.
    assert_eq!(s.errors(), Vec::<serde_json::Value>::new());
}

crate::both!(
    malformed_reports_say_what_is_wrong,
    deep_json_and_long_strings_are_refused,
    an_oversized_body_is_413,
);
