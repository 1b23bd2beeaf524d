//! The `board` collector: system manufacturer, product, serial number and UUID.
//!
//! One shell command on the target prints the SMBIOS strings the kernel exports under
//! `/sys/class/dmi/id` (`sys_vendor`, `board_vendor`, `product_name`, `board_name`,
//! `product_serial`, `board_serial`, `product_uuid`), each under a `==> NAME` marker, or
//! `=!> NAME missing` / `=!> NAME permission denied`. sysfs needs no dmidecode and gives the same
//! strings; `product_serial`, `board_serial` and `product_uuid` are readable by root only.
//!
//! Fields: `manufacturer` = `sys_vendor`, else `board_vendor`; `product` = `product_name`, else
//! `board_name`; `serial` = `product_serial`, else `board_serial`; `uuid` = `product_uuid`, lower
//! case. Vendor placeholders (`To Be Filled By O.E.M.`, `Default string`, `Not Specified`, a
//! `03000200-0400-0500-0006-000700080009` UUID, ...) become `null`: the server flags hosts that share
//! a serial or UUID, and placeholders would make unrelated hosts look alike.
//!
//! With the option `{ "sudo": true }` every file is read with `sudo -n cat`, for SSH logins that
//! are not root (a NOPASSWD rule for `cat /sys/class/dmi/id/*` is needed).
//!
//! Its data (report schema 2): the facts `manufacturer`, `product`, `serial` and `uuid`, and the
//! identity hints `serial` and `system_uuid` (the uuid in lower case). A hint is declared only when
//! its files could be looked at: the value, or `null` when they hold only placeholders or the
//! machine has no DMI; a root-only file read as a normal user declares nothing (unknown is not
//! "none", and the server must not take it for one).
//!
//! A field that stays `null` has its cause in `reasons` (e.g. `no SMBIOS/DMI on this machine`,
//! `product_serial: permission denied: needs root`). A target without DMI is not an error: all
//! four facts are `null` and `reasons` says why.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Script, Section},
    export_collector,
    serde_json::{json, Map, Value},
    CollectError, Data, Target,
};

const DMI_DIR: &str = "/sys/class/dmi/id";
const FILES: [&str; 7] = [
    "sys_vendor",
    "board_vendor",
    "product_name",
    "board_name",
    "product_serial",
    "board_serial",
    "product_uuid",
];
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// The one command this collector runs; with `sudo`, each file is read with `sudo -n cat` (a
/// NOPASSWD rule for `cat /sys/class/dmi/id/*` is then needed; without one the root-only files
/// are reported as `permission denied`, as without the option). Each file is read with a command
/// rather than shell builtins because `[ -r ]` cannot tell what `sudo` may read.
pub fn script(sudo: bool) -> String {
    let cat = if sudo { "sudo -n cat" } else { "cat" };
    Script::files_in(DMI_DIR, FILES).read_with(cat).build()
}

/// Values firmware vendors leave in place of a real one.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty()
        || matches!(
            v.as_str(),
            "to be filled by o.e.m."
                | "default string"
                | "not specified"
                | "not applicable"
                | "none"
                | "n/a"
                | "na"
                | "oem"
                | "o.e.m."
                | "system serial number"
                | "system manufacturer"
                | "system product name"
                | "chassis serial number"
                | "base board serial number"
                | "0123456789"
                | "123456789"
                | "03000200-0400-0500-0006-000700080009"
                | "00020003-0004-0005-0006-000700080009"
        )
        || v.chars().all(|c| c == '0' || c == '-')
        || v.chars().all(|c| c == 'f' || c == '-')
}

/// Whether every one of `files` was looked at: read, or missing (not denied, not skipped).
fn all_looked_at(sections: &BTreeMap<String, Section>, files: &[&str]) -> bool {
    files.iter().all(|f| match sections.get(*f) {
        Some(Section::Content(_)) => true,
        Some(Section::Unreadable(why)) => why == "missing",
        None => false,
    })
}

