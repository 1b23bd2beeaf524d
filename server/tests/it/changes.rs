//! The change log: one row per changed object, old and new values, nothing for no change.

use serde_json::{json, Value};

use crate::support::{golden, Backend, Machine, Server};

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
    let first_disk = m.parts("disk", "disks")[0]["id"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    assert!(summary(&rows).contains(&t("disk.disks", &first_disk, "added")));
    assert!(summary(&rows).contains(&t("os", "kernel", "added")));
    // one row per fact and per part of every collector: nothing else, nothing twice
    let expected: usize = m
        .data
        .values()
        .map(|d| {
            d["facts"]
                .as_object()
                .map_or(0, |f| f.values().filter(|v| !v.is_null()).count())
                + d["lists"].as_object().map_or(0, |l| {
                    l.values()
                        .map(|x| x["parts"].as_array().map_or(0, Vec::len))
                        .sum()
                })
        })
        .sum();
    assert_eq!(rows.len(), expected);
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
    let disks = m.parts_mut("disk", "disks");
    assert!(
        disks.len() >= 2,
        "the recorded machine has two disks or more"
    );
    let old_size = disks[0]["size_bytes"].clone();
    disks[0]["size_bytes"] = json!(960_197_124_096u64); // resized
    let gone = disks.remove(1); // removed
    disks.push(json!({"id": "NEW1", "name": "sdz", "serial": "NEW1", "size_bytes": 1_000_000})); // added
    let resized_id = disks[0]["id"].as_str().unwrap_or("?").to_owned();
    let gone_id = gone["id"].as_str().unwrap_or("?").to_owned();
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    let rows = new_rows(&s, "web-1", before);
    let mut want = vec![
        t("disk.disks", &resized_id, "changed"),
        t("disk.disks", &gone_id, "removed"),
        t("disk.disks", "NEW1", "added"),
    ];
    want.sort();
    assert_eq!(summary(&rows), want);
    let resized = rows
        .iter()
        .find(|r| r["action"] == "changed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(resized["old"]["size_bytes"], old_size);
    assert_eq!(resized["new"]["size_bytes"], 960_197_124_096u64);
    let removed = rows
        .iter()
        .find(|r| r["action"] == "removed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(removed["new"], Value::Null);
    assert_eq!(removed["old"]["name"], gone["name"]);
    let ids: Vec<Value> = s.get("/api/v1/hosts/web-1").body["plugins"]["disk"]["lists"]["disks"]
        ["parts"]
        .as_array()
        .map(|d| d.iter().map(|x| x["id"].clone()).collect())
        .unwrap_or_default();
    let mut want: Vec<Value> = m
        .parts("disk", "disks")
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    want.sort_by_key(|v| v.to_string());
    assert_eq!(ids, want);
}

fn a_nic_address_change_is_one_row(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let nic = &mut m.parts_mut("nic", "interfaces")[0];
    let id = nic["id"].as_str().unwrap_or("?").to_owned();
    let old = nic["addresses"].clone();
    nic["addresses"] = json!([{"address": "10.1.0.99", "prefix_len": 24}]);
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(summary(&rows), vec![t("nic.interfaces", &id, "changed")]);
    assert_eq!(rows[0]["old"]["addresses"], old);
    assert_eq!(rows[0]["new"]["addresses"][0]["address"], "10.1.0.99");
}

fn a_replaced_dimm_is_a_change_of_its_slot(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let dimm = &mut m.parts_mut("memory", "modules")[1];
    let id = dimm["id"].as_str().unwrap_or("?").to_owned();
    let old_serial = dimm["serial"].clone();
    dimm["serial"] = json!("M9");
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(summary(&rows), vec![t("memory.modules", &id, "changed")]);
    assert_eq!(rows[0]["old"]["serial"], old_serial);
    assert_eq!(rows[0]["new"]["serial"], "M9");
}

fn a_host_field_change_is_logged_by_name(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let before = s.changes_of("web-1").len();
    let old = m.fact("os", "kernel").clone();
    *m.fact_mut("os", "kernel") = json!("6.12.0");
    s.report(&m.report(Some("web-1")));
    let rows = new_rows(&s, "web-1", before);
    assert_eq!(summary(&rows), vec![t("os", "kernel", "changed")]);
    assert_eq!(rows[0]["old"], old);
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
        s.get("/api/v1/hosts/web-1").body["plugins"]["disk"]["lists"]["disks"]["parts"]
            .as_array()
            .map(Vec::len),
        Some(m.parts("disk", "disks").len())
    );
    let e = s.errors();
    assert!(e.iter().any(|e| e["code"] == "plugin_failed"
        && e["plugin"] == "disk"
        && e["message"]
            .as_str()
            .is_some_and(|m| m.contains("lsblk did not finish"))));
}

/// The DIMM case, on the memory collector's real output: modules seen, then `dmidecode` gone (the
/// recorded non-root run says `unavailable`): no row, the modules kept and marked since when; seen
/// again: still no row, the mark gone.
fn memory_modules_unknown_are_not_removed(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    s.report(&m.report(None));
    let modules = m.parts("memory", "modules").len();
    let before = s.changes_of("web-1").len();
    let seen = m.data["memory"].clone();
    let mut unseen = golden("memory", "non-root");
    assert!(
        unseen["lists"]["modules"]["unavailable"].is_string(),
        "{unseen}"
    );
    unseen["facts"] = seen["facts"].clone(); // the same machine: only the DIMMs are unseen
    m.data.insert("memory".into(), unseen);
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    assert_eq!(
        s.changes_of("web-1").len(),
        before,
        "{:?}",
        s.changes_of("web-1")
    );
    let list = s.get("/api/v1/hosts/web-1").body["plugins"]["memory"]["lists"]["modules"].clone();
    assert_eq!(
        list["parts"].as_array().map(Vec::len),
        Some(modules),
        "{list}"
    );
    assert!(
        list["unavailable"]
            .as_str()
            .is_some_and(|r| r.contains("root")),
        "{list}"
    );
    assert!(
        list["unavailable_since"].is_string() && list["last_seen_at"].is_string(),
        "{list}"
    );
    m.data.insert("memory".into(), seen);
    assert_eq!(s.report(&m.report(Some("web-1"))).status, 200);
    assert_eq!(s.changes_of("web-1").len(), before);
    let list = s.get("/api/v1/hosts/web-1").body["plugins"]["memory"]["lists"]["modules"].clone();
    assert!(
        list["unavailable"].is_null() && list["unavailable_since"].is_null(),
        "{list}"
    );
}

/// A collector the server was never told about: its part list is stored and change-logged part
/// by part, like the shipped ones.
fn a_new_collectors_parts_are_logged_one_row_each(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    let gpus = |parts: Value| json!({"facts": {"driver": "550.54"}, "lists": {"gpus": {"key": ["serial"], "parts": parts}}});
    m.data.insert(
        "gpu".into(),
        gpus(json!([
            {"id": "G1", "model": "A100", "memory_bytes": 85_899_345_920u64},
            {"id": "G2", "model": "A100", "memory_bytes": 85_899_345_920u64}
        ])),
    );
    s.report(&m.report(None));
    let parts = &s.get("/api/v1/hosts/web-1").body["plugins"]["gpu"]["lists"]["gpus"]["parts"];
    assert_eq!(
        parts[0],
        json!({"id": "G1", "model": "A100", "memory_bytes": 85_899_345_920u64})
    );
    let before = s.changes_of("web-1").len();
    m.data.insert(
        "gpu".into(),
        gpus(json!([
            {"id": "G1", "model": "A100", "memory_bytes": 42_949_672_960u64},
            {"id": "G3", "model": "H100", "memory_bytes": 85_899_345_920u64}
        ])),
    );
    s.report(&m.report(Some("web-1")));
    assert_eq!(
        summary(&new_rows(&s, "web-1", before)),
        vec![
            t("gpu.gpus", "G1", "changed"),
            t("gpu.gpus", "G2", "removed"),
            t("gpu.gpus", "G3", "added")
        ]
    );
}

/// Nonsense in any collector's data is refused with a 400 that names the field.
fn nonsense_values_are_refused_naming_the_field(b: Backend) {
    let s = Server::start(b);
    let m = Machine::new("web-1");
    let cases = [
        (
            "cpu",
            "core_count",
            json!("four"),
            "plugins.cpu.data.facts.core_count",
        ),
        (
            "cpu",
            "socket_count",
            json!(true),
            "plugins.cpu.data.facts.socket_count",
        ),
        (
            "memory",
            "total_bytes",
            json!(-1),
            "plugins.memory.data.facts.total_bytes",
        ),
        (
            "memory",
            "total_bytes",
            json!(18_446_744_073_709_551_615u64),
            "plugins.memory.data.facts.total_bytes",
        ),
        (
            "memory",
            "total_bytes",
            json!("NaN"),
            "plugins.memory.data.facts.total_bytes",
        ),
    ];
    for (plugin, fact, value, path) in cases {
        let mut r = m.report(None);
        r["plugins"][plugin]["data"]["facts"][fact] = value.clone();
        let a = s.report(&r);
        assert_eq!(a.status, 400, "{plugin}.{fact} = {value}: {:?}", a.body);
        assert_eq!(a.body["code"], "malformed_report");
        assert!(
            a.body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(path)),
            "{:?}",
            a.body
        );
    }
    let mut r = m.report(None);
    r["plugins"]["nic"]["data"]["lists"]["interfaces"]["parts"][0]["speed_mbps"] = json!(-100);
    let a = s.report(&r);
    assert!(a.body["detail"].as_str().is_some_and(|d| d.starts_with("plugins.nic.data.lists.interfaces.parts[0].speed_mbps")), "{:?}", a.body);
    assert_eq!(s.get("/api/v1/hosts").body, json!([]), "nothing was stored");
}

