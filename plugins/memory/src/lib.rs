//! The `memory` collector: total memory and the installed memory modules.
//!
//! Two round trips to the target: a read of `/proc/meminfo` (`MemTotal`, the memory the kernel
//! manages: a little less than what is installed) and `dmidecode -t 16,17` (SMBIOS physical
//! memory arrays and memory devices).
//!
//! Its data (report schema 2): the facts `total_bytes`, `slot_count` (the type-17 entries of
//! system-memory arrays, empty slots included), `populated_slot_count` (those holding a module)
//! and `max_capacity_bytes` (the sum of the `Maximum Capacity` of the type-16 arrays used as
//! system memory: what the board takes when every slot is filled), and the part list `modules`
//! keyed by the module's location (`["bank", "slot"]`): a part's id is `BANK/SLOT` when dmidecode
//! names both (`BANK 0/DIMM 0`), else the slot (`A1`), else the bank; its attributes are `slot`,
//! `bank`, `size_bytes`, `type`, `speed_mts`, `manufacturer`, `serial` and `part_number`. Empty
//! slots are counted, never parts. Where dmidecode gives nothing, the three slot facts are `null`
//! with the same reason as the list; an output without type 16 leaves `max_capacity_bytes` null
//! with its reason.
//!
//! dmidecode needs root, an SMBIOS table and the tool itself. When any of these is missing the
//! collection still succeeds: the list is `{"unavailable": why}` (never an empty list: the modules
//! are unknown, not gone), e.g. `dmidecode not installed`, `permission denied: needs root`,
//! `no SMBIOS/DMI on this machine`; `reasons.modules` says the same.
//! With the option `{ "sudo": true }` the collector runs `sudo -n dmidecode -t 16,17` (a NOPASSWD rule
//! for dmidecode is then needed; `-n` never waits for a password).
//!
//! Rules for modules: empty slots (`No Module Installed`, size 0) are skipped; sizes are bytes
//! (dmidecode's `MB`/`GB` are binary units); the speed is the module's rated speed in MT/s (older
//! dmidecode prints it as MHz, the same number); placeholder texts (`Not Specified`, `Unknown`,
//! `SerNum0`, `PartNum0`, ...) become `null`; the slot is the `Locator`, the bank the `Bank Locator`. Two
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

/// dmidecode's records, shared with the board and cpu collectors.
#[path = "../../board/src/dmidecode.rs"]
#[allow(dead_code)]
mod dmidecode;

const MEMINFO: &str = "/proc/meminfo";
/// Non-root logins often lack the sbin directories on PATH.
/// dmidecode where an SMBIOS entry point exists (see `dmidecode::if_smbios`, whose text this is:
/// checked by a test); elsewhere its "no SMBIOS" answer without a process start.
const DMIDECODE: &str = "if [ -e /sys/firmware/dmi/tables/smbios_entry_point ] || \
[ -e /sys/firmware/efi/systab ] || [ -e /proc/efi/systab ] || [ -e /dev/mem ]; \
then PATH=\"$PATH:/usr/sbin:/sbin\" dmidecode -t 16,17; \
else echo 'no SMBIOS entry point (no kernel DMI table, EFI systab or /dev/mem)'; exit 1; fi";
const DMIDECODE_SUDO: &str = "sudo -n dmidecode -t 16,17";
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
    pub part_number: Option<String>,
}

/// The slots and array capacity of a dmidecode output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// Type-17 entries (of system-memory arrays where the output says which array is which).
    pub count: u64,
    /// Those holding a module.
    pub populated: u64,
    /// The summed `Maximum Capacity` of the system-memory arrays; `None` without type 16.
    pub max_capacity_bytes: Option<u64>,
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
            "part_number": self.part_number,
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

/// The `Memory Device` (type 17) records of dmidecode's output, each as its `key: value` lines.
fn memory_devices(text: &str) -> Vec<BTreeMap<String, String>> {
    dmidecode::records(text)
        .into_iter()
        .filter(|r| r.kind == 17)
        .map(|r| r.fields)
        .collect()
}

/// The system-memory arrays (type 16 with `Use: System Memory`, or any use where it says none)
/// of a dmidecode output: handle and maximum capacity in bytes.
fn memory_arrays(text: &str) -> Vec<(String, Option<u64>)> {
    dmidecode::records(text)
        .into_iter()
        .filter(|r| r.kind == 16)
        .filter(|r| r.get("Use").is_none_or(|u| u == "System Memory"))
        .map(|r| {
            let handle = r.handle.clone();
            (handle, r.get("Maximum Capacity").and_then(parse_size))
        })
        .collect()
}