/// The board facts, identity hints and why any is missing, from the script's sections.
pub fn build(sections: &BTreeMap<String, Section>) -> Result<Value, CollectError> {
    let mut data = Data::new();
    if let Some(Section::Unreadable(why)) = sections.get(DMI_DIR) {
        let reason = if why == "missing" {
            "no SMBIOS/DMI on this machine (/sys/class/dmi/id is missing)".to_string()
        } else {
            format!("{DMI_DIR}: {why}")
        };
        for field in ["manufacturer", "product", "serial", "uuid"] {
            data.fact(field, Value::Null).reason(field, reason.clone());
        }
        if why == "missing" {
            // Looked: this machine has none.
            data.identity("serial", None).identity("system_uuid", None);
        }
        return data.build();
    }
    let mut reasons = Map::new();

    let mut field = |name: &str, files: &[&str]| -> Option<String> {
        let mut why: Vec<String> = Vec::new();
        for file in files {
            match sections.get(*file) {
                Some(Section::Content(v)) if !is_placeholder(v) => return Some(v.clone()),
                Some(Section::Content(v)) => {
                    why.push(format!("{file} holds a placeholder ({v:?})"))
                }
                Some(Section::Unreadable(w)) if w == "permission denied" => {
                    why.push(format!("{file}: permission denied: needs root"))
                }
                Some(Section::Unreadable(w)) => why.push(format!("{file}: {w}")),
                None => why.push(format!("{file}: not reported")),
            }
        }
        reasons.insert(name.into(), json!(why.join("; ")));
        None
    };
    let manufacturer = field("manufacturer", &["sys_vendor", "board_vendor"]);
    let product = field("product", &["product_name", "board_name"]);
    let serial = field("serial", &["product_serial", "board_serial"]);
    let uuid = field("uuid", &["product_uuid"]).map(|u| u.to_ascii_lowercase());

    data.fact("manufacturer", manufacturer)
        .fact("product", product)
        .fact("serial", serial.clone())
        .fact("uuid", uuid.clone());
    for (hint, value, files) in [
        ("serial", &serial, &["product_serial", "board_serial"][..]),
        ("system_uuid", &uuid, &["product_uuid"][..]),
    ] {
        if value.is_some() || all_looked_at(sections, files) {
            data.identity(hint, value.as_deref());
        }
    }
    for (k, v) in &reasons {
        data.reason(k, v.as_str().unwrap_or_default());
    }
    data.build()
}

/// Collects the board facts of `target` with one command.
pub fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let sudo = match options.get("sudo") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(CollectError::new(
                "bad_options",
                format!("option sudo must be true or false, not {other}"),
            ))
        }
    };
    // Only an answer without any section is a failure (`command_failed`).
    build(&batch::run(target, &script(sudo), TIMEOUT, "board")?)
}

