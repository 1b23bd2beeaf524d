//! Request signing: every refusal is the same 401 problem (why is in the server log).

use crate::support::{now, random_hex, Backend, Machine, Server};

const PATH: &str = "/api/v1/reports";

fn body() -> Vec<u8> {
    Machine::new("web-1").report(None).to_string().into_bytes()
}

fn assert_refused(a: &crate::support::Answer, reason: &str) {
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    // Every refusal is the same to the client (the reason is in the server log only).
    assert_eq!(a.body["code"], "unauthorized");
    let detail = a.body["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("the request is not authenticated"),
        "{detail:?} (for {reason:?})"
    );
}

fn a_signed_request_passes(b: Backend) {
    let s = Server::start(b);
    let body = body();
    let h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    assert_eq!(s.raw("POST", PATH, &body, &h).status, 201);
}

fn unsigned_and_unknown_keys_are_refused(b: Backend) {
    let s = Server::start(b);
    assert_refused(&s.raw("GET", "/api/v1/hosts", b"", &[]), "not signed");
    let body = body();
    let mut h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    h[0].1 = "nobody".into();
    assert_refused(
        &s.raw("POST", PATH, &body, &h),
        "no active key named \"nobody\"",
    );
    // Liveness and the API description need no signature.
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
    assert_eq!(s.raw("GET", "/api/v1/openapi.json", b"", &[]).status, 200);
}

fn a_wrong_secret_is_refused(b: Backend) {
    let mut s = Server::start(b);
    s.secret = random_hex(32);
    let body = body();
    let h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    assert_refused(&s.raw("POST", PATH, &body, &h), "signature does not match");
}

fn old_and_future_timestamps_are_refused(b: Backend) {
    let s = Server::start(b);
    let body = body();
    let h = s.signed_headers("POST", PATH, &body, now() - 301 - 5, &random_hex(16));
    assert_refused(&s.raw("POST", PATH, &body, &h), "s old");
    let h = s.signed_headers("POST", PATH, &body, now() + 301 + 5, &random_hex(16));
    assert_refused(&s.raw("POST", PATH, &body, &h), "in the future");
    // Inside the window, either way, is fine.
    let h = s.signed_headers("POST", PATH, &body, now() + 200, &random_hex(16));
    assert_eq!(s.raw("POST", PATH, &body, &h).status, 201);
}

fn a_replayed_nonce_is_refused_even_after_a_restart(b: Backend) {
    let mut s = Server::start(b);
    let body = body();
    let h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    assert_eq!(s.raw("POST", PATH, &body, &h).status, 201);
    assert_refused(&s.raw("POST", PATH, &body, &h), "nonce was used before");
    s.restart();
    assert_refused(&s.raw("POST", PATH, &body, &h), "nonce was used before");
    // Reads, and reports refused as malformed, record their nonce too.
    let h = s.signed_headers("GET", "/api/v1/hosts", b"", now(), &random_hex(16));
    assert_eq!(s.raw("GET", "/api/v1/hosts", b"", &h).status, 200);
    assert_refused(
        &s.raw("GET", "/api/v1/hosts", b"", &h),
        "nonce was used before",
    );
    let h = s.signed_headers("POST", PATH, b"{}", now(), &random_hex(16));
    assert_eq!(s.raw("POST", PATH, b"{}", &h).status, 400);
    assert_refused(&s.raw("POST", PATH, b"{}", &h), "nonce was used before");
    // A retried report (same report_id, new nonce) gets the first answer.
    let h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    assert_eq!(s.raw("POST", PATH, &body, &h).status, 201);
}

fn an_altered_body_or_path_is_refused(b: Backend) {
    let s = Server::start(b);
    let body = body();
    let h = s.signed_headers("POST", PATH, &body, now(), &random_hex(16));
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    assert_refused(
        &s.raw("POST", PATH, &altered, &h),
        "signature does not match",
    );
    let h = s.signed_headers("GET", "/api/v1/hosts", b"", now(), &random_hex(16));
    assert_refused(
        &s.raw("GET", "/api/v1/errors", b"", &h),
        "signature does not match",
    );
}

fn a_revoked_key_is_refused(b: Backend) {
    let s = Server::start(b);
    assert_eq!(s.get("/api/v1/hosts").status, 200);
    let out = s.admin(&["keys", "revoke", "it"]);
    assert!(out.status.success());
    assert_refused(&s.get("/api/v1/hosts"), "no active key");
    let list = s.admin(&["keys", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.starts_with("it\t") && text.contains("revoked"),
        "{text}"
    );
    assert!(!text.contains(&s.secret));
}

/// The server keeps the keys that verified reports in memory; a key revoked by another process
/// (`auto-server keys revoke`) must still be refused from the very next report, and nothing of
/// that report, or of a malformed one, written.
fn a_key_revoked_between_reports_is_refused_at_once(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    assert!(s.admin(&["keys", "revoke", "it"]).status.success());
    let count = |table: &str| s.sql_number(&format!("SELECT COUNT(*) FROM {table}"));
    let before: Vec<i64> = ["hosts", "reports", "nonces", "errors", "changes"]
        .iter()
        .map(|t| count(t))
        .collect();
    let mut changed = m.clone();
    changed
        .fact_mut("os", "kernel")
        .clone_from(&serde_json::json!("6.9.9"));
    assert_refused(
        &s.report(&changed.report(Some("web-1"))),
        "the key is no longer active",
    );
    assert_refused(
        &s.report(&Machine::new("web-2").report(None)),
        "the key is no longer active",
    );
    let h = s.signed_headers("POST", PATH, b"{}", now(), &random_hex(16));
    assert_refused(&s.raw("POST", PATH, b"{}", &h), "malformed, key revoked");
    let after: Vec<i64> = ["hosts", "reports", "nonces", "errors", "changes"]
        .iter()
        .map(|t| count(t))
        .collect();
    assert_eq!(before, after, "hosts, reports, nonces, errors, changes");
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    assert!(log.contains("the key is no longer active"), "{log}");
}

fn without_auth_unsigned_requests_pass(b: Backend) {
    let s = Server::start_with(b, &["--no-auth"]);
    assert_eq!(s.raw("POST", PATH, &body(), &[]).status, 201);
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    assert!(log.contains("AUTHENTICATION IS OFF"), "{log}");
}

crate::both!(
    a_signed_request_passes,
    unsigned_and_unknown_keys_are_refused,
    a_wrong_secret_is_refused,
    old_and_future_timestamps_are_refused,
    a_replayed_nonce_is_refused_even_after_a_restart,
    an_altered_body_or_path_is_refused,
    a_revoked_key_is_refused,
    a_key_revoked_between_reports_is_refused_at_once,
    without_auth_unsigned_requests_pass,
);
