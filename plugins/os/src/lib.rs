//! The `os` collector: host name, distribution, kernel, architecture, uptime and machine-id.
//!
//! Everything comes from ONE shell command on the target (one round trip over SSH or Salt): a
//! small script that prints each source file under a `==> PATH` marker, or `=!> PATH missing` /
//! `=!> PATH permission denied` when it cannot, followed by `uname -m`. Sources:
//! `/proc/sys/kernel/hostname`, `/etc/os-release` (or `/usr/lib/os-release`, see os-release(5)),
//! `/proc/sys/kernel/osrelease`, `/proc/uptime`, `/etc/machine-id` and the machine architecture
//! (`/proc/sys/kernel/arch` where the kernel has it, 6.1 and later; else `uname -m`).
//!
//! Its data (report schema 2): the facts `os_name`, `os_version`, `kernel` and `arch`; the volatile
//! `uptime_seconds` (stored, never change-logged); the identity hints `hostname` and `machine_id`.
//! An identity hint is declared when its file could be looked at: its value, or `null` when the
//! file is missing or empty; a file that could not be read (permission denied) declares nothing.
//!
//! A source that is missing or unreadable gives `null` for its field and an entry in `reasons`;
//! the collection fails only when nothing at all could be read.
//!
//! What it is not for: package lists, services, or anything that changes on every run except
//! `uptime_seconds`.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Script, Section},
    export_collector,
    serde_json::{json, Map, Value},
    CollectError, Data, Target,
};

/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// The files the script prints, in order.
const FILES: [&str; 6] = [
    "/proc/sys/kernel/hostname",
    "/etc/os-release",
    "/usr/lib/os-release",
    "/proc/sys/kernel/osrelease",
    "/proc/uptime",
    "/etc/machine-id",
];

/// The section name under which the script prints `uname -m`.
const UNAME: &str = "uname -m";

/// The one command this collector runs (see [`plugin_api::batch`]: the files are read with shell
/// builtins, no process per file).
pub fn script() -> String {
    Script::files(FILES)
        .command(
            UNAME,
            // Linux 6.1 and later: the same string as `uname -m`, without a process.
            "if [ -r /proc/sys/kernel/arch ] && read -r a < /proc/sys/kernel/arch; \
             then printf '%s\\n' \"$a\"; else uname -m; fi",
        )
        .build()
}

/// Parses os-release(5): `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = match value.as_bytes() {
            [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
            _ => value,
        };
        let mut out = String::with_capacity(unquoted.len());
        let mut chars = unquoted.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        map.insert(key.trim().to_string(), out);
    }
    map
}

/// The whole seconds since boot from `/proc/uptime` (`"4966.08 9823.38"`).
pub fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let seconds: f64 = first.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.floor() as u64)
}

/// Builds the collector's data from the script's sections.
pub fn build(sections: &BTreeMap<String, Section>) -> Result<Value, CollectError> {
    let mut reasons = Map::new();
    let mut text = |key: &str, field: &str| -> Option<String> {
        match sections.get(key) {
            Some(Section::Content(t)) if !t.is_empty() => Some(t.clone()),
            Some(Section::Content(_)) => {
                reasons.insert(field.into(), json!(format!("{key} is empty")));
                None
            }
            Some(Section::Unreadable(why)) => {
                reasons.insert(field.into(), json!(format!("{key}: {why}")));
                None
            }
            None => {
                reasons.insert(field.into(), json!(format!("{key}: not reported")));
                None
            }
        }
    };

    let hostname = text("/proc/sys/kernel/hostname", "hostname").map(|h| h.trim().to_string());
    let kernel = text("/proc/sys/kernel/osrelease", "kernel");
    let uptime = text("/proc/uptime", "uptime_seconds");
    let machine_id = text("/etc/machine-id", "machine_id");
    let arch = text(UNAME, "arch");
    let os_release = match sections.get("/etc/os-release") {
        Some(Section::Content(t)) if !t.is_empty() => Some(t.clone()),
        _ => text("/usr/lib/os-release", "os_name"),
    };
    let release = os_release.as_deref().map(parse_os_release);

    let os_name = release
        .as_ref()
        .and_then(|r| r.get("NAME").or_else(|| r.get("ID")).cloned());
    let os_version = release
        .as_ref()
        .and_then(|r| r.get("VERSION_ID").or_else(|| r.get("VERSION")).cloned());
    if release.is_some() && os_name.is_none() {
        reasons.insert("os_name".into(), json!("os-release has no NAME or ID"));
    }
    if release.is_some() && os_version.is_none() {
        // Rolling distributions (Arch, Gentoo, Debian sid) have no version.
        reasons.insert(
            "os_version".into(),
            json!("os-release has no VERSION_ID or VERSION"),
        );
    } else if release.is_none() {
        reasons.insert("os_version".into(), json!("no os-release file"));
    }
    let uptime_seconds = uptime.as_deref().and_then(|t| {
        let parsed = parse_uptime(t);
        if parsed.is_none() {
            reasons.insert(
                "uptime_seconds".into(),
                json!(format!("cannot parse /proc/uptime: {t:?}")),
            );
        }
        parsed
    });

    if hostname.is_none()
        && kernel.is_none()
        && arch.is_none()
        && release.is_none()
        && uptime_seconds.is_none()
        && machine_id.is_none()
    {
        let why: Vec<String> = reasons
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect();
        return Err(CollectError::new(
            "unavailable",
            format!("no os fact could be read ({})", why.join("; ")),
        ));
    }

    let mut data = Data::new();
    data.fact("os_name", os_name)
        .fact("os_version", os_version)
        .fact("kernel", kernel)
        .fact("arch", arch)
        .volatile("uptime_seconds", uptime_seconds);
    for (hint, key, value) in [
        ("hostname", "/proc/sys/kernel/hostname", &hostname),
        ("machine_id", "/etc/machine-id", &machine_id),
    ] {
        if looked_at(sections.get(key)) {
            data.identity(hint, value.as_deref().map(str::trim));
        }
    }
    for (field, why) in &reasons {
        data.reason(field, why.as_str().unwrap_or_default());
    }
    data.build()
}

