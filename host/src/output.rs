//! Printing reports and plugin lists for people (`--format table`) and tools (`--format json`).

use std::fmt::Write as _;

use auto_proto::{PluginReport, Report};
use serde_json::Value;

use crate::registry::PluginRegistry;

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

/// `key=value` for scalars, `key[N]` for lists, in the collector's order.
fn summary(data: &Value) -> String {
    let Value::Object(map) = data else {
        return data.to_string();
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::Array(a) => format!("{k}[{}]", a.len()),
            Value::Object(_) => format!("{k}{{..}}"),
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
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