/// N parts of one id cost one pass, and the cap is a clear 400.
fn a_huge_part_list_is_refused_quickly(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    let dup: Vec<Value> = (0..20_000)
        .map(|_| json!({"id": "sda", "name": "sda"}))
        .collect();
    *m.parts_mut("disk", "disks") = dup;
    let a = s.report(&m.report(None));
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than the limit of 10000")),
        "{:?}",
        a.body
    );
    let dup: Vec<Value> = (0..10_000)
        .map(|_| json!({"id": "sda", "name": "sda"}))
        .collect();
    *m.parts_mut("disk", "disks") = dup;
    let a = s.report(&m.report(None));
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("is also the id of parts[0]")),
        "{:?}",
        a.body
    );
    assert_eq!(s.get("/healthz").status, 200);
}

/// A long list the server holds as it is may come by its digest: kept, no row; a digest the
/// server does not hold leaves the list as it was and asks for it in full (`resend`).
fn an_unchanged_list_is_kept_by_its_digest(b: Backend) {
    let s = Server::start(b);
    let mut m = Machine::new("web-1");
    assert_eq!(s.report(&m.report(None)).status, 201);
    let before = s.changes_of("web-1").len();
    let whole = m.data["disk"]["lists"]["disks"].clone();
    let digest = auto_proto::data::list_digest(&whole);
    m.data.get_mut("disk").expect("disk")["lists"]["disks"] = json!({"unchanged": digest});
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(a.body.get("resend").is_none(), "{:?}", a.body);
    assert_eq!(s.changes_of("web-1").len(), before);
    let stored = s.get("/api/v1/hosts/web-1").body["plugins"]["disk"]["lists"]["disks"].clone();
    assert_eq!(
        stored["parts"].as_array().map(Vec::len),
        whole["parts"].as_array().map(Vec::len)
    );
    // a digest the server does not hold: the list is left as it was, and asked for in full
    let other = auto_proto::data::list_digest(&json!({"key": ["x"], "parts": []}));
    m.data.get_mut("disk").expect("disk")["lists"]["disks"] = json!({"unchanged": other});
    let a = s.report(&m.report(Some("web-1")));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["resend"], json!(["disk.disks"]));
    assert_eq!(s.changes_of("web-1").len(), before);
    let again = s.get("/api/v1/hosts/web-1").body["plugins"]["disk"]["lists"]["disks"].clone();
    assert_eq!(again["parts"], stored["parts"]);
}

