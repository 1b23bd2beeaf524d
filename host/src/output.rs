//! Printing reports and plugin lists for people (`--format table`) and tools (`--format json`).

use std::fmt::Write as _;

use auto_proto::{PluginReport, Report};
use serde_json::Value;

use crate::plugins::registry::PluginRegistry;

/// One readable block per report.
pub fn report_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "host {}  ({} mode, collected {})",
        report.hostname, report.agent.mode, report.collected_at
    );
    let width = report
        .plugins
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:width$}  {:6}  {:>6}  DATA",
        "PLUGIN", "STATUS", "MS"
    );
    // Each part list is a table of its own under its collector's line.
    let indent = "  ";
    for (name, p) in &report.plugins {
        match p {
            PluginReport::Ok {
                duration_ms, data, ..
            } => {
                let _ = writeln!(
                    out,
                    "{name:width$}  {:6}  {duration_ms:>6}  {}",
                    "ok",
                    summary(data)
                );
                for line in list_lines(data) {
                    let _ = writeln!(out, "{indent}{line}");
                }
            }
            PluginReport::Error {
                duration_ms, error, ..
            } => {
                let _ = writeln!(
                    out,
                    "{name:width$}  {:6}  {duration_ms:>6}  {}: {}",
                    "error", error.kind, error.message
                );
            }
        }
    }
    out
}

