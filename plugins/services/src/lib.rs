//! The `services` collector: the systemd services of the target, their state and whether they
//! are enabled.
//!
//! One round trip: one `sh` script (see [`SCRIPT`]) runs
//! `systemctl list-units --type=service --all --no-legend --plain --no-pager` (the loaded
//! services and their state) and `systemctl list-unit-files --type=service --no-legend --no-pager`
//! (every installed service unit file and whether it is enabled), each under its own section.
//!
//! Its data (report schema 2): the part list `services` keyed by `["name"]`, one part per service
//! unit that either listing names (`ssh.service`, template files such as `getty@.service`, and their
//! loaded instances such as `getty@tty1.service`), with the attributes `name`, `load` (`loaded`,
//! `not-found`, `masked`, ...), `state` (the ACTIVE column: `active`, `inactive`, `failed`, ...),
//! `sub` (the SUB column: `running`, `exited`, `dead`, ...) and `enabled` (the unit file state:
//! `enabled`, `disabled`, `static`, `masked`, `indirect`, `generated`, ...). A unit that is loaded
//! but has no unit file (a generated or transient one) has `enabled` `null`; a unit file that is not
//! loaded has `load`, `state` and `sub` `null` (systemd lists only loaded units: an unloaded one
//! is inactive).
//!
//! A target without systemctl makes the list `unavailable` (`no systemd: systemctl not found`):
//! not an error. So does one where systemd is installed but is not the running init (a container:
//! no `/run/systemd/system`, the test `sd_booted()` makes): nothing runs as a systemd service there,
//! and `systemctl list-unit-files` without a running systemd reads the unit directories itself,
//! which took 3 s on the development VM (more than all other collectors together). Where
//! `list-units` fails on a running systemd (no D-Bus), the parts come from the unit files with
//! `enabled` only, and `reasons.services.state` says why the state is unknown.
//! Errors: only when the script printed nothing at all.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

/// The one command this collector runs.
pub const SCRIPT: &str = "if ! command -v systemctl >/dev/null 2>&1; then \
printf '=!> systemctl missing\\n'; exit 0; fi; \
if [ ! -d /run/systemd/system ]; then printf '=!> systemd not-running\\n'; exit 0; fi; \
printf '==> units\\n'; systemctl list-units --type=service --all --no-legend --plain --no-pager 2>&1; \
printf '==> unit-files\\n'; systemctl list-unit-files --type=service --no-legend --no-pager 2>&1; \
printf '==> end\\n'";

/// Below the host's default collector timeout (10 s).
const TIMEOUT: Duration = Duration::from_secs(8);

/// A loaded unit as `list-units` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub load: String,
    pub active: String,
    pub sub: String,
}

/// The words of a listing row after the status marker systemd prints before a failed or
/// not-found unit (`●` on a terminal, `*` otherwise).
fn words(line: &str) -> Vec<&str> {
    let line = line.trim_start().trim_start_matches(['●', '*']);
    line.split_whitespace().collect()
}

/// Rows of `systemctl list-units` (with or without header, legend, `--plain`) that are services.
pub fn parse_units(text: &str) -> Vec<Unit> {
    text.lines()
        .filter_map(|line| {
            let w = words(line);
            let name = *w.first()?;
            if !name.ends_with(".service") || w.len() < 4 {
                return None;
            }
            Some(Unit {
                name: name.to_string(),
                load: w[1].to_string(),
                active: w[2].to_string(),
                sub: w[3].to_string(),
            })
        })
        .collect()
}

/// Rows of `systemctl list-unit-files` that are services: the name and the unit file state.
pub fn parse_unit_files(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let w = words(line);
            let name = *w.first()?;
            (name.ends_with(".service") && w.len() >= 2)
                .then(|| (name.to_string(), w[1].to_string()))
        })
        .collect()
}

/// A listing that printed no row, only an error (`System has not been booted with systemd...`,
/// `Failed to connect to bus: ...`): the first line of what it printed.
fn failure(text: &str, rows: usize) -> Option<String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    (rows == 0).then(|| first.to_string())
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sections = batch::run(target, SCRIPT, TIMEOUT, "services")?;
    let mut data = Data::new();
    if let Some(Section::Unreadable(_)) = sections.get("systemctl") {
        let why = "no systemd: systemctl not found";
        data.unavailable("services", why).reason("services", why);
        return data.build();
    }
    if let Some(Section::Unreadable(_)) = sections.get("systemd") {
        let why =
            "systemd is not running: not booted with systemd as init (no /run/systemd/system)";
        data.unavailable("services", why).reason("services", why);
        return data.build();
    }
    let text = |name: &str| match sections.get(name) {
        Some(Section::Content(c)) => c.as_str(),
        _ => "",
    };
    let units = parse_units(text("units"));
    let files = parse_unit_files(text("unit-files"));
    let units_failed = failure(text("units"), units.len());
    let files_failed = failure(text("unit-files"), files.len());
    if units.is_empty() && files.is_empty() {
        let why = match (&units_failed, &files_failed) {
            (None, None) => "systemctl lists no service".to_string(),
            (u, f) => format!(
                "systemctl: {}",
                u.clone().or_else(|| f.clone()).unwrap_or_default()
            ),
        };
        data.unavailable("services", why.clone())
            .reason("services", why);
        return data.build();
    }

    let mut parts: BTreeMap<String, (Option<Unit>, Option<String>)> = BTreeMap::new();
    for u in units {
        let name = u.name.clone();
        parts.entry(name).or_default().0 = Some(u);
    }
    for (name, state) in files {
        parts.entry(name).or_default().1 = Some(state);
    }
    let list = data.list("services", &["name"]);
    for (name, (unit, enabled)) in &parts {
        list.part(
            name.clone(),
            json!({
                "name": name,
                "load": unit.as_ref().map(|u| &u.load),
                "state": unit.as_ref().map(|u| &u.active),
                "sub": unit.as_ref().map(|u| &u.sub),
                "enabled": enabled,
            }),
        );
    }
    if let Some(why) = units_failed {
        data.reason(
            "services.state",
            format!("systemctl list-units: {why}: only the unit files are known"),
        );
    }
    if let Some(why) = files_failed {
        data.reason(
            "services.enabled",
            format!("systemctl list-unit-files: {why}"),
        );
    }
    data.build()
}