export_collector!(
    name = "board",
    description = "system manufacturer, product, serial number and UUID (SMBIOS via sysfs)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn run(stdout: &str) -> Value {
        FixtureExecutor::new("t")
            .command(&script(false), stdout)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    /// Each fixture case and its script output.
    const CASES: [(&str, &str); 4] = [
        ("firecracker-vm", "script.out"),
        ("dell-poweredge-m630", "script-adapted.out"),
        ("vmware-vm", "script-adapted.out"),
        ("vmware-vm-non-root", "script-adapted.out"),
    ];

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, file) in CASES {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case);
            let stdout = std::fs::read_to_string(dir.join(file)).expect("fixture");
            plugin_api::testing::golden(&dir, &run(&stdout));
        }
    }

    #[test]
    fn this_vm_has_no_dmi_real_output() {
        let data = run(include_str!("../fixtures/firecracker-vm/script.out"));
        assert_eq!(data["facts"]["manufacturer"], Value::Null);
        assert_eq!(data["facts"]["serial"], Value::Null);
        assert_eq!(
            data["reasons"]["serial"],
            "no SMBIOS/DMI on this machine (/sys/class/dmi/id is missing)"
        );
        // Looked, there is none.
        assert_eq!(
            data["identity"],
            json!({"serial": null, "system_uuid": null})
        );
    }

    #[test]
    fn dell_poweredge_m630() {
        let data = run(include_str!(
            "../fixtures/dell-poweredge-m630/script-adapted.out"
        ));
        let facts = &data["facts"];
        assert_eq!(facts["manufacturer"], "Dell Inc.");
        assert_eq!(facts["product"], "PowerEdge M630");
        // The publisher of the dump replaced every serial with 4242.
        assert_eq!(facts["serial"], "4242");
        assert_eq!(facts["uuid"], "4c4c4544-0036-3210-805a-b7c04f4d3632");
        assert_eq!(
            data["identity"],
            json!({"serial": "4242", "system_uuid": "4c4c4544-0036-3210-805a-b7c04f4d3632"})
        );
        assert_eq!(data["reasons"], json!({}));
    }

    #[test]
    fn vmware_vm() {
        let data = run(include_str!("../fixtures/vmware-vm/script-adapted.out"));
        let facts = &data["facts"];
        assert_eq!(facts["manufacturer"], "VMware, Inc.");
        assert_eq!(facts["product"], "VMware Virtual Platform");
        assert_eq!(
            facts["serial"],
            "VMware-42 1a ee 9a 8e 13 ee e5-fc ec 82 3d cd 74 76 94"
        );
        assert_eq!(facts["uuid"], "9aee1a42-138e-e5ee-fcec-823dcd747694");
        assert_eq!(
            data["identity"]["system_uuid"],
            "9aee1a42-138e-e5ee-fcec-823dcd747694"
        );
    }

    #[test]
    fn non_root_gets_vendor_and_product_but_no_serial() {
        let data = run(include_str!(
            "../fixtures/vmware-vm-non-root/script-adapted.out"
        ));
        assert_eq!(data["facts"]["manufacturer"], "VMware, Inc.");
        assert_eq!(data["facts"]["serial"], Value::Null);
        assert_eq!(data["facts"]["uuid"], Value::Null);
        assert_eq!(
            data["reasons"]["serial"],
            "product_serial: permission denied: needs root; board_serial: permission denied: needs root"
        );
        assert_eq!(
            data["reasons"]["uuid"],
            "product_uuid: permission denied: needs root"
        );
        // Not readable: no identity hint at all (unknown, not "none").
        assert_eq!(data.get("identity"), None, "{data}");
    }

    #[test]
    fn placeholders_are_null_with_a_reason() {
        let out = "==> sys_vendor\nTo Be Filled By O.E.M.\n\n==> board_vendor\nASRockRack\n\n==> product_serial\nTo Be Filled By O.E.M.\n\n==> board_serial\nDefault string\n\n==> product_uuid\n03000200-0400-0500-0006-000700080009\n\n";
        let data = run(out);
        assert_eq!(data["facts"]["manufacturer"], "ASRockRack");
        assert_eq!(data["facts"]["serial"], Value::Null);
        assert_eq!(data["facts"]["uuid"], Value::Null);
        assert!(data["reasons"]["serial"]
            .as_str()
            .is_some_and(|r| r.contains("placeholder")));
        // Read, and found only placeholders: looked, there is none.
        assert_eq!(
            data["identity"],
            json!({"serial": null, "system_uuid": null})
        );
    }

    #[test]
    fn sudo_option_reads_with_sudo() {
        let data = FixtureExecutor::new("t")
            .command(
                &script(true),
                include_str!("../fixtures/vmware-vm/script-adapted.out"),
            )
            .with_target(|t| collect(t, &json!({ "sudo": true })))
            .expect("collects");
        assert_eq!(
            data["facts"]["uuid"],
            "9aee1a42-138e-e5ee-fcec-823dcd747694"
        );
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({ "sudo": 1 })))
            .expect_err("bad option");
        assert_eq!(err.kind, "bad_options");
    }

    #[test]
    fn a_failing_command_is_an_error() {
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("no shell answer");
        assert_eq!(err.kind, "command_failed");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-board -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(&script(false))
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
        let dir = std::path::Path::new(DMI_DIR);
        if !dir.exists() {
            for field in ["manufacturer", "product", "serial", "uuid"] {
                assert_eq!(data["facts"][field], Value::Null, "{field}");
                assert_eq!(
                    data["reasons"][field],
                    "no SMBIOS/DMI on this machine (/sys/class/dmi/id is missing)"
                );
            }
            assert_eq!(
                data["identity"],
                json!({"serial": null, "system_uuid": null})
            );
            return;
        }
        // Each fact is the first readable, meaningful file of its sources, as sysfs shows it now.
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
        for (field, files) in [
            ("manufacturer", &["sys_vendor", "board_vendor"][..]),
            ("product", &["product_name", "board_name"][..]),
            ("serial", &["product_serial", "board_serial"][..]),
            ("uuid", &["product_uuid"][..]),
        ] {
            let expected = files
                .iter()
                .filter_map(|f| read(f).ok())
                .find(|v| !is_placeholder(v));
            match expected {
                Some(v) if field == "uuid" => {
                    assert_eq!(data["facts"][field], v.to_ascii_lowercase().as_str())
                }
                Some(v) => assert_eq!(data["facts"][field], v.as_str(), "{field}"),
                None => {
                    assert_eq!(data["facts"][field], Value::Null, "{field}");
                    assert!(data["reasons"][field].is_string(), "{field}: {data}");
                }
            }
        }
        match read("product_uuid") {
            Ok(u) if !is_placeholder(&u) => {
                assert_eq!(
                    data["identity"]["system_uuid"],
                    u.to_ascii_lowercase().as_str()
                )
            }
            Ok(_) => assert_eq!(data["identity"]["system_uuid"], Value::Null),
            Err(_) => assert_eq!(data["identity"].get("system_uuid"), None),
        }
    }
}
