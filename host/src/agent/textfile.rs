//! The node_exporter textfile (`--textfile PATH`, `textfile` in the config): after every agent
//! cycle, the Prometheus text format of what the cycle did, so that existing monitoring alerts on a
//! host that stopped reporting (`time() - auto_client_last_success_timestamp_seconds > 2 * 86400`).
//!
//! Written atomically: a temporary file in the same directory (`.NAME.tmp`, mode 0644), fsynced,
//! renamed over PATH; node_exporter never reads half a file. The last success time survives failed
//! cycles: it is read back from the previous file.

use std::{
    io::Write,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use auto_proto::{PluginReport, Report};

const LAST_SUCCESS: &str = "auto_client_last_success_timestamp_seconds";

/// The metrics of one cycle. `delivered`: the server applied this cycle's report;
/// `last_success`: the previous success time, kept when this cycle did not deliver.
pub fn render(report: &Report, delivered: bool, now: f64, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: &[String]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(name);
            out.push_str(l);
            out.push('\n');
        }
    };
    metric(
        "auto_client_last_run_timestamp_seconds",
        "When the agent's last cycle ended (Unix time).",
        "gauge",
        &[format!(" {now:.3}")],
    );
    let success = if delivered { Some(now) } else { last_success };
    if let Some(t) = success {
        metric(
            LAST_SUCCESS,
            "When a report of this host was last applied by the server (Unix time).",
            "gauge",
            &[format!(" {t:.3}")],
        );
    }
    metric(
        "auto_client_last_run_delivered",
        "1 when the last cycle's report was applied by the server, else 0.",
        "gauge",
        &[format!(" {}", u8::from(delivered))],
    );
    let mut durations = Vec::new();
    let mut successes = Vec::new();
    let mut outcomes = Vec::new();
    for (name, plugin) in &report.plugins {
        let name = escape(name);
        let (ms, outcome) = match plugin {
            PluginReport::Ok { duration_ms, .. } => (*duration_ms, "ok".to_string()),
            PluginReport::Error {
                duration_ms, error, ..
            } => (*duration_ms, escape(&error.kind)),
        };
        durations.push(format!(
            "{{collector=\"{name}\"}} {:.3}",
            ms as f64 / 1000.0
        ));
        successes.push(format!(
            "{{collector=\"{name}\"}} {}",
            u8::from(plugin.is_ok())
        ));
        outcomes.push(format!("{{collector=\"{name}\",outcome=\"{outcome}\"}} 1"));
    }
    metric(
        "auto_client_collector_duration_seconds",
        "How long each collector took in the last cycle.",
        "gauge",
        &durations,
    );
    metric(
        "auto_client_collector_success",
        "1 when the collector gave data in the last cycle, 0 when it failed.",
        "gauge",
        &successes,
    );
    metric(
        "auto_client_collector_outcome",
        "The last cycle's outcome of each collector: ok, or the error kind (timeout, load, ...).",
        "gauge",
        &outcomes,
    );
    out
}

/// A label value as the text format wants it.
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The last success time a previous file holds.
pub fn previous_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
}

/// Writes the metrics of this cycle to `path`, atomically (tmp + fsync + rename).
pub fn write(path: &Path, report: &Report, delivered: bool) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let text = render(report, delivered, now, previous_success(path));
    write_atomically(path, text.as_bytes())
        .with_context(|| format!("cannot write the textfile {}", path.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auto_proto::{AgentInfo, PluginFailure};
    use std::collections::BTreeMap;

    fn report() -> Report {
        let mut plugins = BTreeMap::new();
        plugins.insert(
            "os".to_string(),
            PluginReport::Ok {
                version: "1".into(),
                duration_ms: 12,
                data: serde_json::json!({}),
            },
        );
        plugins.insert(
            "disk".to_string(),
            PluginReport::Error {
                version: None,
                duration_ms: 10_000,
                error: PluginFailure {
                    kind: "timeout".into(),
                    message: "late".into(),
                },
            },
        );
        Report {
            schema: 2,
            report_id: "r".into(),
            hostname: "web-1".into(),
            previous_hostname: None,
            collected_at: "2026-01-01T00:00:00Z".into(),
            agent: AgentInfo {
                version: "0".into(),
                mode: "agent".into(),
            },
            plugins,
        }
    }

    #[test]
    fn each_collector_has_its_duration_and_outcome() {
        let text = render(&report(), true, 1000.5, None);
        for line in [
            "auto_client_last_run_timestamp_seconds 1000.500",
            "auto_client_last_success_timestamp_seconds 1000.500",
            "auto_client_last_run_delivered 1",
            "auto_client_collector_duration_seconds{collector=\"os\"} 0.012",
            "auto_client_collector_duration_seconds{collector=\"disk\"} 10.000",
            "auto_client_collector_success{collector=\"disk\"} 0",
            "auto_client_collector_outcome{collector=\"disk\",outcome=\"timeout\"} 1",
            "auto_client_collector_outcome{collector=\"os\",outcome=\"ok\"} 1",
            "# TYPE auto_client_collector_success gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn a_failed_cycle_keeps_the_last_success_time_and_the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auto-client.prom");
        write(&path, &report(), true).expect("first");
        let first = previous_success(&path).expect("a success time");
        write(&path, &report(), false).expect("second");
        assert_eq!(previous_success(&path), Some(first));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("auto_client_last_run_delivered 0"), "{text}");
        // no temporary file is left beside it
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("auto-client.prom")]);
        // a never-delivered host has no success line at all (absent, not 0)
        let fresh = dir.path().join("fresh.prom");
        write(&fresh, &report(), false).expect("fresh");
        assert!(previous_success(&fresh).is_none());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
