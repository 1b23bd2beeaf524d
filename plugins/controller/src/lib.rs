//! The `controller` collector: the storage and network controllers on the PCI bus, with their
//! kernel driver and, where the kernel exports it, their firmware version.
//!
//! One round trip: one `sh` script (see [`SCRIPT`]) walks `/sys/bus/pci/devices` (class, ids,
//! revision, driver of each storage and network function), looks their names up in pci.ids with
//! one `awk`, and then prints `PCI-SLOT FIRMWARE` lines from what the kernel exports: `/sys/class/nvme/*/firmware_rev`
//! (NVMe), `/sys/class/scsi_host/*/{version_fw,fw_version,firmware_revision}` (SAS/RAID HBAs such
//! as mpt3sas and megaraid_sas) and `ethtool -i` (network, where ethtool is installed).
//!
//! Its data (report schema 2): the part list `controllers`, one part per PCI function of class
//! `01xx` (mass storage: SCSI, IDE, RAID, SATA, SAS, NVMe, ...) or `02xx` (network: Ethernet,
//! InfiniBand, ...), keyed by `["slot"]` (`02:00.0`). Attributes: `slot`, `kind` (`storage` or
//! `network`), `class` (`Non-Volatile memory controller`), `vendor`, `model`, `pci_id`
//! (`144d:a80a`), `subsystem_id` (`144d:aa0a`), `revision`, `driver` (the kernel driver in use)
//! and `firmware`. The section parser reads lspci's `-vmm` and `-mm` output too (the fixtures
//! recorded elsewhere are lspci outputs).
//!
//! Degrading: no `/sys/bus/pci` makes the list `unavailable` (not an error); no pci.ids leaves
//! `vendor` and `model` `null` (`reasons.controllers.model`); a controller whose firmware
//! the kernel does not export has `firmware` `null` and `reasons.controllers.firmware` says where it
//! was looked for. Errors: only when the script printed nothing at all.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

#[macro_use]
#[path = "../../gpu/src/lspci.rs"]
pub mod lspci;

/// The one command this collector runs. It walks `/sys/bus/pci/devices` with shell builtins only
/// (no process per device) and prints each storage or network function in `lspci -vmm -n`'s form
/// (`Driver:` is the driver link's target, found with `cd` and `pwd -P`); then the names of those
/// ids from pci.ids by one `awk` ([`lspci`]'s `pci_names!`, shared with `gpu`: about half the file
/// for a virtio or Intel machine). lspci itself parses the whole pci.ids (1.3 MB) on every run:
/// 100 ms of CPU here against 20 ms for the awk, and `collect` runs a dozen collectors at once.
/// Without `awk` there is no `names` section (ids only: awk is in every base system, so `reasons`
/// names pci.ids).
pub const SCRIPT: &str = concat!(
    "PATH=\"$PATH:/usr/sbin:/sbin\"; w=''; \
if [ -d /sys/bus/pci/devices ]; then printf '==> pci\\n'; else printf '=!> pci missing\\n'; fi; \
for d in /sys/bus/pci/devices/*; do [ -r \"$d/class\" ] || continue; read -r c < \"$d/class\"; \
case $c in 0x01*|0x02*) ;; *) continue;; esac; c=${c#0x}; \
read -r v < \"$d/vendor\"; read -r i < \"$d/device\"; v=${v#0x}; i=${i#0x}; \
printf 'Slot:\\t%s\\nClass:\\t%s\\nVendor:\\t%s\\nDevice:\\t%s\\n' \"${d##*/}\" \"${c%??}\" \"$v\" \"$i\"; \
if [ -r \"$d/subsystem_vendor\" ]; then read -r sv < \"$d/subsystem_vendor\"; read -r sd < \"$d/subsystem_device\"; \
printf 'SVendor:\\t%s\\nSDevice:\\t%s\\n' \"${sv#0x}\" \"${sd#0x}\"; fi; \
if [ -r \"$d/revision\" ]; then read -r r < \"$d/revision\"; printf 'Rev:\\t%s\\n' \"${r#0x}\"; fi; \
if cd \"$d/driver\" 2>/dev/null; then printf 'Driver:\\t'; pwd -P; cd /; fi; echo; w=\"$w $v:$i\"; done; \
",
    pci_names!(),
    "printf '==> firmware\\n'; \
for d in /sys/class/nvme/*; do [ -r \"$d/firmware_rev\" ] || continue; \
s=$(readlink -f \"$d/device\"); read -r v < \"$d/firmware_rev\"; printf '%s %s\\n' \"${s##*/}\" \"$v\"; done; \
for h in /sys/class/scsi_host/*; do for f in version_fw fw_version firmware_revision; do \
[ -r \"$h/$f\" ] || continue; s=$(readlink -f \"$h/device\"); s=${s%/*}; read -r v < \"$h/$f\"; \
printf '%s %s\\n' \"${s##*/}\" \"$v\"; break; done; done; \
if command -v ethtool >/dev/null 2>&1; then for n in /sys/class/net/*; do [ -e \"$n/device\" ] || continue; \
s=$(readlink -f \"$n/device\"); v=$(ethtool -i \"${n##*/}\" 2>/dev/null | sed -n 's/^firmware-version: //p'); \
[ -n \"$v\" ] && printf '%s %s\\n' \"${s##*/}\" \"$v\"; done; fi; \
printf '==> end\\n'"
);

