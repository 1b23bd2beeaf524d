//! Host identity, the rule of `shared/design.md` (issue 3).

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
    assert_eq!(host.body["disks"].as_array().map(Vec::len), Some(2));
    assert_eq!(host.body["nics"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        host.body["memory"]["modules"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(host.body["memory"]["total_bytes"], 68_719_476_736u64);
    assert_eq!(host.body["cpu"]["threads"], 40);
    assert_eq!(host.body["os"]["kernel"], m.kernel);
    assert_eq!(host.body["board"]["serial"], m.serial);
    assert_eq!(host.body["machine_id"], m.machine_id);
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
    second.disks.push(crate::support::disk("sdz", 1, "OTHER"));
    let a = s.report(&second.report(None));
    assert_eq!(a.status, 409, "{:?}", a.body);
    assert_eq!(a.body["code"], "hostname_taken");
    assert_eq!(a.content_type, "application/problem+json");
    // Nothing of the second machine reached the assets.
    let host = s.get("/api/v1/hosts/web-1");
    assert_eq!(host.body["machine_id"], first.machine_id);
    assert_eq!(host.body["disks"].as_array().map(Vec::len), Some(2));
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
    m.kernel = "6.12.0".into();
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "updated");
    assert_eq!(a.body["hostname"], "web-1");
    assert_eq!(a.body["warnings"][0]["code"], "hostname_taken");
    // The data went to the old host; the other host is untouched.
    assert_eq!(s.get("/api/v1/hosts/web-1").body["os"]["kernel"], "6.12.0");
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
    m.kernel = "6.12.0".into();
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

crate::both!(
    new_host_is_created,
    same_name_is_an_update,
    new_host_with_a_taken_name_is_refused,
    rename_to_a_free_name,
    rename_to_a_taken_name_keeps_the_old_name,
    unknown_previous_name_is_a_new_host,
    shared_identities_are_flagged_not_merged,
    the_same_report_is_applied_once,
);