/// Whether a file was looked at: read (even if empty) or found missing. Not when it could not be
/// read (permission denied) or the script did not get to it: an identity hint is then undeclared.
fn looked_at(section: Option<&Section>) -> bool {
    match section {
        Some(Section::Content(_)) => true,
        Some(Section::Unreadable(why)) => why == "missing",
        None => false,
    }
}

/// Collects the os facts of `target` with one command.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    // Only an answer without any section is a failure (`command_failed`).
    build(&batch::run(target, &script(), TIMEOUT, "os")?)
}

export_collector!(
    name = "os",
    description = "host name, distribution, kernel, architecture, uptime and machine-id",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    /// What the script prints for these files (content `None`: missing), as on a real target.
    fn script_output(files: &[(&str, Option<&str>)], uname: &str) -> String {
        let mut out = String::new();
        for path in FILES {
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, Some(content))) => {
                    out.push_str(&format!("==> {path}\n{content}\n"));
                }
                _ => out.push_str(&format!("=!> {path} missing\n")),
            }
        }
        out.push_str(&format!("==> {UNAME}\n{uname}"));
        out
    }

    fn run(stdout: &str) -> Result<Value, CollectError> {
        FixtureExecutor::new("t")
            .command(&script(), stdout)
            .with_target(|t| collect(t, &json!({})))
    }

    #[test]
    fn this_vm_real_script_output() {
        // The script's real output on the development VM (Firecracker, Debian 12).
        let stdout = include_str!("../fixtures/firecracker-vm/script.out");
        let data = run(stdout).expect("collects");
        assert_eq!(data["identity"]["hostname"], "vm");
        let facts = &data["facts"];
        assert_eq!(facts["os_name"], "Debian GNU/Linux");
        assert_eq!(facts["os_version"], "12");
        assert_eq!(facts["kernel"], "6.18.44-fc-v782");
        assert_eq!(facts["arch"], "x86_64");
        assert!(data["volatile"]["uptime_seconds"]
            .as_u64()
            .is_some_and(|s| s > 0));
        assert_eq!(
            data["identity"]["machine_id"].as_str().map(str::len),
            Some(32)
        );
        assert_eq!(data["reasons"], json!({}));
    }

    #[test]
    fn this_vm_recorded_files() {
        let stdout = script_output(
            &[
                (
                    "/proc/sys/kernel/hostname",
                    Some(include_str!("../fixtures/firecracker-vm/hostname")),
                ),
                (
                    "/etc/os-release",
                    Some(include_str!("../fixtures/firecracker-vm/os-release")),
                ),
                (
                    "/proc/sys/kernel/osrelease",
                    Some(include_str!("../fixtures/firecracker-vm/osrelease")),
                ),
                (
                    "/proc/uptime",
                    Some(include_str!("../fixtures/firecracker-vm/uptime")),
                ),
                (
                    "/etc/machine-id",
                    Some(include_str!("../fixtures/firecracker-vm/machine-id")),
                ),
            ],
            "x86_64\n",
        );
        let data = run(&stdout).expect("collects");
        assert_eq!(data["volatile"]["uptime_seconds"], 5084);
        assert_eq!(data["reasons"], json!({}));
    }

    /// The recorded cases: the script's real output on the VM, and the other distributions'
    /// os-release files as the script would print them on an otherwise empty target.
    fn cases() -> Vec<(&'static str, String)> {
        let dir = |case: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case)
        };
        let mut cases = vec![(
            "firecracker-vm",
            std::fs::read_to_string(dir("firecracker-vm").join("script.out")).expect("fixture"),
        )];
        for case in [
            "rhel-8.7-container",
            "ubuntu-22.04-container",
            "manjaro-container",
        ] {
            let release = std::fs::read_to_string(dir(case).join("os-release")).expect("fixture");
            let stdout = script_output(
                &[
                    ("/proc/sys/kernel/hostname", Some("container\n")),
                    ("/etc/os-release", Some(&release)),
                ],
                "x86_64\n",
            );
            cases.push((case, stdout));
        }
        cases
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, stdout) in cases() {
            let data = run(&stdout).expect("collects");
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case);
            plugin_api::testing::golden(dir, &data);
        }
    }

    #[test]
    fn os_release_of_other_distributions() {
        let rhel = parse_os_release(include_str!("../fixtures/rhel-8.7-container/os-release"));
        assert_eq!(rhel["NAME"], "Red Hat Enterprise Linux");
        assert_eq!(rhel["VERSION_ID"], "8.7");
        // Unquoted values next to quoted ones.
        assert_eq!(rhel["REDHAT_BUGZILLA_PRODUCT_VERSION"], "8.7");
        let ubuntu = parse_os_release(include_str!(
            "../fixtures/ubuntu-22.04-container/os-release"
        ));
        assert_eq!(ubuntu["NAME"], "Ubuntu");
        assert_eq!(ubuntu["VERSION_ID"], "22.04");
    }

    #[test]
    fn rolling_release_without_version_and_usr_lib_fallback() {
        let stdout = script_output(
            &[
                ("/proc/sys/kernel/hostname", Some("arch\n")),
                (
                    "/usr/lib/os-release",
                    Some(include_str!("../fixtures/manjaro-container/os-release")),
                ),
            ],
            "aarch64\n",
        );
        let data = run(&stdout).expect("collects");
        let facts = &data["facts"];
        assert_eq!(facts["os_name"], "Manjaro Linux");
        assert_eq!(facts["os_version"], Value::Null);
        assert_eq!(facts["arch"], "aarch64");
        assert_eq!(facts["kernel"], Value::Null);
        // Missing: looked at, there is none.
        assert_eq!(
            data["identity"],
            json!({"hostname": "arch", "machine_id": null})
        );
        assert_eq!(
            data["reasons"]["kernel"],
            "/proc/sys/kernel/osrelease: missing"
        );
        assert!(data["reasons"]["os_version"].is_string());
    }

    #[test]
    fn unreadable_machine_id_is_a_null_field_with_a_reason() {
        let stdout = "==> /proc/sys/kernel/hostname\nweb1\n\n=!> /etc/machine-id permission denied\n==> uname -m\nx86_64\n";
        let data = run(stdout).expect("collects");
        assert_eq!(data["identity"]["hostname"], "web1");
        // Not readable: not declared (the server does not take it for "no machine-id").
        assert_eq!(data["identity"].get("machine_id"), None);
        assert_eq!(
            data["reasons"]["machine_id"],
            "/etc/machine-id: permission denied"
        );
    }

    #[test]
    fn nothing_readable_is_an_error() {
        let err = run("").expect_err("nothing printed");
        assert_eq!(err.kind, "command_failed");
        let all_missing = FILES
            .iter()
            .map(|f| format!("=!> {f} missing\n"))
            .collect::<String>()
            + "==> uname -m\n";
        let err = run(&all_missing).expect_err("nothing gathered");
        assert_eq!(err.kind, "unavailable");
    }

    #[test]
    fn a_failing_command_is_an_error() {
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("command not found");
        assert_eq!(err.kind, "command_failed");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-os -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(&script())
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(data["identity"]["hostname"], hostname.trim());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        assert_eq!(data["facts"]["kernel"], kernel.trim());
        match std::fs::read_to_string("/etc/machine-id") {
            Ok(id) if !id.trim().is_empty() => {
                assert_eq!(data["identity"]["machine_id"], id.trim())
            }
            _ => assert!(data["reasons"]["machine_id"].is_string(), "{data}"),
        }
        assert!(data["volatile"]["uptime_seconds"].as_u64().is_some());
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
    }
}
