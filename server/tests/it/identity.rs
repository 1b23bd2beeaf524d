//! Host identity, the rule of `docs/contracts.md` (issue 3).

use serde_json::json;

use crate::support::{Backend, Machine, Server};

fn new_host_is_created(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    let a = s.report(&m.report(None));
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "created");
    assert_eq!(a.body["hostname"], "web-1");
    let host = s.get("/api/v1/hosts/web-1");
    assert_eq!(host.status, 200);
    let p = &host.body["plugins"];
    // Every list and fact of every collector, stored as the collectors sent them.
    for (plugin, list) in [
        ("disk", "disks"),
        ("nic", "interfaces"),
        ("memory", "modules"),
    ] {
        let stored = p[plugin]["lists"][list]["parts"].as_array().map(Vec::len);
        assert_eq!(stored, Some(m.parts(plugin, list).len()), "{plugin}.{list}");
        assert!(
            stored > Some(0),
            "{plugin}.{list} is empty in the recorded output"
        );
    }
    assert_eq!(
        p["memory"]["facts"]["total_bytes"],
        *m.fact("memory", "total_bytes")
    );
    assert_eq!(
        p["cpu"]["facts"]["thread_count"],
        *m.fact("cpu", "thread_count")
    );
    assert_eq!(p["os"]["facts"]["kernel"], *m.fact("os", "kernel"));
    assert!(p["os"]["volatile"]["uptime_seconds"].is_i64());
    assert_eq!(p["board"]["facts"]["serial"], m.serial);
    assert_eq!(host.body["serial"], m.serial);
    assert_eq!(host.body["system_uuid"], m.uuid);
    assert_eq!(host.body["machine_id"], m.machine_id);
    // A part comes back with its id and attributes.
    let first = &m.parts("disk", "disks")[0];
    assert!(p["disk"]["lists"]["disks"]["parts"]
        .as_array()
        .is_some_and(|parts| parts.contains(first)));
    let list = s.get("/api/v1/hosts");
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
}

fn same_name_is_an_update(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "updated");
    assert_eq!(a.body["warnings"], json!([]));
}

fn new_host_with_a_taken_name_is_refused(b: Backend) {
    let s = Server::start(b);
    let first = Machine::new("web-1");
    assert_eq!(s.report(&first.report(None)).status, 201);
    let mut second = Machine::new("web-1");
    second
        .parts_mut("disk", "disks")
        .push(json!({"id": "OTHER", "name": "sdz", "size_bytes": 1}));
    let a = s.report(&second.report(None));
    assert_eq!(a.status, 409, "{:?}", a.body);
    assert_eq!(a.body["code"], "hostname_taken");
    assert_eq!(a.content_type, "application/problem+json");
    // Nothing of the second machine reached the assets.
    let host = s.get("/api/v1/hosts/web-1");
    assert_eq!(host.body["machine_id"], first.machine_id);
    assert_eq!(
        host.body["plugins"]["disk"]["lists"]["disks"]["parts"]
            .as_array()
            .map(Vec::len),
        Some(first.parts("disk", "disks").len())
    );
    assert!(s.errors().iter().any(|e| e["code"] == "hostname_taken"));
}

fn rename_to_a_free_name(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    m.hostname = "web-2".into();
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "renamed");
    assert_eq!(a.body["hostname"], "web-2");
    assert_eq!(s.get("/api/v1/hosts/web-1").status, 404);
    let host = s.get("/api/v1/hosts/web-2");
    assert_eq!(host.status, 200);
    assert_eq!(host.body["machine_id"], m.machine_id);
    // The history moved with the host.
    assert!(!s.changes_of("web-2").is_empty());
}

fn rename_to_a_taken_name_keeps_the_old_name(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    let other = Machine::new("web-2");
    assert_eq!(s.report(&m.report(None)).status, 201);
    assert_eq!(s.report(&other.report(None)).status, 201);
    m.hostname = "web-2".into();
    *m.fact_mut("os", "kernel") = json!("6.12.0");
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "updated");
    assert_eq!(a.body["hostname"], "web-1");
    assert_eq!(a.body["warnings"][0]["code"], "hostname_taken");
    // The data went to the old host; the other host is untouched.
    assert_eq!(
        s.get("/api/v1/hosts/web-1").body["plugins"]["os"]["facts"]["kernel"],
        "6.12.0"
    );
    assert_eq!(
        s.get("/api/v1/hosts/web-2").body["machine_id"],
        other.machine_id
    );
    assert!(s
        .errors()
        .iter()
        .any(|e| e["code"] == "hostname_taken" && e["hostname"] == "web-1"));
}