/// Below the host's default collector timeout (10 s).
const TIMEOUT: Duration = Duration::from_secs(8);

/// The firmware versions by short slot (`02:00.0`); placeholders (`N/A`, empty) skipped.
pub fn parse_firmware(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (slot, fw) = l.trim().split_once(' ')?;
            let fw = fw.trim();
            let placeholder = fw.is_empty() || fw.eq_ignore_ascii_case("n/a") || fw == "0";
            (!placeholder && slot.contains(':')).then(|| (lspci::short_slot(slot), fw.to_string()))
        })
        .collect()
}

/// `storage` for class 01xx, `network` for 02xx.
pub fn kind(class_id: &str) -> Option<&'static str> {
    match class_id.get(..2)? {
        "01" => Some("storage"),
        "02" => Some("network"),
        _ => None,
    }
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sections = batch::run(target, SCRIPT, TIMEOUT, "controller")?;
    let mut data = Data::new();
    let Some(Section::Content(text)) = sections.get("pci") else {
        let why = "no PCI bus to read: /sys/bus/pci/devices is missing";
        data.unavailable("controllers", why)
            .reason("controllers", why);
        return data.build();
    };
    let mut devices = lspci::parse(text);
    match sections.get("names") {
        Some(Section::Content(names)) => lspci::apply_names(&mut devices, names),
        _ => lspci::apply_names(&mut devices, ""),
    }
    if !devices.is_empty()
        && !sections.contains_key("names")
        && devices.iter().any(|d| d.device.is_none())
    {
        data.reason(
            "controllers.model",
            "no pci.ids on the target (/usr/share/misc, /usr/share/hwdata): ids only",
        );
    }
    let firmware = match sections.get("firmware") {
        Some(Section::Content(t)) => parse_firmware(t),
        _ => BTreeMap::new(),
    };
    let mut missing_firmware = false;
    let list = data.list("controllers", &["slot"]);
    for d in devices {
        let Some(k) = d.class_id.as_deref().and_then(kind) else {
            continue;
        };
        let fw = firmware.get(&d.short_slot()).cloned();
        missing_firmware |= fw.is_none();
        list.part(
            d.slot.clone(),
            json!({
                "slot": d.slot,
                "kind": k,
                "class": d.class,
                "vendor": d.vendor,
                "model": d.device,
                "pci_id": d.pci_id(),
                "subsystem_id": d.subsystem_id(),
                "revision": d.revision,
                "driver": d.driver,
                "firmware": fw,
            }),
        );
    }
    if missing_firmware {
        data.reason(
            "controllers.firmware",
            "not exported by the kernel for this controller (read from /sys/class/nvme, \
             /sys/class/scsi_host and ethtool -i)",
        );
    }
    data.build()
}

