//! The `memory` collector: total memory and the installed memory modules.
//!
//! Two round trips to the target: a read of `/proc/meminfo` (`MemTotal`, the memory the kernel
//! manages: a little less than what is installed) and `dmidecode -t 17` (SMBIOS memory devices).
//!
//! Its data (report schema 2): the fact `total_bytes`, and the part list `modules` keyed by the
//! module's location (`["bank", "slot"]`): a part's id is `BANK/SLOT` when dmidecode names both
//! (`BANK 0/DIMM 0`), else the slot (`A1`), else the bank; its attributes are `slot`, `bank`,
//! `size_bytes`, `type`, `speed_mts`, `manufacturer` and `serial`.
//!
//! dmidecode needs root, an SMBIOS table and the tool itself. When any of these is missing the
//! collection still succeeds: the list is `{"unavailable": why}` (never an empty list: the modules
//! are unknown, not gone), e.g. `dmidecode not installed`, `permission denied: needs root`,
//! `no SMBIOS/DMI on this machine`; `reasons.modules` says the same.
//! With the option `{ "sudo": true }` the collector runs `sudo -n dmidecode -t 17` (a NOPASSWD rule
//! for dmidecode is then needed; `-n` never waits for a password).
//!
//! Rules for modules: empty slots (`No Module Installed`, size 0) are skipped; sizes are bytes
//! (dmidecode's `MB`/`GB` are binary units); the speed is the module's rated speed in MT/s (older
//! dmidecode prints it as MHz, the same number); placeholder texts (`Not Specified`, `Unknown`,
//! `SerNum0`, ...) become `null`; the slot is the `Locator`, the bank the `Bank Locator`. Two
//! modules that would share an id (a BIOS that names no bank and repeats a locator) are told apart
//! by ` #2`, ` #3`, ... in the order dmidecode lists them.
//!
//! Errors: bad options, or nothing at all could be read (no `/proc/meminfo` and no module).

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Output, Target,
};

const MEMINFO: &str = "/proc/meminfo";
/// Non-root logins often lack the sbin directories on PATH.
const DMIDECODE: &str = "PATH=\"$PATH:/usr/sbin:/sbin\" dmidecode -t 17";
const DMIDECODE_SUDO: &str = "sudo -n dmidecode -t 17";
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// One installed memory module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Unique among the modules: `BANK/SLOT`, else the slot, else the bank.
    pub id: String,
    /// The `Locator`.
    pub slot: Option<String>,
    /// The `Bank Locator`.
    pub bank: Option<String>,
    pub size_bytes: u64,
    pub kind: Option<String>,
    pub speed_mts: Option<u64>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
}

impl Module {
    fn to_json(&self) -> Value {
        json!({
            "slot": self.slot,
            "bank": self.bank,
            "size_bytes": self.size_bytes,
            "type": self.kind,
            "speed_mts": self.speed_mts,
            "manufacturer": self.manufacturer,
            "serial": self.serial,
        })
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let factor = match words.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(factor)
}

/// Texts BIOSes put where they have nothing to say.
fn meaningful(value: &str) -> Option<String> {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    let placeholder = v.is_empty()
        || matches!(
            lower.as_str(),
            "not specified"
                | "unknown"
                | "none"
                | "no dimm"
                | "undefined"
                | "empty"
                | "[empty]"
                | "not installed"
                | "not available"
                | "<out of spec>"
                | "other"
                | "n/a"
        )
        || v.chars().all(|c| c == '0')
        || v.chars().all(|c| c == 'F' || c == 'f')
        // AMI's defaults: SerNum0, Manufacturer01, PartNum2, ...
        || ["sernum", "manufacturer", "partnum", "assettagnum"]
            .iter()
            .any(|p| {
                lower
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
            });
    (!placeholder).then(|| v.to_string())
}

/// `16384 MB`, `32 GB`, `512 kB` as bytes (binary units, as dmidecode means them). `None` for an
/// empty slot or anything else.
pub fn parse_size(value: &str) -> Option<u64> {
    let mut words = value.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    let shift = match words.next()? {
        "bytes" => 0,
        "kB" | "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift).filter(|b| *b > 0)
}

/// `2666 MT/s` or (older dmidecode) `2133 MHz`.
pub fn parse_speed(value: &str) -> Option<u64> {
    let mut words = value.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    matches!(words.next()?, "MT/s" | "MHz")
        .then_some(n)
        .filter(|n| *n > 0)
}

/// The `Memory Device` records of dmidecode's output, each as its `key: value` lines.
fn memory_devices(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut devices = Vec::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    let mut header_next = false;
    for line in text.lines() {
        if line.starts_with("Handle ") {
            devices.extend(current.take());
            header_next = true;
            continue;
        }
        if header_next {
            header_next = false;
            if line.trim() == "Memory Device" {
                current = Some(BTreeMap::new());
            }
            continue;
        }
        if let Some(record) = current.as_mut() {
            // Values are one tab deep; list items (two tabs) belong to the key above: skip them.
            if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue;
                }
                if let Some((k, v)) = rest.split_once(':') {
                    record.insert(k.trim().to_string(), v.trim().to_string());
                }
            } else if line.trim().is_empty() {
                devices.extend(current.take());
            }
        }
    }
    devices.extend(current);
    devices
}