/// A gzip body is inflated (the signature covers the bytes as sent); a "zip bomb" is a 413; an
/// encoding the server does not take is a 415.
fn gzip_bodies_are_taken_within_the_limit(b: Backend) {
    use std::io::Write;
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    let s = Server::start(b);
    let send = |body: &[u8], encoding: &str| {
        let mut headers = s.signed_headers(
            "POST",
            "/api/v1/reports",
            body,
            crate::support::now(),
            &crate::support::random_hex(16),
        );
        headers.push(("content-encoding", encoding.to_owned()));
        s.raw("POST", "/api/v1/reports", body, &headers)
    };
    let report = Machine::new("web-1").report(None).to_string();
    let a = send(&gz(report.as_bytes()), "gzip");
    assert_eq!(a.status, 201, "{:?}", a.body);
    // 40 MB of spaces: 40 KB on the wire, more than 16 x the 1 MiB body limit inflated
    let bomb = gz(&vec![b' '; 40 << 20]);
    assert!(bomb.len() < 1 << 20);
    let a = send(&bomb, "gzip");
    assert_eq!(a.status, 413, "{:?}", a.body);
    let a = send(report.as_bytes(), "br");
    assert_eq!(a.status, 415, "{:?}", a.body);
    assert_eq!(
        s.get("/api/v1/hosts").body.as_array().map(Vec::len),
        Some(1)
    );
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
    a_new_collectors_parts_are_logged_one_row_each,
    nonsense_values_are_refused_naming_the_field,
    a_huge_part_list_is_refused_quickly,
    an_unchanged_list_is_kept_by_its_digest,
    gzip_bodies_are_taken_within_the_limit,
);
