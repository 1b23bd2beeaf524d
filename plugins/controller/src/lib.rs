//! The `controller` collector: the storage and network controllers on the PCI bus, with their
//! kernel driver and, where the kernel exports it, their firmware version.
//!
//! One round trip: one `sh` script (see [`SCRIPT`]) runs `lspci -vmm -nn -k` and then prints
//! `PCI-SLOT FIRMWARE` lines from what the kernel exports: `/sys/class/nvme/*/firmware_rev`
//! (NVMe), `/sys/class/scsi_host/*/{version_fw,fw_version,firmware_revision}` (SAS/RAID HBAs such
//! as mpt3sas and megaraid_sas) and `ethtool -i` (network, where ethtool is installed).
//!
//! Its data (report schema 2): the part list `controllers`, one part per PCI function of class
//! `01xx` (mass storage: SCSI, IDE, RAID, SATA, SAS, NVMe, ...) or `02xx` (network: Ethernet,
//! InfiniBand, ...), keyed by `["slot"]` (`02:00.0`). Attributes: `slot`, `kind` (`storage` or
//! `network`), `class` (`Non-Volatile memory controller`), `vendor`, `model`, `pci_id`
//! (`144d:a80a`), `subsystem_vendor`, `subsystem`, `revision`, `driver` (the kernel driver in use)
//! and `firmware`.
//!
//! Degrading: no lspci makes the list `unavailable` (not an error); a controller whose firmware
//! the kernel does not export has `firmware` `null` and `reasons.controllers.firmware` says where it
//! was looked for. Errors: only when the script printed nothing at all.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

#[path = "../../gpu/src/lspci.rs"]
pub mod lspci;

/// The one command this collector runs.
pub const SCRIPT: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"; \
if command -v lspci >/dev/null 2>&1; then printf '==> lspci\\n'; lspci -vmm -nn -k 2>/dev/null; \
else printf '=!> lspci missing\\n'; fi; \
printf '==> firmware\\n'; \
for d in /sys/class/nvme/*; do [ -r \"$d/firmware_rev\" ] || continue; \
s=$(readlink -f \"$d/device\"); read -r v < \"$d/firmware_rev\"; printf '%s %s\\n' \"${s##*/}\" \"$v\"; done; \
for h in /sys/class/scsi_host/*; do for f in version_fw fw_version firmware_revision; do \
[ -r \"$h/$f\" ] || continue; s=$(readlink -f \"$h/device\"); s=${s%/*}; read -r v < \"$h/$f\"; \
printf '%s %s\\n' \"${s##*/}\" \"$v\"; break; done; done; \
if command -v ethtool >/dev/null 2>&1; then for n in /sys/class/net/*; do [ -e \"$n/device\" ] || continue; \
s=$(readlink -f \"$n/device\"); v=$(ethtool -i \"${n##*/}\" 2>/dev/null | sed -n 's/^firmware-version: //p'); \
[ -n \"$v\" ] && printf '%s %s\\n' \"${s##*/}\" \"$v\"; done; fi; \
printf '==> end\\n'";

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
    let Some(Section::Content(text)) = sections.get("lspci") else {
        let why = "lspci is not installed";
        data.unavailable("controllers", why)
            .reason("controllers", why);
        return data.build();
    };
    let firmware = match sections.get("firmware") {
        Some(Section::Content(t)) => parse_firmware(t),
        _ => BTreeMap::new(),
    };
    let mut missing_firmware = false;
    let list = data.list("controllers", &["slot"]);
    for d in lspci::parse(text) {
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
                "subsystem_vendor": d.subsystem_vendor,
                "subsystem": d.subsystem_device,
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
        format!("==> lspci\n{lspci}\n==> firmware\n{firmware}\n==> end\n")
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
                "no-lspci",
                "=!> lspci missing\n==> firmware\n==> end\n".to_string(),
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
        assert_eq!(c[0]["class"], Value::Null, "-n prints ids only");
        assert_eq!(c[1]["kind"], "network");
        assert_eq!(c[1]["driver"], "virtio-pci");
    }

    #[test]
    fn no_lspci_is_unavailable() {
        let data = run(&cases()[3].1);
        assert_eq!(
            data["lists"]["controllers"]["unavailable"],
            "lspci is not installed"
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