/// The installed modules of a `dmidecode -t 17` output; empty slots are skipped.
pub fn parse_dmidecode_memory(text: &str) -> Vec<Module> {
    let records: Vec<_> = memory_devices(text)
        .into_iter()
        .filter_map(|r| {
            let size_bytes = r.get("Size").and_then(|s| parse_size(s))?;
            Some((r, size_bytes))
        })
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    records
        .iter()
        .enumerate()
        .map(|(i, (r, size_bytes))| {
            let slot = r.get("Locator").and_then(|l| meaningful(l));
            let bank = r.get("Bank Locator").and_then(|b| meaningful(b));
            let id = match (&bank, &slot) {
                (Some(b), Some(l)) => format!("{b}/{l}"),
                (None, Some(l)) => l.clone(),
                (Some(b), None) => b.clone(),
                (None, None) => format!("module {i}"),
            };
            let n = seen.entry(id.clone()).or_default();
            *n += 1;
            let id = if *n > 1 { format!("{id} #{n}") } else { id };
            Module {
                id,
                slot,
                bank,
                size_bytes: *size_bytes,
                kind: r.get("Type").and_then(|t| meaningful(t)),
                speed_mts: r.get("Speed").and_then(|s| parse_speed(s)),
                manufacturer: r.get("Manufacturer").and_then(|m| meaningful(m)),
                serial: r.get("Serial Number").and_then(|s| meaningful(s)),
            }
        })
        .collect()
}

/// Why dmidecode gave no modules, from what it printed; `None` when it worked.
pub fn dmidecode_failure(out: &Output) -> Option<String> {
    let text = format!("{}\n{}", out.stderr, out.stdout);
    let first_error = out
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    if out.exit_code == Some(127)
        || text.contains("command not found")
        || text.contains("dmidecode: not found")
    {
        return Some("dmidecode not installed".into());
    }
    if text.contains("a password is required") || text.contains("sudo: a terminal is required") {
        return Some(format!(
            "permission denied: sudo needs a password for dmidecode ({first_error})"
        ));
    }
    if text.contains("Permission denied") || text.contains("Operation not permitted") {
        return Some("permission denied: needs root (or the option sudo = true)".into());
    }
    if text.contains("No SMBIOS nor DMI entry point found")
        || text.contains("/dev/mem: No such file or directory")
    {
        return Some("no SMBIOS/DMI on this machine".into());
    }
    if !out.success() {
        let status = out
            .exit_code
            .map_or("a signal".to_string(), |c| format!("exit code {c}"));
        return Some(format!("dmidecode failed with {status}: {first_error}"));
    }
    None
}

fn sudo_option(options: &Value) -> Result<bool, CollectError> {
    match options.get("sudo") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(CollectError::new(
            "bad_options",
            format!("option sudo must be true or false, not {other}"),
        )),
    }
}

/// Collects total memory and modules with one file read and one command.
pub fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let command = if sudo_option(options)? {
        DMIDECODE_SUDO
    } else {
        DMIDECODE
    };
    let mut data = Data::new();

    let total_bytes = match target.read_to_string(MEMINFO) {
        Ok(text) => {
            let total = parse_meminfo_total(&text);
            if total.is_none() {
                data.reason("total_bytes", format!("{MEMINFO} has no MemTotal line"));
            }
            total
        }
        Err(e) => {
            data.reason("total_bytes", format!("{MEMINFO}: {e}"));
            None
        }
    };
    data.fact("total_bytes", total_bytes);

    let (modules, unavailable) = match target.run(command, TIMEOUT) {
        Ok(out) => match dmidecode_failure(&out) {
            Some(why) => (Vec::new(), Some(why)),
            None => {
                let modules = parse_dmidecode_memory(&out.stdout);
                let why = modules
                    .is_empty()
                    .then(|| "dmidecode lists no installed memory module".to_string());
                (modules, why)
            }
        },
        Err(e) => (Vec::new(), Some(format!("dmidecode: {e}"))),
    };
    match &unavailable {
        Some(why) => {
            data.unavailable("modules", why.clone())
                .reason("modules", why.clone());
        }
        None => {
            let list = data.list("modules", &["bank", "slot"]);
            for m in &modules {
                list.part(m.id.clone(), m.to_json());
            }
        }
    }

    if total_bytes.is_none() && modules.is_empty() {
        let why: Vec<String> = data
            .reasons()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect();
        return Err(CollectError::new(
            "unavailable",
            format!("no memory fact could be read ({})", why.join("; ")),
        ));
    }

    data.build()
}

