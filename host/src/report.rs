//! Building the report document of one target (fixed top level: `auto_proto::Report`).

use std::{collections::BTreeMap, time::SystemTime};

use auto_proto::{AgentInfo, PluginReport, Report, SCHEMA};

use crate::Mode;

/// The name the target calls itself: the `os` collector's identity hint `hostname`
/// (`data.identity.hostname`, report schema 2) when it has one, else the name the executor knows
/// it by.
pub fn target_hostname(plugins: &BTreeMap<String, PluginReport>, fallback: &str) -> String {
    match plugins.get("os") {
        Some(PluginReport::Ok { data, .. }) => data
            .get("identity")
            .and_then(|i| i.get("hostname"))
            .and_then(|h| h.as_str())
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(fallback)
            .to_string(),
        _ => fallback.to_string(),
    }
}

pub fn build(
    hostname: String,
    previous_hostname: Option<String>,
    mode: Mode,
    plugins: BTreeMap<String, PluginReport>,
) -> Report {
    Report {
        schema: SCHEMA,
        report_id: uuid::Uuid::new_v4().to_string(),
        hostname,
        previous_hostname,
        collected_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        agent: AgentInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mode: mode.as_str().to_string(),
        },
        plugins,
    }
}

/// The local machine's name, for agent mode.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(data: serde_json::Value) -> BTreeMap<String, PluginReport> {
        BTreeMap::from([(
            "os".to_string(),
            PluginReport::Ok {
                version: "0.1.0".into(),
                duration_ms: 1,
                data,
            },
        )])
    }

    #[test]
    fn the_hostname_is_the_os_collectors_identity_hint() {
        let data =
            serde_json::json!({"facts": {"kernel": "6.1"}, "identity": {"hostname": "web1\n"}});
        assert_eq!(target_hostname(&os(data), "ssh-name"), "web1");
        // Undeclared, null or empty: the executor's name.
        for data in [
            serde_json::json!({"facts": {"hostname": "old-shape"}}),
            serde_json::json!({"identity": {"hostname": null}}),
            serde_json::json!({"identity": {"hostname": " "}}),
        ] {
            assert_eq!(target_hostname(&os(data), "ssh-name"), "ssh-name");
        }
        assert_eq!(target_hostname(&BTreeMap::new(), "ssh-name"), "ssh-name");
    }
}