/// One line of a collector's data (report schema 2): its facts, volatile facts and identity hints
/// as `key=value` (`-` for null), in name order. Data of another shape (a collector that does not
/// follow the schema) is summed up key by key.
fn summary(data: &Value) -> String {
    let Value::Object(map) = data else {
        return data.to_string();
    };
    let schema2 = map.keys().all(|k| {
        matches!(
            k.as_str(),
            "facts" | "volatile" | "identity" | "lists" | "reasons"
        )
    });
    if !schema2 {
        return pairs(map);
    }
    ["facts", "volatile", "identity"]
        .iter()
        .filter_map(|section| map.get(*section).and_then(Value::as_object))
        .map(pairs)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `key=value` pairs of an object, in its order.
fn pairs(map: &serde_json::Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value as one short word or phrase: strings unquoted, null as `-`, arrays of objects as their
/// values joined by `/` (`[192.0.2.2/24, fd00::2/64]`).
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| match i {
                    Value::Object(o) => o.values().map(value_text).collect::<Vec<_>>().join("/"),
                    other => value_text(other),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(o) => format!("{{{}}}", pairs(o)),
        other => other.to_string(),
    }
}

/// Widest a table cell gets; longer values are cut with `…`.
const MAX_CELL: usize = 40;

fn cell(v: &Value) -> String {
    let text = value_text(v);
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The part lists of a collector's data, each as its own table like `lsblk`'s: a title line
/// (`NAME (N parts)` or `NAME: unavailable: why`), a header of upper-cased attribute names (the
/// id first, then the list's key attributes, then the rest by name; columns that are null in
/// every part are left out), and one row per part. Nothing here knows any collector.
fn list_lines(data: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(lists) = data.get("lists").and_then(Value::as_object) else {
        return lines;
    };
    for (name, list) in lists {
        if let Some(why) = list.get("unavailable") {
            lines.push(format!("{name}: unavailable: {}", value_text(why)));
            continue;
        }
        let parts: Vec<&serde_json::Map<String, Value>> = list
            .get("parts")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        let noun = if parts.len() == 1 { "part" } else { "parts" };
        lines.push(format!("{name} ({} {noun})", parts.len()));
        if parts.is_empty() {
            continue;
        }
        let key: Vec<&str> = list
            .get("key")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut columns: Vec<&str> = vec!["id"];
        columns.extend(key.iter().copied().filter(|k| *k != "id"));
        let mut rest: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.iter())
            .filter(|(k, v)| !v.is_null() && !columns.contains(&k.as_str()))
            .map(|(k, _)| k.as_str())
            .collect();
        rest.sort_unstable();
        rest.dedup();
        columns.extend(rest);
        columns.retain(|c| {
            parts
                .iter()
                .any(|p| p.get(*c).is_some_and(|v| !v.is_null()))
        });
        let rows: Vec<Vec<String>> = parts
            .iter()
            .map(|p| {
                columns
                    .iter()
                    .map(|c| p.get(*c).map(cell).unwrap_or_else(|| "-".into()))
                    .collect()
            })
            .collect();
        let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
        let widths: Vec<usize> = (0..columns.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut text = String::from("  ");
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                text.push_str(c);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text
        };
        lines.push(line(&header));
        lines.extend(rows.iter().map(|r| line(r)));
    }
    lines
}

pub fn plugins_json(registry: &PluginRegistry) -> Value {
    let mut list = Vec::new();
    for p in &registry.loaded {
        list.push(serde_json::json!({
            "name": p.name, "status": "loaded", "path": p.spec.path, "symbol": p.symbol,
            "version": p.version, "description": p.description,
            "timeout_ms": p.spec.timeout.as_millis() as u64,
        }));
    }
    for f in &registry.failed {
        list.push(serde_json::json!({
            "name": f.name, "status": "failed", "path": f.spec.path,
            "symbol": f.spec.symbol.as_deref().unwrap_or(plugin_api::DEFAULT_SYMBOL),
            "error": f.error,
        }));
    }
    for d in &registry.disabled {
        list.push(serde_json::json!({
            "name": d.name, "status": "disabled", "path": d.path,
            "symbol": d.symbol.as_deref().unwrap_or(plugin_api::DEFAULT_SYMBOL),
        }));
    }
    Value::Array(list)
}

pub fn plugins_table(registry: &PluginRegistry) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:12}  {:8}  {:8}  {:28}  PATH",
        "NAME", "STATUS", "VERSION", "SYMBOL"
    );
    let sym = |s: &Option<String>| s.clone().unwrap_or_else(|| "(default)".to_string());
    for p in &registry.loaded {
        let symbol = if p.symbol == plugin_api::DEFAULT_SYMBOL {
            "(default)".to_string()
        } else {
            p.symbol.clone()
        };
        let _ = writeln!(
            out,
            "{:12}  {:8}  {:8}  {:28}  {}",
            p.name,
            "loaded",
            p.version,
            symbol,
            p.spec.path.display()
        );
    }
    for f in &registry.failed {
        let _ = writeln!(
            out,
            "{:12}  {:8}  {:8}  {:28}  {}",
            f.name,
            "FAILED",
            "-",
            sym(&f.spec.symbol),
            f.spec.path.display()
        );
        let _ = writeln!(out, "{:12}  └ {}", "", f.error);
    }
    for d in &registry.disabled {
        let _ = writeln!(
            out,
            "{:12}  {:8}  {:8}  {:28}  {}",
            d.name,
            "disabled",
            "-",
            sym(&d.symbol),
            d.path.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schema_2_data_is_facts_on_one_line_and_a_line_per_part() {
        let data = json!({
            "facts": {"model": "EPYC", "core_count": 2, "serial": null},
            "volatile": {"uptime_seconds": 5},
            "identity": {"hostname": "vm"},
            "lists": {
                "interfaces": {"key": ["name"], "parts": [
                    {"id": "eth0", "name": "eth0", "speed_mbps": null,
                     "addresses": [{"address": "192.0.2.2", "prefix_len": 24}]}
                ]},
                "modules": {"unavailable": "dmidecode not installed"}
            },
            "reasons": {"serial": "denied"}
        });
        assert_eq!(
            summary(&data),
            "core_count=2 model=EPYC serial=- uptime_seconds=5 hostname=vm"
        );
        assert_eq!(
            list_lines(&data),
            [
                "interfaces (1 part)",
                "  ID    NAME  ADDRESSES",
                "  eth0  eth0  [192.0.2.2/24]",
                "modules: unavailable: dmidecode not installed",
            ]
        );
        // Anything else is summed up key by key.
        assert_eq!(
            summary(&json!({"target": "t", "n": [1, 2]})),
            "n=[1, 2] target=t"
        );
    }

    #[test]
    fn the_table_puts_lists_under_their_collector() {
        let report: Report = serde_json::from_value(json!({
            "schema": 2, "report_id": "r", "hostname": "vm", "collected_at": "now",
            "agent": {"version": "0.1.0", "mode": "agent"},
            "plugins": {"disk": {"status": "ok", "version": "0.1.0", "duration_ms": 3, "data": {
                "lists": {"disks": {"key": ["serial", "name"], "parts": [{"id": "S1", "name": "sda"}]}},
                "reasons": {}
            }}}
        }))
        .expect("a report");
        let table = report_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2].trim_end(), "disk    ok           3");
        assert_eq!(
            &lines[3..],
            ["  disks (1 part)", "    ID  NAME", "    S1  sda"]
        );
    }
}
