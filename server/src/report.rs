//! Checks an incoming report: the top level (`auto_proto::Report`) and every collector's data
//! against the contract's own validation (`auto_proto::data::validate`, report schema 2). There is
//! no code here for any particular collector.
//!
//! Everything here is pure: bytes in, a [`Checked`] report or a [`Malformed`] reason out. The
//! reason is meant for a human: it names the field (`plugins.disk.data.disks[2].name`) and says
//! what is wrong with it.

use auto_proto::data::{validate, CollectorData, DataLimits};
use auto_proto::{PluginReport, Report, SCHEMA};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;

/// The earliest `collected_at` accepted: 2000-01-01T00:00:00Z.
pub const EARLIEST_COLLECTED_AT: i64 = 946_684_800;

/// Bounds on what a report may contain, past the body size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Longest string or object key, in bytes.
    pub max_string_bytes: usize,
}

/// Why a report was refused, with what could be read of it for the error log.
#[derive(Debug)]
pub struct Malformed {
    pub detail: String,
    pub hostname: Option<String>,
    pub report_id: Option<String>,
}

/// A report that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    /// Every `ok` collector's data, checked against the contract (`auto_proto::data`).
    pub plugins: Vec<(String, CollectorData)>,
    /// `(plugin, kind, message)` of every collector whose status is `error`.
    pub failures: Vec<(String, String, String)>,
    pub identity: Identity,
}

/// The identity hints of the report's collectors (contract fields, see
/// `auto_proto::data::IDENTITY_FIELDS`), for the fields some collector declared (`Some`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Identity {
    pub machine_id: Option<Option<String>>,
    pub serial: Option<Option<String>>,
    pub system_uuid: Option<Option<String>>,
}

fn malformed(detail: impl Into<String>, raw: Option<&Value>) -> Malformed {
    let field = |name: &str| {
        raw.and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(253)
                    .collect::<String>()
            })
    };
    Malformed {
        detail: detail.into(),
        hostname: field("hostname"),
        report_id: field("report_id"),
    }
}

/// Nesting depth of a JSON text, counted without parsing it (so a hostile body cannot make the
/// parser recurse). Brackets inside strings are skipped.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The path of the first string or key longer than `limit`, if any.
fn long_string(v: &Value, limit: usize, path: &mut String) -> Option<String> {
    match v {
        Value::String(s) if s.len() > limit => Some(format!("{path} is longer than {limit} bytes")),
        Value::String(s) if s.contains('\0') => Some(format!("{path} contains a nul character")),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            let _ = write!(path, "[{i}]");
            let found = long_string(x, limit, path);
            path.truncate(len);
            found
        }),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let len = path.len();
            if k.len() > limit || k.contains('\0') {
                return Some(format!(
                    "{path} has a key longer than {limit} bytes or with a nul character"
                ));
            }
            path.push('.');
            path.push_str(k);
            let found = long_string(x, limit, path);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// A valid host name: 1 to 253 characters of letters, digits, `.`, `-` and `_`.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && !name.starts_with(['-', '.'])
}

