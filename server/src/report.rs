//! Checks an incoming report and turns each collector's data into the items the server keeps.
//!
//! Everything here is pure: bytes in, a [`Checked`] report or a [`Malformed`] reason out. The
//! reason is meant for a human: it names the field (`plugins.disk.data.disks[2].name`) and says
//! what is wrong with it.

use auto_proto::{PluginReport, Report, SCHEMA};
use serde::Deserialize;
use serde_json::Value;

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

/// One thing the server tracks for a host: a host field (`os`/`kernel`) or a component
/// (`disk`/`sda#S123`), with its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: String,
    pub item: String,
    pub value: Value,
}

/// What an `ok` collector says: the kinds it is the source of, and their current items. Kinds it
/// owns but that are missing from `items` have been removed.
#[derive(Debug, Default)]
pub struct Facts {
    pub owned: Vec<String>,
    pub items: Vec<Item>,
}

/// A report that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    pub facts: Vec<(String, Facts)>,
    /// `(plugin, kind, message)` of every collector whose status is `error`.
    pub failures: Vec<(String, String, String)>,
    pub identity: Identity,
}

/// The values that identify a machine, for the fields whose collector answered (`Some`).
#[derive(Debug, Default)]
pub struct Identity {
    pub uptime_seconds: Option<Option<i64>>,
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
            path.push_str(&format!("[{i}]"));
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
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("body is not json: {e}"), None))?;
    if let Some(problem) = long_string(&raw, limits.max_string_bytes, &mut String::from("$")) {
        return Err(malformed(problem, Some(&raw)));
    }
    let report = Report::deserialize(&raw)
        .map_err(|e| malformed(format!("not a report: {e}"), Some(&raw)))?;
    let bad = |detail: String| Err(malformed(detail, Some(&raw)));
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
    if crate::clock::parse_rfc3339(&report.collected_at).is_none() {
        return bad(format!(
            "collected_at {:?} is not an rfc 3339 time",
            report.collected_at
        ));
    }
    let mut facts = Vec::new();
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
                let f = extract(name, data, &mut identity)
                    .map_err(|e| malformed(format!("plugins.{name}.data{e}"), Some(&raw)))?;
                facts.push((name.clone(), f));
            }
        }
    }
    Ok(Checked {
        report,
        facts,
        failures,
        identity,
    })
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{path}: expected an object, found {}", kind_of(v)))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// Host fields: one item per field, under the plugin's name.
fn fields(kind: &str, data: &Value, names: &[&str], facts: &mut Facts) -> Result<(), String> {
    let map = object(data, "")?;
    facts.owned.push(kind.to_owned());
    for name in names {
        match map.get(*name) {
            None | Some(Value::Null) => {}
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                return Err(format!(
                    ".{name}: expected a plain value, found {}",
                    kind_of(v)
                ))
            }
            Some(v) => facts.items.push(Item {
                kind: kind.to_owned(),
                item: (*name).to_owned(),
                value: v.clone(),
            }),
        }
    }
    Ok(())
}

/// Components: one item per element of `data[list]`, keyed by `key(element)`.
fn components(
    kind: &str,
    data: &Value,
    list: &str,
    key: impl Fn(&serde_json::Map<String, Value>) -> Result<String, String>,
    facts: &mut Facts,
) -> Result<(), String> {
    let map = object(data, "")?;
    let items = match map.get(list) {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(format!(".{list}: expected an array, found {}", kind_of(v))),
        None => return Err(format!(".{list}: missing")),
    };
    facts.owned.push(kind.to_owned());
    let mut seen = std::collections::HashSet::new();
    for (i, element) in items.iter().enumerate() {
        let path = format!(".{list}[{i}]");
        let fields = object(element, &path)?;
        let base = key(fields).map_err(|e| format!("{path}{e}"))?;
        // Two elements with one key (a broken collector) must not collapse into one item.
        let mut item = base.clone();
        let mut n = 1;
        while !seen.insert(item.clone()) {
            n += 1;
            item = format!("{base}~{n}");
        }
        facts.items.push(Item {
            kind: kind.to_owned(),
            item,
            value: element.clone(),
        });
    }
    Ok(())
}

fn key_string(fields: &serde_json::Map<String, Value>, name: &str) -> Result<String, String> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(format!(
            ".{name}: expected a non-empty string, found {}",
            kind_of(v)
        )),
        None => Err(format!(".{name}: missing")),
    }
}

/// A collector that could not see a part (no DMI, no privilege) says so with a `reason`; its
/// empty answer then means "unknown", not "removed".
fn has_reason(data: &Value) -> bool {
    ["reason", "modules_reason"]
        .iter()
        .any(|k| data.get(k).is_some_and(|v| !v.is_null()))
}

