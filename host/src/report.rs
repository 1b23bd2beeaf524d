//! Building the report document of one target (fixed top level: `auto_proto::Report`).

use std::{collections::BTreeMap, time::SystemTime};

use auto_proto::{AgentInfo, PluginReport, Report, SCHEMA};

use crate::{plugins::runner::Data, Mode};

/// The name the target calls itself: the `os` collector's identity hint `hostname`
/// (`data.identity.hostname`, report schema 2) when it has one, else the name the executor knows
/// it by.
pub fn target_hostname<D: Data>(
    plugins: &BTreeMap<String, PluginReport<D>>,
    fallback: &str,
) -> String {
    match plugins.get("os") {
        Some(PluginReport::Ok { data, .. }) => data
            .identity_hostname()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| fallback.to_string()),
        _ => fallback.to_string(),
    }
}

pub fn build<D>(
    hostname: String,
    previous_hostname: Option<String>,
    mode: Mode,
    plugins: BTreeMap<String, PluginReport<D>>,
) -> Report<D> {
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
    use serde_json::value::RawValue;

    fn os<D>(data: D) -> BTreeMap<String, PluginReport<D>> {
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
        assert_eq!(target_hostname(&os(raw(&data)), "ssh-name"), "web1");
        assert_eq!(target_hostname(&os(data), "ssh-name"), "web1");
        // Undeclared, null or empty: the executor's name.
        for data in [
            serde_json::json!({"facts": {"hostname": "old-shape"}}),
            serde_json::json!({"identity": {"hostname": null}}),
            serde_json::json!({"identity": {"hostname": " "}}),
        ] {
            assert_eq!(target_hostname(&os(raw(&data)), "ssh-name"), "ssh-name");
            assert_eq!(target_hostname(&os(data), "ssh-name"), "ssh-name");
        }
        let none: BTreeMap<String, PluginReport> = BTreeMap::new();
        assert_eq!(target_hostname(&none, "ssh-name"), "ssh-name");
    }

    #[test]
    fn a_report_of_raw_data_is_the_same_document_as_one_of_parsed_data() {
        // as a collector built with plugin-api writes it: compact, keys sorted; a string with
        // spaces, escapes and non-ASCII
        let text = r#"{"facts":{"name":"a \"b\" c\n","size":12,"x":[1.5,null,true]},"parts":{"disks":[{"id":"sda","é":"ü"}]}}"#;
        let raw = <Box<RawValue> as Data>::parse(text.to_string()).expect("json");
        assert_eq!(raw.get(), text, "compact text is kept as it came");
        let parsed = <serde_json::Value as Data>::parse(text.to_string()).expect("json");
        fn at<D>(data: D) -> Report<D> {
            let plugins = BTreeMap::from([(
                "os".to_string(),
                PluginReport::Ok {
                    version: "1".into(),
                    duration_ms: 1,
                    data,
                },
            )]);
            build("h".into(), None, Mode::Ssh, plugins)
        }
        let (mut a, b) = (at(raw), at(parsed));
        a.report_id.clone_from(&b.report_id);
        a.collected_at.clone_from(&b.collected_at);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        // whitespace (it would break one report a line): written compact, as a parsed value is
        let spaced = "{ \"b\": [1, 2],\n \"a\": \"x y\" }";
        let raw = <Box<RawValue> as Data>::parse(spaced.to_string()).expect("json");
        assert_eq!(raw.get(), r#"{"a":"x y","b":[1,2]}"#);
        // not JSON: an error, as before
        assert!(<Box<RawValue> as Data>::parse("{\"a\":".to_string()).is_err());
        assert!(<Box<RawValue> as Data>::parse("{} x".to_string()).is_err());
    }

    /// ssh and salt mode's data: the collector's JSON text, as it came.
    fn raw(data: &serde_json::Value) -> Box<RawValue> {
        <Box<RawValue> as Data>::parse(data.to_string()).expect("json")
    }
}
