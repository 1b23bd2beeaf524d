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
//! A field that stays `null` has its cause in `reasons`; `reason` sums them up in one line (e.g.
//! `no SMBIOS/DMI on this machine`, `serial, uuid: permission denied: needs root`). A target
//! without DMI is not an error: all four fields are `null` and `reason` says so.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Script, Section},
    export_collector,
    serde_json::{json, Map, Value},
    CollectError, Target,
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

/// The board facts and why any is missing, from the script's sections.
pub fn build(sections: &BTreeMap<String, Section>) -> Value {
    let mut reasons = Map::new();
    if let Some(Section::Unreadable(why)) = sections.get(DMI_DIR) {
        let reason = if why == "missing" {
            "no SMBIOS/DMI on this machine (/sys/class/dmi/id is missing)".to_string()
        } else {
            format!("{DMI_DIR}: {why}")
        };
        for field in ["manufacturer", "product", "serial", "uuid"] {
            reasons.insert(field.into(), json!(reason));
        }
        return json!({
            "manufacturer": null, "product": null, "serial": null, "uuid": null,
            "reason": reason,
            "reasons": reasons,
        });
    }

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

    let reason = (!reasons.is_empty()).then(|| {
        let denied: Vec<&str> = reasons
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|s| s.contains("permission denied")))
            .map(|(k, _)| k.as_str())
            .collect();
        if denied.len() == reasons.len() {
            format!("{}: permission denied: needs root", denied.join(", "))
        } else {
            reasons
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ")
        }
    });

    json!({
        "manufacturer": manufacturer,
        "product": product,
        "serial": serial,
        "uuid": uuid,
        "reason": reason,
        "reasons": reasons,
    })
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
    Ok(build(&batch::run(target, &script(sudo), TIMEOUT, "board")?))
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

    #[test]
    fn this_vm_has_no_dmi_real_output() {
        let data = run(include_str!("../fixtures/firecracker-vm/script.out"));
        assert_eq!(data["manufacturer"], Value::Null);
        assert_eq!(data["serial"], Value::Null);
        assert_eq!(
            data["reason"],
            "no SMBIOS/DMI on this machine (/sys/class/dmi/id is missing)"
        );
    }

    #[test]
    fn dell_poweredge_m630() {
        let data = run(include_str!(
            "../fixtures/dell-poweredge-m630/script-adapted.out"
        ));
        assert_eq!(data["manufacturer"], "Dell Inc.");
        assert_eq!(data["product"], "PowerEdge M630");
        // The publisher of the dump replaced every serial with 4242.
        assert_eq!(data["serial"], "4242");
        assert_eq!(data["uuid"], "4c4c4544-0036-3210-805a-b7c04f4d3632");
        assert_eq!(data["reason"], Value::Null);
    }

    #[test]
    fn vmware_vm() {
        let data = run(include_str!("../fixtures/vmware-vm/script-adapted.out"));
        assert_eq!(data["manufacturer"], "VMware, Inc.");
        assert_eq!(data["product"], "VMware Virtual Platform");
        assert_eq!(
            data["serial"],
            "VMware-42 1a ee 9a 8e 13 ee e5-fc ec 82 3d cd 74 76 94"
        );
        assert_eq!(data["uuid"], "9aee1a42-138e-e5ee-fcec-823dcd747694");
    }

    #[test]
    fn non_root_gets_vendor_and_product_but_no_serial() {
        let data = run(include_str!(
            "../fixtures/vmware-vm/script-non-root-adapted.out"
        ));
        assert_eq!(data["manufacturer"], "VMware, Inc.");
        assert_eq!(data["serial"], Value::Null);
        assert_eq!(data["uuid"], Value::Null);
        assert_eq!(
            data["reason"],
            "serial, uuid: permission denied: needs root"
        );
    }

    #[test]
    fn placeholders_are_null_with_a_reason() {
        let out = "==> sys_vendor\nTo Be Filled By O.E.M.\n\n==> board_vendor\nASRockRack\n\n==> product_serial\nTo Be Filled By O.E.M.\n\n==> board_serial\nDefault string\n\n==> product_uuid\n03000200-0400-0500-0006-000700080009\n\n";
        let data = run(out);
        assert_eq!(data["manufacturer"], "ASRockRack");
        assert_eq!(data["serial"], Value::Null);
        assert_eq!(data["uuid"], Value::Null);
        assert!(data["reasons"]["serial"]
            .as_str()
            .is_some_and(|r| r.contains("placeholder")));
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
        assert_eq!(data["uuid"], "9aee1a42-138e-e5ee-fcec-823dcd747694");
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
        assert!(data.get("reason").is_some());
    }
}