fn valid_uuid(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses and checks a report body.
pub fn check(body: &[u8], limits: Limits) -> Result<Checked, Malformed> {
    let depth = json_depth(body);
    if depth > limits.max_depth {
        return Err(malformed(
            format!(
                "json nesting is {depth} deep, more than the limit of {}",
                limits.max_depth
            ),
            None,
        ));
    }
    let raw: Value = auto_proto::data::parse_strict(body)
        .map_err(|e| malformed(format!("body is not json: {e}"), None))?;
    if let Some(problem) = long_string(&raw, limits.max_string_bytes, &mut String::from("$")) {
        return Err(malformed(problem, Some(&raw)));
    }
    // What the error log names a refused report by, read before the document is taken apart:
    // the report is deserialized from it by value (its strings moved, not copied).
    let who = malformed(String::new(), Some(&raw));
    let refused = |detail: String| Malformed {
        detail,
        hostname: who.hostname.clone(),
        report_id: who.report_id.clone(),
    };
    let report = Report::deserialize(raw).map_err(|e| refused(format!("not a report: {e}")))?;
    let bad = |detail: String| Err(refused(detail));
    if report.schema == 1 {
        return bad(format!(
            "schema 1 is no longer accepted: this server reads schema {SCHEMA} \
             (docs/report-schema.md); upgrade auto-client to 0.2 or later"
        ));
    }
    if report.schema != SCHEMA {
        return bad(format!(
            "schema is {}, this server reads schema {SCHEMA}",
            report.schema
        ));
    }
    if !valid_uuid(&report.report_id) {
        return bad(format!("report_id {:?} is not a uuid", report.report_id));
    }
    if !valid_hostname(&report.hostname) {
        return bad(format!(
            "hostname {:?} is not a host name (1 to 253 of a-z, 0-9, '.', '-', '_')",
            report.hostname
        ));
    }
    if let Some(prev) = &report.previous_hostname {
        if !valid_hostname(prev) {
            return bad(format!("previous_hostname {prev:?} is not a host name"));
        }
    }
    match crate::clock::parse_rfc3339(&report.collected_at) {
        None => {
            return bad(format!(
                "collected_at {:?} is not an rfc 3339 time",
                report.collected_at
            ))
        }
        Some(t) if !(EARLIEST_COLLECTED_AT..=crate::clock::now() + 86_400).contains(&t) => {
            return bad(format!(
                "collected_at {:?} is not between 2000-01-01 and a day from now",
                report.collected_at
            ))
        }
        Some(_) => {}
    }
    let data_limits = DataLimits {
        max_string_bytes: limits.max_string_bytes,
        ..DataLimits::default()
    };
    let mut plugins = Vec::new();
    let mut failures = Vec::new();
    let mut identity = Identity::default();
    for (name, part) in &report.plugins {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
        if !name_ok {
            return bad(format!(
                "plugin name {name:?} must be 1 to 64 of a-z, 0-9, '_', '-'"
            ));
        }
        match part {
            PluginReport::Error { error, .. } => {
                failures.push((name.clone(), error.kind.clone(), error.message.clone()))
            }
            PluginReport::Ok { data, .. } => {
                let data = validate(data, &data_limits)
                    .map_err(|e| refused(format!("plugins.{name}.data{e}")))?;
                for (field, value) in &data.identity {
                    let slot = match field.as_str() {
                        "machine_id" => &mut identity.machine_id,
                        "serial" => &mut identity.serial,
                        "system_uuid" => &mut identity.system_uuid,
                        _ => continue, // hostname: the report's own `hostname` says it
                    };
                    let value = value.as_ref().map(|v| {
                        if field == "system_uuid" {
                            v.to_ascii_lowercase()
                        } else {
                            v.clone()
                        }
                    });
                    match slot {
                        Some(first) if *first != value => {
                            return bad(format!(
                                "plugins.{name}.data.identity.{field}: {value:?} differs from another collector's {first:?}"
                            ))
                        }
                        _ => *slot = Some(value),
                    }
                }
                plugins.push((name.clone(), data));
            }
        }
    }
    Ok(Checked {
        report,
        plugins,
        failures,
        identity,
    })
}

/// Identity values that vendors ship unset: never evidence that two machines are one.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.len() < 4
        || v.chars().all(|c| c == '0' || c == '-' || c == 'f')
        || [
            "to be filled by o.e.m.",
            "not specified",
            "default string",
            "system serial number",
            "none",
            "not applicable",
            "0123456789",
            "03000200-0400-0500-0006-000700080009",
        ]
        .contains(&v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 16,
        max_string_bytes: 64,
    };

    fn body(plugins: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schema": 2, "report_id": "0b0e0a5e-1111-4222-8333-944455556666",
            "hostname": "web-1", "previous_hostname": null, "collected_at": "2026-11-23T09:00:00Z",
            "agent": {"version": "0.1.0", "mode": "agent"}, "plugins": plugins
        }))
        .expect("serialises")
    }

    fn detail(b: &[u8]) -> String {
        check(b, LIMITS).err().map(|e| e.detail).unwrap_or_default()
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[["}]}"#), 3);
    }

    #[test]
    fn a_bad_field_is_named() {
        let b = body(
            serde_json::json!({"rack": {"status": "ok", "version": "1", "duration_ms": 1,
            "data": {"lists": {"widgets": {"key": ["name"], "parts": [{"id": "w1"}, {"size_bytes": 1}]}}}}}),
        );
        assert_eq!(
            detail(&b),
            "plugins.rack.data.lists.widgets.parts[1].id: missing"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let b = body(
            serde_json::json!({"x": {"status": "ok", "version": "1", "duration_ms": 1,
            "data": {"facts": {"s": "y".repeat(65)}}}}),
        );
        let e = detail(&b);
        assert!(
            e.contains("$.plugins.x.data.facts.s is longer than 64 bytes"),
            "{e}"
        );
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(check(deep.as_bytes(), LIMITS).is_err());
    }

    #[test]
    fn schema_1_is_refused_with_how_to_upgrade() {
        let mut v: Value = serde_json::from_slice(&body(serde_json::json!({}))).expect("json");
        v["schema"] = 1.into();
        let e = detail(&serde_json::to_vec(&v).expect("json"));
        assert!(
            e.starts_with("schema 1 is no longer accepted") && e.contains("upgrade auto-client"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_keys_and_impossible_times_are_refused() {
        let text = String::from_utf8(body(serde_json::json!({}))).expect("utf8");
        let dup = text.replacen(
            "\"hostname\":\"web-1\"",
            "\"hostname\":\"web-1\",\"hostname\":\"db-1\"",
            1,
        );
        assert!(
            detail(dup.as_bytes()).contains("$.hostname appears twice"),
            "{}",
            detail(dup.as_bytes())
        );
        for year in ["0001", "9999"] {
            let t = text.replace("2026-11-23", &format!("{year}-11-23"));
            assert!(
                detail(t.as_bytes()).starts_with("collected_at"),
                "{year}: {}",
                detail(t.as_bytes())
            );
        }
    }

    #[test]
    fn identity_hints_are_merged_and_uuids_lower_cased() {
        let b = body(serde_json::json!({
            "plate": {"status": "ok", "version": "1", "duration_ms": 1,
                "data": {"identity": {"serial": "S1", "system_uuid": "ABCD"}}},
            "os": {"status": "ok", "version": "1", "duration_ms": 1,
                "data": {"identity": {"machine_id": null, "hostname": "web-1"}}}}));
        let c = check(&b, LIMITS).expect("valid");
        assert_eq!(c.identity.serial, Some(Some("S1".into())));
        assert_eq!(c.identity.system_uuid, Some(Some("abcd".into())));
        assert_eq!(c.identity.machine_id, Some(None));
    }

    #[test]
    fn placeholders_are_not_identities() {
        assert!(is_placeholder("To Be Filled By O.E.M."));
        assert!(is_placeholder("00000000-0000-0000-0000-000000000000"));
        assert!(!is_placeholder("PF2ABC12"));
    }
}