export_collector!(
    name = "memory",
    description = "total memory and installed memory modules (dmidecode)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn meminfo_vm() -> &'static str {
        include_str!("../fixtures/firecracker-vm/meminfo")
    }

    fn run(exec: FixtureExecutor, options: Value) -> Result<Value, CollectError> {
        exec.with_target(|t| collect(t, &options))
    }

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(fixture(case).join(file)).expect("fixture")
    }

    /// Every recorded case, as the collector sees it (the firecracker VM's meminfo for the cases
    /// that recorded only dmidecode).
    fn cases() -> Vec<(&'static str, FixtureExecutor)> {
        let vm = |name: &str| FixtureExecutor::new(name).file(MEMINFO, meminfo_vm());
        vec![
            (
                "dell-poweredge-ddr4",
                vm("dell").command(DMIDECODE, &read("dell-poweredge-ddr4", "dmidecode.txt")),
            ),
            (
                "dell-poweredge-m630",
                vm("m630").command(
                    DMIDECODE,
                    &read("dell-poweredge-m630", "dmidecode-excerpt.txt"),
                ),
            ),
            (
                "firecracker-vm",
                vm("vm").command_output(
                    DMIDECODE,
                    &read("firecracker-vm", "dmidecode-t17.stdout"),
                    &read("firecracker-vm", "dmidecode-t17.stderr"),
                    Some(1),
                ),
            ),
            (
                "non-root",
                vm("vm").command_output(
                    DMIDECODE,
                    &read("non-root", "dmidecode.stdout"),
                    &read("non-root", "dmidecode.stderr"),
                    Some(1),
                ),
            ),
        ]
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, exec) in cases() {
            let data = run(exec, json!({})).expect("collects");
            plugin_api::testing::golden(fixture(case), &data);
        }
    }

    fn modules(data: &Value) -> &Vec<Value> {
        data["lists"]["modules"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("a seen list: {data}"))
    }

    fn unavailable(data: &Value) -> &Value {
        assert_eq!(
            data["reasons"]["modules"],
            data["lists"]["modules"]["unavailable"]
        );
        &data["lists"]["modules"]["unavailable"]
    }

    #[test]
    fn dell_poweredge_eight_ddr4_dimms() {
        let exec = FixtureExecutor::new("dell")
            .file(MEMINFO, meminfo_vm())
            .command(
                DMIDECODE,
                include_str!("../fixtures/dell-poweredge-ddr4/dmidecode.txt"),
            );
        let data = run(exec, json!({})).expect("collects");
        let modules = modules(&data);
        assert_eq!(modules.len(), 8, "{data}");
        assert_eq!(data["lists"]["modules"]["key"], json!(["bank", "slot"]));
        assert!(modules.iter().all(|m| m["size_bytes"] == 32 * GIB));
        assert!(modules.iter().all(|m| m["type"] == "DDR4"));
        assert!(modules.iter().all(|m| m["speed_mts"] == 3200));
        assert_eq!(modules[0]["id"], "A1");
        assert_eq!(modules[0]["slot"], "A1");
        assert_eq!(modules[0]["bank"], Value::Null, "Not Specified");
        assert_eq!(modules[0]["serial"], "29DE07DF");
        assert_eq!(modules[0]["manufacturer"], "002C0632002C");
        let slots: Vec<_> = modules.iter().map(|m| m["slot"].as_str()).collect();
        assert!(!slots.contains(&Some("A3")), "empty slot A3 is skipped");
        assert_eq!(data["facts"]["total_bytes"], 24_683_656u64 * 1024);
        assert_eq!(data["reasons"], json!({}));
    }

    #[test]
    fn dell_m630_old_dmidecode_mhz_and_mb() {
        let modules = parse_dmidecode_memory(include_str!(
            "../fixtures/dell-poweredge-m630/dmidecode-excerpt.txt"
        ));
        assert_eq!(modules.len(), 4);
        let first = &modules[0];
        assert_eq!(first.id, "A1");
        assert_eq!(first.slot.as_deref(), Some("A1"));
        assert_eq!(first.size_bytes, 8 * GIB);
        assert_eq!(first.speed_mts, Some(2133));
        // dmidecode 2.12 did not know DDR4 yet: `<OUT OF SPEC>`.
        assert_eq!(first.kind, None);
        assert_eq!(first.manufacturer.as_deref(), Some("00CE063200CE"));
        // The dump was anonymised to serial 4242 by its publisher.
        assert_eq!(first.serial.as_deref(), Some("4242"));
    }

    #[test]
    fn this_vm_has_no_dmi_real_output() {
        let exec = FixtureExecutor::new("vm")
            .file(MEMINFO, meminfo_vm())
            .command_output(
                DMIDECODE,
                include_str!("../fixtures/firecracker-vm/dmidecode-t17.stdout"),
                include_str!("../fixtures/firecracker-vm/dmidecode-t17.stderr"),
                Some(1),
            );
        let data = run(exec, json!({})).expect("collects");
        assert_eq!(data["facts"]["total_bytes"], 24_683_656u64 * 1024);
        assert_eq!(unavailable(&data), "no SMBIOS/DMI on this machine");
        assert_eq!(
            data["lists"]["modules"],
            json!({"unavailable": "no SMBIOS/DMI on this machine"}),
            "never an empty list"
        );
    }

    #[test]
    fn dmidecode_not_installed() {
        // The fixture executor answers an unknown command like sh does: exit 127, "not found".
        let exec = FixtureExecutor::new("vm").file(MEMINFO, meminfo_vm());
        let data = run(exec, json!({})).expect("collects");
        assert_eq!(unavailable(&data), "dmidecode not installed");
        assert!(data["facts"]["total_bytes"].as_u64().is_some());
    }

    #[test]
    fn dmidecode_as_non_root() {
        let exec = FixtureExecutor::new("vm")
            .file(MEMINFO, meminfo_vm())
            .command_output(
                DMIDECODE,
                include_str!("../fixtures/non-root/dmidecode.stdout"),
                include_str!("../fixtures/non-root/dmidecode.stderr"),
                Some(1),
            );
        let data = run(exec, json!({})).expect("collects");
        assert_eq!(
            unavailable(&data),
            "permission denied: needs root (or the option sudo = true)"
        );
    }

    #[test]
    fn sudo_option_runs_sudo_and_reports_a_password_prompt() {
        let exec = FixtureExecutor::new("vm")
            .file(MEMINFO, meminfo_vm())
            .command_output(
                DMIDECODE_SUDO,
                "",
                "sudo: a password is required\n",
                Some(1),
            );
        let data = run(exec, json!({ "sudo": true })).expect("collects");
        let why = unavailable(&data).as_str().unwrap_or_default();
        assert!(
            why.starts_with("permission denied: sudo needs a password"),
            "{why}"
        );
        let err = run(FixtureExecutor::new("vm"), json!({ "sudo": "yes" })).expect_err("bad");
        assert_eq!(err.kind, "bad_options");
    }

    #[test]
    fn nothing_readable_is_an_error() {
        let err = run(FixtureExecutor::new("vm"), json!({})).expect_err("nothing");
        assert_eq!(err.kind, "unavailable");
    }

    #[test]
    fn ids_are_bank_and_slot_and_unique() {
        let text = "Handle 0x0011, DMI type 17, 40 bytes\nMemory Device\n\tSize: 8 GB\n\tLocator: DIMM 0\n\tBank Locator: BANK 0\n\nHandle 0x0012, DMI type 17, 40 bytes\nMemory Device\n\tSize: 8 GB\n\tLocator: DIMM 0\n\tBank Locator: BANK 2\n";
        let ids: Vec<_> = parse_dmidecode_memory(text)
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["BANK 0/DIMM 0", "BANK 2/DIMM 0"]);
        // No bank, the same locator twice (synthetic): the ids stay unique.
        let text = "Handle 0x0011, DMI type 17, 40 bytes\nMemory Device\n\tSize: 8 GB\n\tLocator: DIMM 0\n\nHandle 0x0012, DMI type 17, 40 bytes\nMemory Device\n\tSize: 8 GB\n\tLocator: DIMM 0\n";
        let modules = parse_dmidecode_memory(text);
        let ids: Vec<_> = modules.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["DIMM 0", "DIMM 0 #2"]);
        assert_eq!(modules[1].slot.as_deref(), Some("DIMM 0"));
        assert_eq!(modules[1].bank, None);
    }

    #[test]
    fn placeholders_are_null() {
        assert_eq!(meaningful("Not Specified"), None);
        assert_eq!(meaningful("SerNum0"), None);
        assert_eq!(meaningful("00000000"), None);
        assert_eq!(meaningful("29DE07DF").as_deref(), Some("29DE07DF"));
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-memory -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_file(MEMINFO)
            .record_command(DMIDECODE)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        let meminfo = std::fs::read_to_string(MEMINFO).expect("meminfo");
        assert_eq!(
            data["facts"]["total_bytes"].as_u64(),
            parse_meminfo_total(&meminfo)
        );
        // Modules seen (root on a machine with SMBIOS), or unavailable with a reason: never `[]`.
        let list = &data["lists"]["modules"];
        match list.get("unavailable") {
            Some(why) => assert_eq!(&data["reasons"]["modules"], why),
            None => assert!(modules(&data)
                .iter()
                .all(|m| m["size_bytes"].as_u64() > Some(0))),
        }
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
    }
}