/// Slots, populated slots and maximum capacity of a `dmidecode -t 16,17` output.
pub fn parse_slots(text: &str) -> Slots {
    let arrays = memory_arrays(text);
    let devices: Vec<_> = dmidecode::records(text)
        .into_iter()
        .filter(|r| r.kind == 17)
        .filter(|r| {
            // A device of a non-system array (flash, video) is no DIMM slot.
            arrays.is_empty()
                || r.get("Array Handle")
                    .is_none_or(|h| arrays.iter().any(|(a, _)| a.eq_ignore_ascii_case(h)))
        })
        .collect();
    let populated = devices
        .iter()
        .filter(|d| d.get("Size").and_then(parse_size).is_some())
        .count();
    let max_capacity_bytes = (!arrays.is_empty())
        .then(|| arrays.iter().map(|(_, c)| *c).sum::<Option<u64>>())
        .flatten();
    Slots {
        count: devices.len() as u64,
        populated: populated as u64,
        max_capacity_bytes,
    }
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
                part_number: r.get("Part Number").and_then(|p| meaningful(p)),
            }
        })
        .collect()
}

/// Why dmidecode gave no modules, from what it printed; `None` when it worked.
pub fn dmidecode_failure(out: &Output) -> Option<String> {
    dmidecode::failure(&format!("{}\n{}", out.stderr, out.stdout), out.exit_code)
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

    let (modules, slots, unavailable) = match target.run(command, TIMEOUT) {
        Ok(out) => match dmidecode_failure(&out) {
            Some(why) => (Vec::new(), None, Some(why)),
            None => {
                let modules = parse_dmidecode_memory(&out.stdout);
                let slots = parse_slots(&out.stdout);
                let why = modules
                    .is_empty()
                    .then(|| "dmidecode lists no installed memory module".to_string());
                (modules, Some(slots), why)
            }
        },
        Err(e) => (Vec::new(), None, Some(format!("dmidecode: {e}"))),
    };
    match &slots {
        Some(s) if s.count > 0 => {
            data.fact("slot_count", s.count)
                .fact("populated_slot_count", s.populated);
        }
        _ => {
            let why = match (&unavailable, &slots) {
                (Some(why), None) => why.clone(),
                _ => "dmidecode lists no memory device (type 17)".to_string(),
            };
            data.fact("slot_count", Value::Null)
                .fact("populated_slot_count", Value::Null)
                .reason("slot_count", why.clone())
                .reason("populated_slot_count", why);
        }
    }
    match (&slots, &unavailable) {
        (
            Some(Slots {
                max_capacity_bytes: Some(c),
                ..
            }),
            _,
        ) => {
            data.fact("max_capacity_bytes", *c);
        }
        (Some(_), _) => {
            data.fact("max_capacity_bytes", Value::Null).reason(
                "max_capacity_bytes",
                "dmidecode lists no system memory array (type 16) with a maximum capacity",
            );
        }
        (None, why) => {
            data.fact("max_capacity_bytes", Value::Null)
                .reason("max_capacity_bytes", why.clone().unwrap_or_default());
        }
    }
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

    #[test]
    fn dmidecode_runs_only_where_an_smbios_entry_point_exists() {
        assert_eq!(
            DMIDECODE,
            dmidecode::if_smbios("PATH=\"$PATH:/usr/sbin:/sbin\" dmidecode -t 16,17")
        );
        // Where none exists (a VM or container without DMI): dmidecode's own answer, no process.
        let data = FixtureExecutor::new("t")
            .file(MEMINFO, "MemTotal:        1024 kB\n")
            .command_output(
                DMIDECODE,
                &format!("{}\n", dmidecode::NO_ENTRY_POINT),
                "",
                Some(1),
            )
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(
            data["reasons"]["slot_count"],
            "no SMBIOS/DMI on this machine"
        );
        assert_eq!(
            data["lists"]["modules"]["unavailable"],
            "no SMBIOS/DMI on this machine"
        );
    }

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
                vm("m630").command(DMIDECODE, &read("dell-poweredge-m630", "dmidecode.txt")),
            ),
            (
                "supermicro-sys-6018r",
                vm("sm").command(DMIDECODE, &read("supermicro-sys-6018r", "dmidecode.txt")),
            ),
            (
                "hp-proliant-m710x",
                vm("hp").command(DMIDECODE, &read("hp-proliant-m710x", "dmidecode.txt")),
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
        assert_eq!(modules[0]["part_number"], "36ASF4G72PZ-3G2J3");
        assert_eq!(data["facts"]["slot_count"], 24);
        assert_eq!(data["facts"]["populated_slot_count"], 8);
        // The recording holds no type 16.
        assert_eq!(
            data["reasons"],
            json!({"max_capacity_bytes": "dmidecode lists no system memory array (type 16) with a maximum capacity"})
        );
    }

    #[test]
    fn dell_m630_old_dmidecode_mhz_and_mb() {
        let modules = parse_dmidecode_memory(include_str!(
            "../fixtures/dell-poweredge-m630/dmidecode.txt"
        ));
        // The full dump: 8 of 24 slots hold a module.
        assert_eq!(modules.len(), 8);
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
        // dmidecode pads it with blanks.
        assert_eq!(first.part_number.as_deref(), Some("M393A1G43DB0-CPB"));
        let slots = parse_slots(include_str!(
            "../fixtures/dell-poweredge-m630/dmidecode.txt"
        ));
        assert_eq!(
            slots,
            Slots {
                count: 24,
                populated: 8,
                max_capacity_bytes: Some(1536 * GIB)
            }
        );
    }

    #[test]
    fn supermicro_two_arrays_capacity_summed_empty_slots_counted() {
        let exec = FixtureExecutor::new("sm")
            .file(MEMINFO, meminfo_vm())
            .command(
                DMIDECODE,
                include_str!("../fixtures/supermicro-sys-6018r/dmidecode.txt"),
            );
        let data = run(exec, json!({})).expect("collects");
        assert_eq!(data["facts"]["slot_count"], 8);
        assert_eq!(data["facts"]["populated_slot_count"], 4);
        assert_eq!(data["facts"]["max_capacity_bytes"], 512 * GIB);
        let modules = modules(&data);
        assert_eq!(modules.len(), 4, "empty slots are not parts");
        assert_eq!(modules[0]["part_number"], "HMA42GR7AFR4N-UH");
        assert_eq!(modules[0]["id"], "P0_Node0_Channel0_Dimm0/P1-DIMMA1");
    }

    #[test]
    fn hp_cartridge_part_numbers_and_a_full_board() {
        let exec = FixtureExecutor::new("hp")
            .file(MEMINFO, meminfo_vm())
            .command(
                DMIDECODE,
                include_str!("../fixtures/hp-proliant-m710x/dmidecode.txt"),
            );
        let data = run(exec, json!({})).expect("collects");
        assert_eq!(data["facts"]["slot_count"], 4);
        assert_eq!(data["facts"]["populated_slot_count"], 4);
        assert_eq!(data["facts"]["max_capacity_bytes"], 64 * GIB);
        assert!(modules(&data)
            .iter()
            .all(|m| m["part_number"] == "853289-091"));
    }

    #[test]
    fn type_17_only_output_has_slots_but_no_capacity() {
        // The DDR4 Dell recording holds types 3, 7 and 17: no array.
        let slots = parse_slots(include_str!(
            "../fixtures/dell-poweredge-ddr4/dmidecode.txt"
        ));
        assert_eq!((slots.count, slots.populated), (24, 8));
        assert_eq!(slots.max_capacity_bytes, None);
        let part_numbers: Vec<_> = parse_dmidecode_memory(include_str!(
            "../fixtures/dell-poweredge-ddr4/dmidecode.txt"
        ))
        .into_iter()
        .map(|m| m.part_number)
        .collect();
        assert!(part_numbers
            .iter()
            .all(|p| p.as_deref() == Some("36ASF4G72PZ-3G2J3")));
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
        assert_eq!(data["facts"]["slot_count"], Value::Null);
        assert_eq!(
            data["reasons"]["slot_count"],
            "no SMBIOS/DMI on this machine"
        );
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
        // Parity with dmidecode's own text, counted with grep (not this crate's parser): slots,
        // populated slots and part numbers, where dmidecode answers (root and SMBIOS).
        let grep = |pipeline: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{} dmidecode -t 17 | {pipeline}",
                    dmidecode::PATH_PREFIX
                ))
                .output()
                .expect("sh");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        if data["lists"]["modules"].get("unavailable").is_none() {
            let slots: u64 = grep("grep -c '^Memory Device'").parse().expect("count");
            let populated: u64 = grep("grep -c '^\\tSize: [0-9]'").parse().expect("count");
            assert_eq!(data["facts"]["slot_count"], slots);
            assert_eq!(data["facts"]["populated_slot_count"], populated);
            assert_eq!(modules(&data).len() as u64, populated);
        } else {
            assert_eq!(data["facts"]["slot_count"], Value::Null);
            assert!(data["reasons"]["slot_count"].is_string());
            println!("dmidecode gives nothing here: slots compared as unavailable");
        }
    }
}
