//! The change log: one row per changed object, old and new values, nothing for no change.

use serde_json::{json, Value};

use crate::support::{dimm, disk, Backend, Machine, Server};

/// The rows a report added to a host's log, as (component, item, action).
fn new_rows(s: &Server, host: &str, before: usize) -> Vec<Value> {
    s.changes_of(host).split_off(before)
}

fn summary(rows: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["component"].as_str().unwrap_or("").to_owned(),
                r["item"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn t(c: &str, i: &str, a: &str) -> (String, String, String) {
    (c.into(), i.into(), a.into())
}

fn a_first_report_logs_everything_as_added(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    s.report(&m.report(None));
    let rows = s.changes_of("web-1");
    assert!(rows
        .iter()
        .all(|r| r["action"] == "added" && r["old"].is_null()));
    assert!(summary(&rows).contains(&t("disk", "sda#SSD1", "added")));
}

fn no_change_writes_nothing(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let all = s
        .get("/api/v1/changes?limit=1000")
        .body
        .as_array()
        .map(Vec::len);
    // Uptime differs between the reports; it is kept but not logged.
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    assert_eq!(s.changes_of("web-1").len(), before);
    assert_eq!(
        s.get("/api/v1/changes?limit=1000")
            .body
            .as_array()
            .map(Vec::len),
        all
    );
}

fn disks_added_removed_and_resized(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    m.disks = vec![
        disk("sda", 960_197_124_096, "SSD1"), // resized
        disk("sdc", 1_000_000, "NEW1"),       // added
    ]; // sdb removed
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(
        summary(&rows),
        vec![
            t("disk", "sda#SSD1", "changed"),
            t("disk", "sdb#HDD1", "removed"),
            t("disk", "sdc#NEW1", "added"),
        ]
    );
    let resized = rows
        .iter()
        .find(|r| r["action"] == "changed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(resized["old"]["size_bytes"], 480_103_981_056u64);
    assert_eq!(resized["new"]["size_bytes"], 960_197_124_096u64);
    let removed = rows
        .iter()
        .find(|r| r["action"] == "removed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(removed["new"], Value::Null);
    assert_eq!(removed["old"]["serial"], "HDD1");
    let names: Vec<_> = s.get("/api/v1/hosts/web-1").body["disks"]
        .as_array()
        .map(|d| d.iter().map(|x| x["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("sda"), json!("sdc")]);
}

fn a_nic_address_change_is_one_row(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    m.nics[0]["addresses"] = json!([{"address": "10.1.0.99", "prefix_len": 24}]);
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(summary(&rows), vec![t("nic", "eth0", "changed")]);
    assert_eq!(rows[0]["old"]["addresses"][0]["address"], "10.1.0.5");
    assert_eq!(rows[0]["new"]["addresses"][0]["address"], "10.1.0.99");
}

fn a_replaced_dimm_is_a_change_of_its_slot(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    m.modules[1] = dimm("DIMM_B1", "M9");
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(
        summary(&rows),
        vec![t("memory_module", "DIMM_B1", "changed")]
    );
    assert_eq!(rows[0]["old"]["serial"], "M2");
    assert_eq!(rows[0]["new"]["serial"], "M9");
}

fn a_host_field_change_is_logged_by_name(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    m.kernel = "6.12.0".into();
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(summary(&rows), vec![t("os", "kernel", "changed")]);
    assert_eq!(rows[0]["old"], "6.1.0-26-amd64");
    assert_eq!(rows[0]["new"], "6.12.0");
}

fn a_failed_collector_leaves_its_component(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let mut r = m.report(Some("web-1"));
    r["plugins"]["disk"] = json!({"status": "error", "duration_ms": 10000,
        "error": {"kind": "timeout", "message": "lsblk did not finish in 10s"}});
    assert_eq!(s.report(&r).status, 200);
    assert_eq!(s.changes_of("web-1").len(), before);
    assert_eq!(
        s.get("/api/v1/hosts/web-1").body["disks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let e = s.errors();
    assert!(e.iter().any(|e| e["code"] == "plugin_failed"
        && e["plugin"] == "disk"
        && e["message"]
            .as_str()
            .is_some_and(|m| m.contains("lsblk did not finish"))));
}

fn memory_modules_unknown_are_not_removed(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let mut r = m.report(Some("web-1"));
    r["plugins"]["memory"]["data"] = json!({"total_bytes": 68_719_476_736u64, "modules": [],
        "reason": "dmidecode needs root"});
    s.report(&r);
    assert_eq!(s.changes_of("web-1").len(), before);
}

crate::both!(
    a_first_report_logs_everything_as_added,
    no_change_writes_nothing,
    disks_added_removed_and_resized,
    a_nic_address_change_is_one_row,
    a_replaced_dimm_is_a_change_of_its_slot,
    a_host_field_change_is_logged_by_name,
    a_failed_collector_leaves_its_component,
    memory_modules_unknown_are_not_removed,
);
