//! The `board` collector: system, baseboard, chassis and BIOS identity (SMBIOS).
//!
//! One shell command on the target (one round trip) reads the SMBIOS strings the kernel exports
//! under `/sys/class/dmi/id` (see [`FILES`]), each under a `==> NAME` marker, or
//! `=!> NAME missing` / `=!> NAME permission denied`, with shell builtins (no process per file).
//! Where that directory is missing (some containers and hypervisors, old kernels) or any file of
//! it could not be read, the same command then runs `dmidecode -t 0,1,2,3` (its output and exit
//! code under `==> dmidecode` and `==> dmidecode exit`): a machine whose sysfs tells everything
//! never starts dmidecode. Each field takes the sysfs value, else dmidecode's: whichever the
//! target has, per field. `product_serial`, `board_serial`, `chassis_serial` and `product_uuid`
//! are readable by root only, as is dmidecode.
//!
//! Facts (each `null` with its cause in `reasons` when no source has a real value):
//! - `manufacturer` (`sys_vendor`, else `board_vendor`; dmidecode type 1, else type 2),
//!   `product` (`product_name`, else `board_name`), `serial` (`product_serial`, else
//!   `board_serial`), `uuid` (`product_uuid`, lower case);
//! - `baseboard_manufacturer`, `baseboard_product`, `baseboard_serial` (type 2: `board_vendor`,
//!   `board_name`, `board_serial`; the first type-2 record, as the kernel takes it);
//! - `chassis_serial`, `chassis_asset_tag` (type 3; on blades and cartridges the chassis serial
//!   is the one on the enclosure's sticker);
//! - `bios_vendor`, `bios_version`, `bios_date` (type 0; the date as the firmware writes it,
//!   `MM/DD/YYYY`).
//!
//! Vendor placeholders (`To Be Filled By O.E.M.`, `Default string`, `Not Specified`, `None`,
//! `No Asset Tag`, a `03000200-0400-0500-0006-000700080009` UUID, ...) become `null`: the server
//! flags hosts that share a serial or UUID, and placeholders would make unrelated hosts look alike.
//!
//! With the option `{ "sudo": true }` the files the login cannot read are read with `sudo -n cat`
//! and dmidecode runs as `sudo -n dmidecode` (NOPASSWD rules for `cat /sys/class/dmi/id/*` and
//! dmidecode are needed), for SSH logins that are not root.
//!
//! Identity hints `serial` and `system_uuid` (the uuid in lower case): declared only when the
//! sources could be looked at: the value, or `null` when they hold only placeholders or the
//! machine has no DMI (no `/sys/class/dmi/id`, and dmidecode finds no SMBIOS or is not
//! installed); a root-only file read as a normal user, with dmidecode refused too, declares
//! nothing (unknown is not "none", and the server must not take it for one).
//!
//! A target without DMI is not an error: every fact is `null` and `reasons` says why.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Map, Value},
    CollectError, Data, Target,
};

pub mod dmidecode;

const DMI_DIR: &str = "/sys/class/dmi/id";
/// The sysfs files read, in the order the script reads them.
pub const FILES: [&str; 12] = [
    "sys_vendor",
    "product_name",
    "product_serial",
    "product_uuid",
    "board_vendor",
    "board_name",
    "board_serial",
    "chassis_serial",
    "chassis_asset_tag",
    "bios_vendor",
    "bios_version",
    "bios_date",
];
/// The SMBIOS types dmidecode is asked for: BIOS, system, baseboard, chassis.
const DMI_TYPES: &str = "0,1,2,3";
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// A fact, its sysfs files and its dmidecode (type, key) sources, in order of preference.
type Field = (
    &'static str,
    &'static [&'static str],
    &'static [(u8, &'static str)],
);