fn unknown_previous_name_is_a_new_host(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-9");
    let a = s.report(&m.report(Some("gone-1")));
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "created");
}

fn shared_identities_are_flagged_not_merged(b: Backend) {
    let s = Server::start(b);
    let a = Machine::new("web-1");
    let mut c = Machine::new("web-2");
    c.serial = a.serial.clone();
    c.machine_id = a.machine_id.clone();
    assert_eq!(s.report(&a.report(None)).status, 201);
    assert_eq!(s.report(&c.report(None)).status, 201);
    assert_eq!(
        s.get("/api/v1/hosts").body.as_array().map(Vec::len),
        Some(2)
    );
    let flags: Vec<_> = s
        .errors()
        .into_iter()
        .filter(|e| e["code"] == "identity_shared")
        .collect();
    assert_eq!(flags.len(), 2, "{flags:?}");
    assert!(flags.iter().all(|e| e["hostname"] == "web-2"));
    assert!(flags
        .iter()
        .any(|e| e["message"].as_str().is_some_and(|m| m.contains("serial"))));
    // A placeholder serial is no evidence: no flag.
    let mut d = Machine::new("web-3");
    d.serial = "To Be Filled By O.E.M.".into();
    let mut e = Machine::new("web-4");
    e.serial = d.serial.clone();
    s.report(&d.report(None));
    s.report(&e.report(None));
    assert_eq!(
        s.errors()
            .iter()
            .filter(|e| e["code"] == "identity_shared")
            .count(),
        2
    );
}

fn the_same_report_is_applied_once(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    *m.fact_mut("os", "kernel") = json!("6.12.0");
    let report = m.report(Some("web-1"));
    let first = s.report(&report);
    let changes = s.changes_of("web-1").len();
    let second = s.report(&report);
    assert_eq!(first.status, 200);
    assert_eq!(second.status, first.status);
    assert_eq!(second.body, first.body);
    assert_eq!(s.changes_of("web-1").len(), changes);
    // A refused report is answered the same way twice too.
    let taken = Machine::new("web-1").report(None);
    assert_eq!(s.report(&taken).status, 409);
    assert_eq!(s.report(&taken).status, 409);
}

/// The name-conflict branch of a rename from a name the server does not know: the new name
/// belongs to a host that has reported, so this is another machine: refused, nothing stored.
fn unknown_previous_name_and_a_taken_name_is_refused(b: Backend) {
    let s = Server::start(b);
    let first = Machine::new("web-1");
    assert_eq!(s.report(&first.report(None)).status, 201);
    let mut other = Machine::new("web-1");
    *other.fact_mut("os", "kernel") = json!("9.9.9-other");
    let a = s.report(&other.report(Some("gone-1")));
    assert_eq!(a.status, 409, "{:?}", a.body);
    assert_eq!(a.body["code"], "hostname_taken");
    let host = s.get("/api/v1/hosts/web-1").body;
    assert_eq!(host["machine_id"], first.machine_id);
    assert_eq!(
        host["plugins"]["os"]["facts"]["kernel"],
        *first.fact("os", "kernel")
    );
}

/// Host names are DNS names: `WEB-1` is `web-1`, kept in the spelling reported last.
fn host_names_match_case_insensitively(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    m.hostname = "WEB-1".into();
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(
        (a.status, a.body["outcome"].as_str()),
        (200, Some("updated")),
        "{:?}",
        a.body
    );
    assert_eq!(a.body["hostname"], "WEB-1");
    let list = s.get("/api/v1/hosts").body;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(s.get("/api/v1/hosts/web-1").body["hostname"], "WEB-1");
    // another machine cannot take the name in another spelling
    let other = Machine::new("Web-1");
    assert_eq!(s.report(&other.report(None)).status, 409);
    // and registering it for ssh updates the one host
    let r = s.post(
        "/api/v1/hosts",
        &json!({"hostname": "wEb-1", "address": "10.0.0.1"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        s.get("/api/v1/hosts").body.as_array().map(Vec::len),
        Some(1)
    );
}

crate::both!(
    unknown_previous_name_and_a_taken_name_is_refused,
    host_names_match_case_insensitively,
    new_host_is_created,
    same_name_is_an_update,
    new_host_with_a_taken_name_is_refused,
    rename_to_a_free_name,
    rename_to_a_taken_name_keeps_the_old_name,
    unknown_previous_name_is_a_new_host,
    shared_identities_are_flagged_not_merged,
    the_same_report_is_applied_once,
);