/// The items of one collector's data; errors are a path below `data` and what is wrong.
fn extract(plugin: &str, data: &Value, id: &mut Identity) -> Result<Facts, String> {
    let mut facts = Facts::default();
    match plugin {
        "os" => {
            fields(
                "os",
                data,
                &["os_name", "os_version", "kernel", "arch", "machine_id"],
                &mut facts,
            )?;
            id.uptime_seconds = Some(data.get("uptime_seconds").and_then(Value::as_i64));
            id.machine_id = Some(text(data.get("machine_id")));
        }
        "cpu" => fields(
            "cpu",
            data,
            &["model", "sockets", "cores", "threads"],
            &mut facts,
        )?,
        "memory" => {
            fields("memory", data, &["total_bytes"], &mut facts)?;
            let empty = data
                .get("modules")
                .and_then(Value::as_array)
                .is_some_and(|m| m.is_empty());
            if !(empty && has_reason(data)) {
                components(
                    "memory_module",
                    data,
                    "modules",
                    |f| key_string(f, "slot"),
                    &mut facts,
                )?;
            }
        }
        "disk" => components(
            "disk",
            data,
            "disks",
            |f| {
                let name = key_string(f, "name")?;
                Ok(match text(f.get("serial")) {
                    Some(serial) => format!("{name}#{serial}"),
                    None => name,
                })
            },
            &mut facts,
        )?,
        "nic" => components(
            "nic",
            data,
            "interfaces",
            |f| key_string(f, "name"),
            &mut facts,
        )?,
        "board" => {
            let map = object(data, "")?;
            let known = ["manufacturer", "product", "serial", "uuid"];
            let blank = known.iter().all(|k| text(map.get(*k)).is_none());
            if !(blank && has_reason(data)) {
                facts.owned.push("board".into());
                let mut board = map.clone();
                board.remove("reason");
                facts.items.push(Item {
                    kind: "board".into(),
                    item: "board".into(),
                    value: Value::Object(board),
                });
                id.serial = Some(text(map.get("serial")));
                id.system_uuid = Some(text(map.get("uuid")).map(|u| u.to_ascii_lowercase()));
            }
        }
        other => {
            // A collector this server has no model for: kept whole, as one item.
            facts.owned.push(other.to_owned());
            facts.items.push(Item {
                kind: other.to_owned(),
                item: "data".into(),
                value: data.clone(),
            });
        }
    }
    Ok(facts)
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
            "schema": 1, "report_id": "0b0e0a5e-1111-4222-8333-944455556666",
            "hostname": "web-1", "previous_hostname": null, "collected_at": "2026-11-23T09:00:00Z",
            "agent": {"version": "0.1.0", "mode": "agent"}, "plugins": plugins
        }))
        .expect("serialises")
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[["}]}"#), 3);
    }

    #[test]
    fn a_bad_field_is_named() {
        let b = body(
            serde_json::json!({"disk": {"status": "ok", "version": "1", "duration_ms": 1,
            "data": {"disks": [{"name": "sda"}, {"size_bytes": 1}]}}}),
        );
        let e = check(&b, LIMITS).err().map(|e| e.detail);
        assert_eq!(
            e.as_deref(),
            Some("plugins.disk.data.disks[1].name: missing")
        );
    }

    #[test]
    fn limits_are_enforced() {
        let b = body(
            serde_json::json!({"x": {"status": "ok", "version": "1", "duration_ms": 1,
            "data": {"s": "y".repeat(65)}}}),
        );
        let e = check(&b, LIMITS)
            .err()
            .map(|e| e.detail)
            .unwrap_or_default();
        assert!(
            e.contains("$.plugins.x.data.s is longer than 64 bytes"),
            "{e}"
        );
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(check(deep.as_bytes(), LIMITS).is_err());
    }

    #[test]
    fn disks_are_keyed_by_name_and_serial() {
        let b = body(
            serde_json::json!({"disk": {"status": "ok", "version": "1", "duration_ms": 1,
            "data": {"disks": [{"name": "sda", "serial": "S1"}, {"name": "sdb", "serial": null}]}}}),
        );
        let c = check(&b, LIMITS).expect("valid");
        let items: Vec<_> = c.facts[0].1.items.iter().map(|i| i.item.as_str()).collect();
        assert_eq!(items, ["sda#S1", "sdb"]);
    }

    #[test]
    fn placeholders_are_not_identities() {
        assert!(is_placeholder("To Be Filled By O.E.M."));
        assert!(is_placeholder("00000000-0000-0000-0000-000000000000"));
        assert!(!is_placeholder("PF2ABC12"));
    }
}