/// Every fact of this collector.
const FIELDS: [Field; 12] = [
    (
        "manufacturer",
        &["sys_vendor", "board_vendor"],
        &[(1, "Manufacturer"), (2, "Manufacturer")],
    ),
    (
        "product",
        &["product_name", "board_name"],
        &[(1, "Product Name"), (2, "Product Name")],
    ),
    (
        "serial",
        &["product_serial", "board_serial"],
        &[(1, "Serial Number"), (2, "Serial Number")],
    ),
    ("uuid", &["product_uuid"], &[(1, "UUID")]),
    (
        "baseboard_manufacturer",
        &["board_vendor"],
        &[(2, "Manufacturer")],
    ),
    ("baseboard_product", &["board_name"], &[(2, "Product Name")]),
    (
        "baseboard_serial",
        &["board_serial"],
        &[(2, "Serial Number")],
    ),
    (
        "chassis_serial",
        &["chassis_serial"],
        &[(3, "Serial Number")],
    ),
    (
        "chassis_asset_tag",
        &["chassis_asset_tag"],
        &[(3, "Asset Tag")],
    ),
    ("bios_vendor", &["bios_vendor"], &[(0, "Vendor")]),
    ("bios_version", &["bios_version"], &[(0, "Version")]),
    ("bios_date", &["bios_date"], &[(0, "Release Date")]),
];

/// The one command this collector runs (see the crate docs). Files are read with shell builtins
/// where `[ -r ]` allows; with `sudo`, the others with `sudo -n cat` (`[ -r ]` cannot tell what
/// sudo may read). A file that could not be read sets `m`, which runs dmidecode after the files.
pub fn script(sudo: bool) -> String {
    let unreadable = if sudo {
        "elif [ -e \"$p\" ] && v=$(sudo -n cat \"$p\" 2>/dev/null); then printf '==> %s\\n%s\\n\\n' \"$f\" \"$v\"; "
    } else {
        ""
    };
    format!(
        "m=; d={DMI_DIR}; if [ -d \"$d\" ]; then for f in {files}; do p=\"$d/$f\"; \
         if [ -r \"$p\" ]; then v=; IFS= read -r v < \"$p\"; printf '==> %s\\n%s\\n\\n' \"$f\" \"$v\"; \
         {unreadable}elif [ -e \"$p\" ]; then printf '=!> %s permission denied\\n' \"$f\"; m=1; \
         else printf '=!> %s missing\\n' \"$f\"; m=1; fi; done; \
         else printf '=!> %s missing\\n' \"$d\"; m=1; fi; \
         if [ -n \"$m\" ]; then {step}; fi",
        files = FILES.join(" "),
        step = dmidecode::batch_step("dmidecode", &dmidecode::command(DMI_TYPES, sudo)),
    )
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
                | "not available"
                | "none"
                | "n/a"
                | "na"
                | "oem"
                | "o.e.m."
                | "unknown"
                | "no asset tag"
                | "no asset information"
                | "asset tag"
                | "asset-1234567890"
                | "system serial number"
                | "system manufacturer"
                | "system product name"
                | "chassis serial number"
                | "chassis manufacture"
                | "base board serial number"
                | "0123456789"
                | "123456789"
                | "03000200-0400-0500-0006-000700080009"
                | "00020003-0004-0005-0006-000700080009"
        )
        || v.chars().all(|c| c == '0' || c == '-')
        || v.chars().all(|c| c == 'f' || c == '-')
}

/// What dmidecode said, when it ran.
enum Dmi {
    /// It did not run: every sysfs file was read.
    NotRun,
    /// Its records of types 0-3.
    Records(Vec<dmidecode::Record>),
    /// Why it gave none.
    Failed(String),
}

impl Dmi {
    fn from_sections(sections: &BTreeMap<String, Section>) -> Self {
        match dmidecode::from_sections(sections, "dmidecode") {
            None => Dmi::NotRun,
            Some((text, exit)) => match dmidecode::failure(&text, exit) {
                Some(why) => Dmi::Failed(why),
                None => Dmi::Records(dmidecode::records(&text)),
            },
        }
    }

    /// The first record of `kind`'s `key`.
    fn value(&self, kind: u8, key: &str) -> Option<&str> {
        match self {
            Dmi::Records(r) => r.iter().find(|r| r.kind == kind).and_then(|r| r.get(key)),
            _ => None,
        }
    }