export_collector!(
    name = "services",
    description = "systemd services: state and enabled",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(fixture(case).join(file)).expect("fixture")
    }

    fn script_out(units: &str, files: &str) -> String {
        format!("==> units\n{units}\n==> unit-files\n{files}\n==> end\n")
    }

    fn cases() -> Vec<(&'static str, String)> {
        vec![
            (
                "insights-openstack-node",
                script_out(&read("insights-openstack-node", "list-units.txt"), ""),
            ),
            (
                "centos-7-server",
                script_out(&read("centos-7-server", "list-units.txt"), ""),
            ),
            (
                "debian-12-container",
                read("debian-12-container", "script.out"),
            ),
            (
                "debian-12-unit-files-only",
                format!(
                    "==> units\n{}\n==> unit-files\n{}\n==> end\n",
                    read("debian-12-unit-files-only", "list-units.out"),
                    read("debian-12-unit-files-only", "list-unit-files.out")
                ),
            ),
            ("no-systemd", "=!> systemctl missing\n".to_string()),
        ]
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(SCRIPT, out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    fn part<'a>(data: &'a Value, name: &str) -> &'a Value {
        data["lists"]["services"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("seen: {data}"))
            .iter()
            .find(|p| p["id"] == name)
            .unwrap_or_else(|| panic!("{name} in {data}"))
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, out) in cases() {
            plugin_api::testing::golden(fixture(case), &run(&out));
        }
    }

    #[test]
    fn insights_list_units_failed_marker_and_other_types() {
        let data = run(&cases()[0].1);
        let swift = part(&data, "openstack-swift-proxy.service");
        assert_eq!(swift["state"], "failed");
        assert_eq!(swift["sub"], "failed");
        assert_eq!(swift["load"], "loaded");
        let dhcp = part(&data, "neutron-dhcp-agent.service");
        assert_eq!(
            (&dhcp["state"], &dhcp["sub"]),
            (&json!("active"), &json!("running"))
        );
        // Only services: no .device, .target, .socket or .timer rows.
        let parts = data["lists"]["services"]["parts"]
            .as_array()
            .expect("parts");
        assert!(parts
            .iter()
            .all(|p| p["id"].as_str().is_some_and(|i| i.ends_with(".service"))));
        // No unit-file listing recorded: `enabled` unknown, said once.
        assert_eq!(dhcp["enabled"], Value::Null);
    }

    #[test]
    fn container_without_systemd_as_init_is_unavailable() {
        let data = run(&cases()[2].1);
        assert!(data["lists"]["services"]["unavailable"]
            .as_str()
            .is_some_and(|r| r.starts_with("systemd is not running")));
    }

    #[test]
    fn list_units_failing_keeps_the_unit_files() {
        let data = run(&cases()[3].1);
        let getty = part(&data, "getty@.service");
        assert_eq!(getty["state"], Value::Null);
        assert!(getty["enabled"].is_string());
        assert!(data["reasons"]["services.state"]
            .as_str()
            .is_some_and(|r| r.contains("has not been booted with systemd")));
    }

    #[test]
    fn no_systemctl_is_unavailable_not_an_error() {
        let data = run("=!> systemctl missing\n");
        assert_eq!(
            data["lists"]["services"]["unavailable"],
            "no systemd: systemctl not found"
        );
    }

    #[test]
    fn unit_files_rows() {
        // Synthetic rows in list-unit-files' format, with and without the preset column.
        let rows = parse_unit_files(
            "ssh.service enabled enabled\ngetty@.service enabled\nfoo.socket enabled\n",
        );
        assert_eq!(
            rows,
            [
                ("ssh.service".to_string(), "enabled".to_string()),
                ("getty@.service".to_string(), "enabled".to_string())
            ]
        );
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-services -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(SCRIPT)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        // Fact parity with systemctl's own per-unit answer for a few units.
        let Some(parts) = data["lists"]["services"]["parts"].as_array() else {
            assert!(data["lists"]["services"]["unavailable"].is_string());
            return;
        };
        for p in parts.iter().filter(|p| p["enabled"].is_string()).take(10) {
            let name = p["name"].as_str().expect("name");
            if name.ends_with("@.service") {
                continue;
            }
            let out = std::process::Command::new("systemctl")
                .args(["is-enabled", name])
                .output()
                .expect("systemctl");
            let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !theirs.is_empty() {
                assert_eq!(p["enabled"], theirs.as_str(), "{name}");
            }
        }
    }
}