export_collector!(
    name = "controller",
    description = "storage and network controllers (lspci, driver, firmware)",
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

    fn script_out(lspci: &str, firmware: &str) -> String {
        format!("==> pci\n{lspci}\n==> firmware\n{firmware}\n==> end\n")
    }

    fn cases() -> Vec<(&'static str, String)> {
        vec![
            (
                "aleph-rtx4000-ada",
                script_out(&read("aleph-rtx4000-ada", "lspci-mm-nn.txt"), ""),
            ),
            (
                "insights-kvm-guest",
                script_out(&read("insights-kvm-guest", "lspci-vmmkn.txt"), ""),
            ),
            ("firecracker-vm", read("firecracker-vm", "script.out")),
            (
                "no-pci-bus",
                "=!> pci missing\n==> firmware\n==> end\n".to_string(),
            ),
        ]
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(SCRIPT, out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    fn parts(data: &Value) -> &Vec<Value> {
        data["lists"]["controllers"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("seen: {data}"))
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, out) in cases() {
            plugin_api::testing::golden(fixture(case), &run(&out));
        }
    }

    #[test]
    fn aleph_nvme_with_firmware() {
        // The firmware line is synthetic (the source recorded lspci only).
        let out = script_out(
            &read("aleph-rtx4000-ada", "lspci-mm-nn.txt"),
            "0000:02:00.0 5B2QGXA7\n",
        );
        let data = run(&out);
        let c = parts(&data);
        assert_eq!(c.len(), 1, "only the NVMe controller: {data}");
        assert_eq!(c[0]["id"], "02:00.0");
        assert_eq!(c[0]["kind"], "storage");
        assert_eq!(c[0]["class"], "Non-Volatile memory controller");
        assert_eq!(c[0]["pci_id"], "144d:a80a");
        assert_eq!(c[0]["firmware"], "5B2QGXA7");
        assert_eq!(data["reasons"].get("controllers.firmware"), None);
    }

    #[test]
    fn insights_numeric_ids_and_drivers() {
        let data = run(&cases()[1].1);
        let c = parts(&data);
        let ids: Vec<_> = c.iter().map(|p| p["id"].as_str().unwrap_or("")).collect();
        assert_eq!(ids, ["00:01.0", "00:03.0"]);
        assert_eq!(c[0]["driver"], "ata_piix");
        assert_eq!(c[0]["pci_id"], "8086:7010");
        assert_eq!(
            c[0]["class"], "IDE interface",
            "-n prints ids: the class from the table"
        );
        assert_eq!(c[0]["model"], Value::Null, "no names section: ids only");
        assert!(data["reasons"]["controllers.model"].is_string());
        assert_eq!(c[1]["kind"], "network");
        assert_eq!(c[1]["driver"], "virtio-pci");
    }

    #[test]
    fn no_pci_bus_is_unavailable() {
        let data = run(&cases()[3].1);
        assert!(data["lists"]["controllers"]["unavailable"]
            .as_str()
            .is_some_and(|w| w.starts_with("no PCI bus")));
    }

    /// The script itself, run by `sh` on a made-up PCI bus and an excerpt of pci.ids (lines as
    /// pci.ids has them; the paths replaced): storage and network functions only, their names,
    /// and a lookup that stops after the last wanted vendor even when one is not in pci.ids (a
    /// later `8086` line is not read).
    #[test]
    fn the_walk_and_the_names_stop_after_the_last_wanted_vendor() {
        // slot, class, vendor, device; 00:04.0 is made up (a vendor pci.ids does not have)
        let functions = "0000:00:01.1 0x010180 0x8086 0x7010
                         0000:00:03.0 0x020000 0x1af4 0x1041
                         0000:00:04.0 0x010802 0x1234 0x5678
                         0000:00:05.0 0x030000 0x1af4 0x1050";
        let pci_ids = "1af4  Red Hat, Inc.\n\
             \t1041  Virtio 1.0 network device\n\
             \t1050  Virtio 1.0 GPU\n\
             1af5  Netezza Corp.\n\
             8086  Intel Corporation\n\
             \t7010  82371SB PIIX3 IDE [Natoma/Triton II]\n\
             8088  Beijing Wangxun Technology Co., Ltd.\n\
             8086  NOT READ\n";
        let out = lspci::run_on_made_up_bus(
            SCRIPT,
            functions,
            &["class", "vendor", "device"],
            &[],
            pci_ids,
        );
        assert!(!out.contains("NOT READ"), "{out}");
        let data = run(&out);
        let got: Vec<Vec<Value>> = parts(&data)
            .iter()
            .map(|p| {
                ["slot", "kind", "vendor", "model"]
                    .iter()
                    .map(|k| p[*k].clone())
                    .collect()
            })
            .collect();
        assert_eq!(
            got,
            [
                vec![
                    json!("00:01.1"),
                    json!("storage"),
                    json!("Intel Corporation"),
                    json!("82371SB PIIX3 IDE [Natoma/Triton II]")
                ],
                vec![
                    json!("00:03.0"),
                    json!("network"),
                    json!("Red Hat, Inc."),
                    json!("Virtio 1.0 network device")
                ],
                vec![json!("00:04.0"), json!("storage"), Value::Null, Value::Null],
            ]
        );
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-controller -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(SCRIPT)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        // Fact parity with lspci's own class filter and with sysfs' driver links.
        let out = std::process::Command::new("lspci")
            .arg("-mm")
            .output()
            .expect("lspci");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut theirs: Vec<String> = lspci::parse(&text)
            .into_iter()
            .filter(|d| {
                let c = d.class.as_deref().unwrap_or("");
                c.contains("controller")
                    && (c.contains("storage")
                        || c.contains("SATA")
                        || c.contains("Ethernet")
                        || c.contains("Network")
                        || c.contains("Non-Volatile")
                        || c.contains("RAID")
                        || c.contains("IDE")
                        || c.contains("SCSI"))
            })
            .map(|d| d.slot)
            .collect();
        theirs.sort();
        let ours: Vec<&Value> = parts(&data).iter().collect();
        let mut slots: Vec<String> = ours
            .iter()
            .filter_map(|p| p["slot"].as_str().map(str::to_string))
            .collect();
        slots.sort();
        assert_eq!(slots, theirs);
        for p in ours {
            let slot = p["slot"].as_str().expect("slot");
            let link = std::fs::read_link(format!("/sys/bus/pci/devices/0000:{slot}/driver")).ok();
            let driver = link.and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
            assert_eq!(p["driver"].as_str(), driver.as_deref(), "{slot}");
        }
    }
}