    /// Whether dmidecode's answer settles that a value is absent: it read the table, or the
    /// machine has none, or (with no sysfs either) there is no tool to ask.
    fn looked(&self, sysfs_dir_missing: bool) -> bool {
        match self {
            Dmi::NotRun | Dmi::Records(_) => true,
            Dmi::Failed(why) => {
                why == "no SMBIOS/DMI on this machine"
                    || (sysfs_dir_missing && why == "dmidecode not installed")
            }
        }
    }
}

/// The board facts, identity hints and why any is missing, from the script's sections.
pub fn build(sections: &BTreeMap<String, Section>) -> Result<Value, CollectError> {
    let mut data = Data::new();
    let dir_missing = matches!(sections.get(DMI_DIR), Some(Section::Unreadable(_)));
    let dir_reason = match sections.get(DMI_DIR) {
        Some(Section::Unreadable(why)) if why == "missing" => {
            Some("no SMBIOS/DMI in sysfs (/sys/class/dmi/id is missing)".to_string())
        }
        Some(Section::Unreadable(why)) => Some(format!("{DMI_DIR}: {why}")),
        _ => None,
    };
    let dmi = Dmi::from_sections(sections);
    let mut reasons = Map::new();
    let mut values: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (name, files, dmi_keys) in FIELDS {
        let mut why: Vec<String> = Vec::new();
        let mut found = None;
        match &dir_reason {
            Some(r) => why.push(r.clone()),
            None => {
                for file in files {
                    match sections.get(*file) {
                        Some(Section::Content(v)) if !is_placeholder(v) => {
                            found = Some(v.clone());
                            break;
                        }
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
            }
        }
        if found.is_none() {
            match &dmi {
                Dmi::NotRun => {}
                Dmi::Failed(w) => why.push(format!("dmidecode: {w}")),
                Dmi::Records(_) => {
                    for (kind, key) in dmi_keys {
                        match dmi.value(*kind, key) {
                            Some(v) if !is_placeholder(v) => {
                                found = Some(v.to_string());
                                break;
                            }
                            Some(v) => why.push(format!(
                                "dmidecode type {kind} {key} holds a placeholder ({v:?})"
                            )),
                            None => why.push(format!("dmidecode shows no type {kind} {key}")),
                        }
                    }
                }
            }
        }
        if found.is_none() {
            reasons.insert(name.into(), json!(why.join("; ")));
        }
        let found = if name == "uuid" {
            found.map(|u| u.to_ascii_lowercase())
        } else {
            found
        };
        data.fact(name, found.clone());
        values.insert(name, found);
    }
    for (hint, field, files) in [
        ("serial", "serial", &["product_serial", "board_serial"][..]),
        ("system_uuid", "uuid", &["product_uuid"][..]),
    ] {
        let value = values.get(field).cloned().flatten();
        // Every file read: dmidecode reads the same table, it cannot know more.
        let sysfs_read = !dir_missing
            && files
                .iter()
                .all(|f| matches!(sections.get(*f), Some(Section::Content(_))));
        let sysfs_looked = dir_missing || all_looked_at(sections, files);
        if value.is_some() || sysfs_read || (sysfs_looked && dmi.looked(dir_missing)) {
            data.identity(hint, value.as_deref());
        }
    }
    for (k, v) in &reasons {
        data.reason(k, v.as_str().unwrap_or_default());
    }
    data.build()
}

/// Whether every one of `files` was looked at: read, or missing (not denied, not skipped).
fn all_looked_at(sections: &BTreeMap<String, Section>, files: &[&str]) -> bool {
    files.iter().all(|f| match sections.get(*f) {
        Some(Section::Content(_)) => true,
        Some(Section::Unreadable(why)) => why == "missing",
        None => false,
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
    build(&batch::run(target, &script(sudo), TIMEOUT, "board")?)
}

export_collector!(
    name = "board",
    description = "system, baseboard, chassis and BIOS identity (SMBIOS via sysfs, else dmidecode)",
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

    fn fixture(case: &str, file: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case);
        std::fs::read_to_string(dir.join(file)).expect("fixture")
    }

    /// What the script prints on a machine without `/sys/class/dmi/id` where dmidecode prints
    /// `dump` (a container, some hypervisors, old kernels).
    fn no_sysfs_with_dmidecode(dump: &str) -> String {
        format!("=!> /sys/class/dmi/id missing\n==> dmidecode\n{dump}\n==> dmidecode exit\n0\n")
    }

    /// Each fixture case and the script's output on it.
    fn cases() -> Vec<(&'static str, String)> {
        vec![
            ("firecracker-vm", fixture("firecracker-vm", "script.out")),
            (
                "dell-poweredge-m630",
                fixture("dell-poweredge-m630", "script-adapted.out"),
            ),
            ("vmware-vm", fixture("vmware-vm", "script-adapted.out")),
            (
                "vmware-vm-non-root",
                fixture("vmware-vm-non-root", "script-adapted.out"),
            ),
            (
                "hp-proliant-m710x",
                no_sysfs_with_dmidecode(&fixture("hp-proliant-m710x", "dmidecode.txt")),
            ),
        ]
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, stdout) in cases() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case);
            plugin_api::testing::golden(&dir, &run(&stdout));
        }
    }

    #[test]
    fn script_runs_on_this_machine_and_reads_a_fake_sysfs_without_forks() {
        // The script's text, run by sh against a scratch directory standing for /sys/class/dmi/id.
        let dir = std::env::temp_dir().join(format!("board-dmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for f in FILES {
            std::fs::write(dir.join(f), format!("value of {f}\n")).expect("write");
        }
        let script = script(false).replace(DMI_DIR, &dir.to_string_lossy());
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh");
        let sections = batch::parse_sections(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            sections["bios_date"],
            Section::Content("value of bios_date".into())
        );
        assert!(
            !sections.contains_key("dmidecode"),
            "all read: no dmidecode"
        );
        std::fs::remove_file(dir.join("chassis_serial")).expect("rm");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh");
        let sections = batch::parse_sections(&String::from_utf8_lossy(&out.stdout));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            sections["chassis_serial"],
            Section::Unreadable("missing".into())
        );
        assert!(
            sections.contains_key("dmidecode"),
            "one file missing: dmidecode runs"
        );
        assert!(sections.contains_key("dmidecode exit"));
    }

    #[test]
    fn this_vm_has_no_dmi_real_output() {
        let data = run(include_str!("../fixtures/firecracker-vm/script.out"));
        assert_eq!(data["facts"]["manufacturer"], Value::Null);
        assert_eq!(data["facts"]["serial"], Value::Null);
        assert_eq!(
            data["reasons"]["serial"],
            "no SMBIOS/DMI in sysfs (/sys/class/dmi/id is missing); dmidecode: no SMBIOS/DMI on this machine"
        );
        // Looked, there is none.
        assert_eq!(
            data["identity"],
            json!({"serial": null, "system_uuid": null})
        );
    }

    #[test]
    fn hp_cartridge_from_dmidecode_without_sysfs() {
        let data = run(&no_sysfs_with_dmidecode(include_str!(
            "../fixtures/hp-proliant-m710x/dmidecode.txt"
        )));
        let facts = &data["facts"];
        assert_eq!(facts["manufacturer"], "HP");
        assert_eq!(facts["product"], "ProLiant m710x Server Cartridge");
        assert_eq!(facts["serial"], "CN66480BLA");
        assert_eq!(facts["uuid"], "cf6d6de0-a5ab-512c-bcd4-5cf40ec490c1");
        assert_eq!(facts["baseboard_manufacturer"], "HP");
        assert_eq!(facts["baseboard_serial"], "CN66480ANY");
        assert_eq!(facts["bios_vendor"], "HP");
        assert_eq!(facts["bios_version"], "H07");
        assert_eq!(facts["bios_date"], "05/23/2016");
        // The cartridge sits in a Moonshot chassis: the sticker serial is the chassis one.
        assert_eq!(facts["chassis_serial"], "CZ3702MD5K");
        assert_eq!(
            data["identity"],
            json!({"serial": "CN66480BLA", "system_uuid": "cf6d6de0-a5ab-512c-bcd4-5cf40ec490c1"})
        );
    }

    #[test]
    fn dmidecode_fills_what_sysfs_lacks_per_field() {
        // sysfs of an old kernel without the chassis and BIOS files (synthetic), dmidecode's
        // real Dell M630 dump: each field from whichever source has it.
        let mut out = String::new();
        for f in FILES {
            if f.starts_with("chassis") || f.starts_with("bios") {
                out.push_str(&format!("=!> {f} missing\n"));
            } else {
                out.push_str(&format!("==> {f}\nsysfs {f}\n\n"));
            }
        }
        out.push_str(&format!(
            "==> dmidecode\n{}\n==> dmidecode exit\n0\n",
            include_str!("../fixtures/dell-poweredge-m630/dmidecode.txt")
        ));
        let data = run(&out);
        assert_eq!(data["facts"]["manufacturer"], "sysfs sys_vendor");
        assert_eq!(data["facts"]["chassis_serial"], "4242");
        assert_eq!(data["facts"]["bios_version"], "1.2.5");
        assert_eq!(data["facts"]["chassis_asset_tag"], Value::Null);
        assert!(data["reasons"]["chassis_asset_tag"]
            .as_str()
            .is_some_and(|r| r.contains("placeholder")));
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
        assert_eq!(facts["baseboard_product"], "0PHY8D");
        assert_eq!(facts["chassis_serial"], "4242");
        assert_eq!(facts["bios_version"], "1.2.5");
        assert_eq!(
            data["identity"],
            json!({"serial": "4242", "system_uuid": "4c4c4544-0036-3210-805a-b7c04f4d3632"})
        );
        assert_eq!(
            data["reasons"],
            json!({"chassis_asset_tag": "chassis_asset_tag holds a placeholder (\"Not Specified\")"})
        );
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
        assert_eq!(facts["chassis_asset_tag"], Value::Null, "No Asset Tag");
        assert_eq!(facts["bios_vendor"], "Phoenix Technologies LTD");
        assert_eq!(
            data["identity"]["system_uuid"],
            "9aee1a42-138e-e5ee-fcec-823dcd747694"
        );
        // The same values as dmidecode's (facter's recording of the same machine).
        let from_dmidecode = run(&no_sysfs_with_dmidecode(include_str!(
            "../fixtures/vmware-vm/dmidecode.txt"
        )));
        for (k, v) in data["facts"].as_object().expect("facts") {
            assert_eq!(&from_dmidecode["facts"][k], v, "{k}");
        }
    }

    #[test]
    fn non_root_gets_vendor_and_product_but_no_serial() {
        let data = run(include_str!(
            "../fixtures/vmware-vm-non-root/script-adapted.out"
        ));
        assert_eq!(data["facts"]["manufacturer"], "VMware, Inc.");
        assert_eq!(data["facts"]["bios_version"], "6.00");
        assert_eq!(data["facts"]["serial"], Value::Null);
        assert_eq!(data["facts"]["uuid"], Value::Null);
        assert_eq!(
            data["reasons"]["serial"],
            "product_serial: permission denied: needs root; board_serial: permission denied: needs root; \
             dmidecode: permission denied: needs root (or the option sudo = true)"
        );
        // Not readable: no identity hint at all (unknown, not "none").
        assert_eq!(data.get("identity"), None, "{data}");
    }

    #[test]
    fn placeholders_are_null_with_a_reason() {
        let mut out = "==> sys_vendor\nTo Be Filled By O.E.M.\n\n==> board_vendor\nASRockRack\n\n==> product_serial\nTo Be Filled By O.E.M.\n\n==> board_serial\nDefault string\n\n==> product_uuid\n03000200-0400-0500-0006-000700080009\n\n".to_string();
        for f in FILES {
            if !out.contains(&format!("==> {f}\n")) {
                out.push_str(&format!("==> {f}\nNot Specified\n\n"));
            }
        }
        let data = run(&out);
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
    fn placeholders_read_in_sysfs_are_looked_at_whatever_dmidecode_says() {
        // Synthetic: sysfs read, serials are placeholders, a BIOS file missing made the script
        // run dmidecode, which a normal user may not run: the serial is still known absent.
        let mut out = String::new();
        for f in FILES {
            match f {
                "bios_date" => out.push_str("=!> bios_date missing\n"),
                "product_serial" | "board_serial" => {
                    out.push_str(&format!("==> {f}\nTo Be Filled By O.E.M.\n\n"))
                }
                _ => out.push_str(&format!("==> {f}\nvalue of {f}\n\n")),
            }
        }
        out.push_str("==> dmidecode\n/dev/mem: Permission denied\n==> dmidecode exit\n1\n");
        let data = run(&out);
        // Declared, as null (absent from `identity` would mean "did not look").
        assert_eq!(data["identity"].get("serial"), Some(&Value::Null), "{data}");
        assert_eq!(data["identity"]["system_uuid"], "value of product_uuid");
        assert!(data["reasons"]["bios_date"]
            .as_str()
            .is_some_and(|r| r.contains("bios_date: missing; dmidecode: permission denied")));
    }

    #[test]
    fn sudo_option_reads_with_sudo() {
        assert!(script(true).contains("sudo -n cat"));
        assert!(script(true).contains("sudo -n dmidecode -t 0,1,2,3"));
        assert!(!script(false).contains("sudo"));
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

    /// `dmidecode -s KEYWORD` on this machine, where it answers.
    fn dmidecode_s(keyword: &str) -> Option<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} dmidecode -s {keyword}", dmidecode::PATH_PREFIX))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
        // Parity with dmidecode, an independent reader of the same table, for every fact it
        // names (where it answers: root and an SMBIOS table).
        let mut compared = 0;
        for (field, keyword) in [
            ("manufacturer", "system-manufacturer"),
            ("product", "system-product-name"),
            ("serial", "system-serial-number"),
            ("uuid", "system-uuid"),
            ("baseboard_manufacturer", "baseboard-manufacturer"),
            ("baseboard_product", "baseboard-product-name"),
            ("baseboard_serial", "baseboard-serial-number"),
            ("chassis_serial", "chassis-serial-number"),
            ("chassis_asset_tag", "chassis-asset-tag"),
            ("bios_vendor", "bios-vendor"),
            ("bios_version", "bios-version"),
            ("bios_date", "bios-release-date"),
        ] {
            let Some(v) = dmidecode_s(keyword) else {
                continue;
            };
            compared += 1;
            if is_placeholder(&v) {
                // manufacturer/product/serial fall back to the baseboard's.
                if !["manufacturer", "product", "serial"].contains(&field) {
                    assert_eq!(data["facts"][field], Value::Null, "{field}");
                }
            } else if field == "uuid" {
                assert_eq!(data["facts"][field], v.to_ascii_lowercase().as_str());
            } else {
                assert_eq!(data["facts"][field], v.as_str(), "{field}");
            }
        }
        println!("compared {compared} facts with dmidecode -s");
        if !dir.exists() && compared == 0 {
            for (field, _, _) in FIELDS {
                assert_eq!(data["facts"][field], Value::Null, "{field}");
                assert!(
                    data["reasons"][field]
                        .as_str()
                        .is_some_and(|r| r.starts_with("no SMBIOS/DMI in sysfs")),
                    "{data}"
                );
            }
            return;
        }
        // Each sysfs fact is the first readable, meaningful file of its sources.
        for (field, files, _) in FIELDS {
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
                    assert!(data["reasons"][field].is_string() || !data["facts"][field].is_null())
                }
            }
        }
    }
}
