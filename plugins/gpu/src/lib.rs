//! The `gpu` collector: every display controller the PCI bus shows, with NVIDIA's details where
//! `nvidia-smi` can tell them.
//!
//! One round trip: one `sh` script (see [`SCRIPT`]) reads each display function of
//! `/sys/bus/pci/devices` (class, ids, subsystem, revision, kernel driver; shell builtins only),
//! looks their names up in pci.ids with one `awk` (lspci only where there is no sysfs) and, where
//! it is installed and there is a display function, runs `nvidia-smi -q -x` (serial, UUID, VBIOS,
//! memory and driver version of every NVIDIA GPU).
//!
//! Its data (report schema 2): the part list `gpus`, one part per PCI function of class `0300`
//! (VGA compatible), `0302` (3D) or `0380` (other display controller), keyed by
//! `["serial", "uuid", "slot"]`: the id is the board serial where nvidia-smi gives one, else the
//! GPU UUID, else the PCI slot (`01:00.0`). Attributes: `slot`, `class`, `vendor`, `model`
//! (nvidia-smi's product name, else pci.ids' device name), `pci_id` (`10de:27b0`),
//! `subsystem_vendor`, `subsystem`, `revision`, `driver` (the kernel driver in use), `serial`,
//! `uuid`, `part_number`, `vbios_version`, `memory_bytes` (frame buffer) and `driver_version`
//! (nvidia-smi's). A GPU nvidia-smi lists but the PCI bus does not show is a part of its own, slot
//! from nvidia-smi's bus id.
//!
//! Degrading: no `/sys/bus/pci`, no lspci and no nvidia-smi makes the list `unavailable` (never an
//! error); no pci.ids leaves `vendor` and `model` `null` (`reasons."gpus.model"`); NVIDIA GPUs
//! without a working nvidia-smi keep their PCI attributes, and `reasons` says why serial, UUID,
//! VBIOS and memory are unknown (`gpus.serial`). A virtual display (virtio, QXL, VMware
//! SVGA, Cirrus) is a display function and is listed as such. Errors: only when the script printed
//! nothing at all.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

#[macro_use]
pub mod lspci;

use lspci::PciDevice;

/// The one command this collector runs. A builtin-only walk of `/sys/bus/pci/devices` prints each
/// display function (class `0300`, `0302`, `0380`) in `lspci -vmm -n`'s form (ids; `Driver:` the
/// driver link's target, found with `cd` and `pwd -P`; `SVendor`/`SDevice` where the subsystem is
/// neither `0000` nor `ffff` and `Rev` where it is not `00`, as lspci prints them), then one `awk`
/// ([`lspci`]'s `pci_names!`, shared with `controller`) looks up their vendor, device, subsystem
/// vendor and subsystem names in pci.ids as lspci does where it reads pci.ids only (an lspci built
/// with udev's hwdb asks the hwdb for an id pci.ids lacks).
/// lspci itself, which this collector ran before, parses the whole pci.ids (1.3 MB) on every run:
/// 22–24 ms of CPU against 9 ms for this script on this VM (every class). lspci runs only where
/// there is no `/sys/bus/pci`; nvidia-smi only where there is a display function (or sysfs cannot
/// tell). Without a display function the `pci` section is empty: a seen, empty list.
pub const SCRIPT: &str = concat!(
    "PATH=\"$PATH:/usr/sbin:/sbin:/usr/bin\"; g=''; w=''; \
if [ -d /sys/bus/pci/devices ]; then printf '==> pci\\n'; \
for d in /sys/bus/pci/devices/*; do [ -r \"$d/class\" ] || continue; read -r c < \"$d/class\"; \
case $c in 0x0300*|0x0302*|0x0380*) ;; *) continue;; esac; g=1; c=${c#0x}; \
read -r v < \"$d/vendor\"; read -r i < \"$d/device\"; v=${v#0x}; i=${i#0x}; \
printf 'Slot:\\t%s\\nClass:\\t%s\\nVendor:\\t%s\\nDevice:\\t%s\\n' \"${d##*/}\" \"${c%??}\" \"$v\" \"$i\"; \
sv=; sd=; if [ -r \"$d/subsystem_vendor\" ]; then read -r sv < \"$d/subsystem_vendor\"; \
read -r sd < \"$d/subsystem_device\"; sv=${sv#0x}; sd=${sd#0x}; case $sv in 0000|ffff) sv=; sd=;; esac; fi; \
if [ -n \"$sv\" ]; then printf 'SVendor:\\t%s\\nSDevice:\\t%s\\n' \"$sv\" \"$sd\"; fi; \
if [ -r \"$d/revision\" ]; then read -r r < \"$d/revision\"; \
case $r in 0x00) ;; *) printf 'Rev:\\t%s\\n' \"${r#0x}\";; esac; fi; \
if cd \"$d/driver\" 2>/dev/null; then printf 'Driver:\\t'; pwd -P; cd /; fi; echo; w=\"$w $v:$i:$sv:$sd\"; done; \
",
    pci_names!(),
    "elif command -v lspci >/dev/null 2>&1; then g=1; printf '==> lspci\\n'; lspci -vmm -nn -k 2>/dev/null; \
else g=1; printf '=!> lspci missing\\n'; fi; \
if [ -n \"$g\" ] && command -v nvidia-smi >/dev/null 2>&1; then printf '==> nvidia-smi\\n'; nvidia-smi -q -x 2>&1; fi; \
printf '==> end\\n'"
);

/// Below the host's default collector timeout (10 s): nvidia-smi can take seconds to wake
/// GPUs without persistence mode.
const TIMEOUT: Duration = Duration::from_secs(9);

/// The display classes.
pub const GPU_CLASSES: [&str; 3] = ["0300", "0302", "0380"];

/// One GPU of `nvidia-smi -q -x`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvidiaGpu {
    pub bus_id: String,
    pub product_name: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
    pub vbios_version: Option<String>,
    pub part_number: Option<String>,
    pub memory_bytes: Option<u64>,
}

/// The text of the first `<tag>...</tag>` in `xml`, `N/A` and empty as `None`.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    let v = xml[start..end].trim();
    let v = v
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    (!v.is_empty() && v != "N/A" && !v.starts_with('[')).then_some(v)
}

/// `11567 MiB` as bytes.
fn mib(value: &str) -> Option<u64> {
    let mut w = value.split_whitespace();
    let n: u64 = w.next()?.parse().ok()?;
    match w.next()? {
        "MiB" => n.checked_mul(1 << 20),
        "GiB" => n.checked_mul(1 << 30),
        "KiB" => n.checked_mul(1 << 10),
        _ => None,
    }
}

/// The driver version and the GPUs of `nvidia-smi -q -x`.
pub fn parse_nvidia_smi(xml: &str) -> (Option<String>, Vec<NvidiaGpu>) {
    let driver = tag(xml, "driver_version");
    let mut gpus = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<gpu id=\"") {
        let after = &rest[at + "<gpu id=\"".len()..];
        let Some(q) = after.find('"') else { break };
        let id = after[..q].to_string();
        let end = after.find("</gpu>").unwrap_or(after.len());
        let body = &after[..end];
        let memory = body
            .find("<fb_memory_usage>")
            .and_then(|i| tag(&body[i..], "total"))
            .and_then(|t| mib(&t));
        gpus.push(NvidiaGpu {
            bus_id: tag(body, "pci_bus_id").unwrap_or(id),
            product_name: tag(body, "product_name"),
            serial: tag(body, "serial").filter(|s| s.chars().any(|c| c != '0')),
            uuid: tag(body, "uuid"),
            vbios_version: tag(body, "vbios_version"),
            part_number: tag(body, "gpu_part_number"),
            memory_bytes: memory,
        });
        rest = &after[end..];
    }
    (driver, gpus)
}

fn content<'a>(sections: &'a BTreeMap<String, Section>, name: &str) -> Option<&'a str> {
    match sections.get(name) {
        Some(Section::Content(c)) => Some(c.as_str()),
        _ => None,
    }
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sections = batch::run(target, SCRIPT, TIMEOUT, "gpu")?;
    let mut data = Data::new();
    // The sysfs walk's ids with pci.ids' names, else (no /sys/bus/pci) lspci's output.
    let walked = content(&sections, "pci").map(|t| {
        let mut devices = lspci::parse(t);
        lspci::apply_names(&mut devices, content(&sections, "names").unwrap_or(""));
        devices
    });
    let unnamed = walked
        .as_ref()
        .is_some_and(|d| !sections.contains_key("names") && d.iter().any(|d| d.device.is_none()));
    let devices: Option<Vec<PciDevice>> = walked
        .or_else(|| content(&sections, "lspci").map(lspci::parse))
        .map(|all| {
            all.into_iter()
                .filter(|d| {
                    d.class_id
                        .as_deref()
                        .is_some_and(|c| GPU_CLASSES.contains(&c))
                })
                .collect()
        });
    let smi = content(&sections, "nvidia-smi");
    let (driver_version, nvidia, smi_failed) = match smi {
        Some(text) => {
            let (driver, gpus) = parse_nvidia_smi(text);
            let failed = (gpus.is_empty() && !text.contains("<nvidia_smi_log")).then(|| {
                text.lines()
                    .next()
                    .unwrap_or("no output")
                    .trim()
                    .to_string()
            });
            (driver, gpus, failed)
        }
        None => (None, Vec::new(), None),
    };

    if devices.is_none() && smi.is_none() {
        let why = "neither lspci nor nvidia-smi is installed";
        data.unavailable("gpus", why).reason("gpus", why);
        return data.build();
    }

    // Parts: lspci's display functions, each with nvidia-smi's GPU of the same bus id.
    let mut used = vec![false; nvidia.len()];
    let mut rows: Vec<(Option<PciDevice>, Option<&NvidiaGpu>)> = Vec::new();
    for d in devices.iter().flatten() {
        let found = nvidia
            .iter()
            .position(|g| lspci::short_slot(&g.bus_id) == d.short_slot());
        if let Some(i) = found {
            used[i] = true;
        }
        rows.push((Some(d.clone()), found.map(|i| &nvidia[i])));
    }
    for (i, g) in nvidia.iter().enumerate() {
        if !used[i] {
            rows.push((None, Some(g)));
        }
    }

    let mut nvidia_without_smi = false;
    let list = data.list("gpus", &["serial", "uuid", "slot"]);
    for (pci, smi_gpu) in &rows {
        let slot = match (pci, smi_gpu) {
            (Some(d), _) => d.slot.clone(),
            (None, Some(g)) => lspci::short_slot(&g.bus_id),
            (None, None) => continue,
        };
        if smi_gpu.is_none() && pci.as_ref().and_then(|d| d.vendor_id.as_deref()) == Some("10de") {
            nvidia_without_smi = true;
        }
        let g = smi_gpu.cloned().unwrap_or_default();
        let id = g
            .serial
            .clone()
            .or_else(|| g.uuid.clone())
            .unwrap_or_else(|| slot.clone());
        let id = if list.has_id(&id) { slot.clone() } else { id };
        let p = pci.clone().unwrap_or_default();
        let pci_id = p.pci_id();
        list.part(
            id,
            json!({
                "slot": slot,
                "class": p.class,
                "vendor": p.vendor.or_else(|| smi_gpu.map(|_| "NVIDIA Corporation".to_string())),
                "model": g.product_name.clone().or(p.device.clone()),
                "pci_id": pci_id,
                "subsystem_vendor": p.subsystem_vendor,
                "subsystem": p.subsystem_device,
                "revision": p.revision,
                "driver": p.driver,
                "serial": g.serial,
                "uuid": g.uuid,
                "part_number": g.part_number,
                "vbios_version": g.vbios_version,
                "memory_bytes": g.memory_bytes,
                "driver_version": smi_gpu.and(driver_version.clone()),
            }),
        );
    }
    if nvidia_without_smi {
        let why = match (&smi, &smi_failed) {
            (None, _) => "nvidia-smi is not installed".to_string(),
            (Some(_), Some(msg)) => format!("nvidia-smi failed: {msg}"),
            (Some(_), None) => "nvidia-smi does not list this GPU".to_string(),
        };
        data.reason(
            "gpus.serial",
            format!("{why}: serial, UUID, VBIOS and memory of NVIDIA GPUs are unknown"),
        );
    }
    if devices.is_none() {
        data.reason(
            "gpus",
            "lspci is not installed: only the GPUs nvidia-smi sees are listed",
        );
    }
    if unnamed {
        data.reason(
            "gpus.model",
            "no pci.ids on the target (/usr/share/misc, /usr/share/hwdata): ids only",
        );
    }
    data.build()
}

export_collector!(
    name = "gpu",
    description = "GPUs (PCI display functions with pci.ids names, nvidia-smi details)",
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

    fn script_out(lspci: Option<&str>, smi: Option<&str>) -> String {
        let mut s = match lspci {
            Some(t) => format!("==> lspci\n{t}\n"),
            None => "=!> lspci missing\n".to_string(),
        };
        if let Some(x) = smi {
            s.push_str(&format!("==> nvidia-smi\n{x}\n"));
        }
        s + "==> end\n"
    }

    fn cases() -> Vec<(&'static str, String)> {
        vec![
            (
                "hadoop-tesla-p100",
                script_out(
                    None,
                    Some(&read("hadoop-tesla-p100", "nvidia-smi-excerpt.xml")),
                ),
            ),
            (
                "aleph-rtx4000-ada",
                script_out(Some(&read("aleph-rtx4000-ada", "lspci-mm-nn.txt")), None),
            ),
            ("firecracker-vm", read("firecracker-vm", "script.out")),
            ("no-tools", script_out(None, None)),
        ]
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(SCRIPT, out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    fn parts(data: &Value) -> &Vec<Value> {
        data["lists"]["gpus"]["parts"]
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
    fn hadoop_two_tesla_p100_from_nvidia_smi() {
        let data = run(&cases()[0].1);
        let gpus = parts(&data);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0]["id"], "0320717030197");
        assert_eq!(gpus[0]["uuid"], "GPU-28604e81-21ec-cc48-6759-bf2648b22e16");
        assert_eq!(gpus[0]["model"], "Tesla P100-PCIE-12GB");
        assert_eq!(gpus[0]["vbios_version"], "86.00.3A.00.02");
        assert_eq!(gpus[0]["memory_bytes"], 11567u64 << 20);
        assert_eq!(gpus[0]["driver_version"], "375.66");
        assert_eq!(gpus[0]["slot"], "04:00.0");
        assert_eq!(gpus[1]["slot"], "82:00.0");
        assert!(data["reasons"]["gpus"].is_string(), "no lspci: said so");
    }

    #[test]
    fn aleph_rtx4000_from_lspci_without_nvidia_smi() {
        let data = run(&cases()[1].1);
        let gpus = parts(&data);
        assert_eq!(
            gpus.len(),
            1,
            "the audio function and the NVMe are not GPUs"
        );
        assert_eq!(gpus[0]["id"], "01:00.0");
        assert_eq!(gpus[0]["model"], "AD104GL [RTX 4000 SFF Ada Generation]");
        assert_eq!(gpus[0]["pci_id"], "10de:27b0");
        assert_eq!(gpus[0]["revision"], "a1");
        assert!(data["reasons"]["gpus.serial"]
            .as_str()
            .is_some_and(|r| r.starts_with("nvidia-smi is not installed")));
    }

    #[test]
    fn merged_by_bus_id_and_smi_failure() {
        let lspci = "Slot:\t04:00.0\nClass:\t3D controller [0302]\nVendor:\tNVIDIA Corporation [10de]\nDevice:\tGP100GL [Tesla P100 PCIe 12GB] [15f7]\nDriver:\tnvidia\n";
        let xml = read("hadoop-tesla-p100", "nvidia-smi-excerpt.xml");
        let data = run(&script_out(Some(lspci), Some(&xml)));
        let gpus = parts(&data);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0]["driver"], "nvidia");
        assert_eq!(gpus[0]["serial"], "0320717030197");
        assert_eq!(gpus[0]["class"], "3D controller");
        // Synthetic: nvidia-smi installed but the driver is not loaded.
        let msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.";
        let data = run(&script_out(Some(lspci), Some(msg)));
        assert_eq!(parts(&data).len(), 1);
        assert!(data["reasons"]["gpus.serial"]
            .as_str()
            .is_some_and(|r| r.contains("couldn't communicate")));
    }

    #[test]
    fn nothing_to_ask_is_unavailable() {
        let data = run(&cases()[3].1);
        assert_eq!(
            data["lists"]["gpus"]["unavailable"],
            "neither lspci nor nvidia-smi is installed"
        );
    }

    /// The script itself, run by `sh` on a made-up PCI bus and an excerpt of pci.ids (lines as
    /// pci.ids has them; the paths replaced): display functions only, names as lspci gives them
    /// (a subsystem by its own line, by the device's name where the ids are the device's own, else
    /// none), and the lookup stops after the last wanted vendor even when one is not in pci.ids
    /// (QEMU's `1234`; a later `10de` line is not read), comparing ids as strings (`1e10` is not
    /// the number 1e10, above `8086`).
    #[test]
    fn the_walk_and_the_names_of_display_functions() {
        // slot, class, vendor, device, subsystem vendor, subsystem device, revision; 00:05.0 is
        // made up (a virtio function as a display one, for a subsystem of another vendor), 00:06.0
        // is QEMU's standard VGA (a vendor pci.ids does not have), 00:07.0 is made up (a vendor id
        // awk would read as the number 1e10)
        let functions = "0000:3b:00.0 0x030000 0x10de 0x1e30 0x10de 0x12ba 0xa1
                         0000:af:00.0 0x030200 0x10de 0x1eb8 0x10de 0x12a2 0xa1
                         0000:00:02.0 0x030000 0x1af4 0x1050 0x1af4 0x1100 0x01
                         0000:00:05.0 0x038000 0x1af4 0x1000 0x01de 0xfffb 0x00
                         0000:00:03.0 0x020000 0x1af4 0x1041 0x1af4 0x1041 0x01
                         0000:00:06.0 0x030000 0x1234 0x1111 0x1af4 0x1100 0x02
                         0000:00:07.0 0x038000 0x1e10 0x0001 0x0000 0x0000 0x00
                         0000:00:08.0 0x030000 0x8086 0x3e92 0x8086 0x3e92 0x00";
        let files = [
            "class",
            "vendor",
            "device",
            "subsystem_vendor",
            "subsystem_device",
            "revision",
        ];
        let pci_ids = "01de  Oxide Computer Company\n\
             10de  NVIDIA Corporation\n\
             \t1e30  TU102GL [Quadro RTX 6000/8000]\n\
             \t\t10de 129e  Quadro RTX 8000\n\
             \t\t10de 12ba  Quadro RTX 6000\n\
             \t1eb8  TU104GL [Tesla T4]\n\
             1af4  Red Hat, Inc.\n\
             \t1000  Virtio network device\n\
             \t\t01de fffb  Propolis Virtio network device\n\
             \t1050  Virtio 1.0 GPU\n\
             \t1110  Inter-VM shared memory\n\
             \t\t1af4 1100  QEMU Virtual Machine\n\
             1af5  Netezza Corp.\n\
             1e17  Arnold & Richter Cine Technik GmbH & Co. Betriebs KG\n\
             8086  Intel Corporation\n\
             \t3e92  CoffeeLake-S GT2 [UHD Graphics 630]\n\
             8088  Beijing Wangxun Technology Co., Ltd.\n\
             10de  NOT READ\n";
        let nvidia = [("0000:3b:00.0", "nvidia")];
        let out = lspci::run_on_made_up_bus(SCRIPT, functions, &files, &nvidia, pci_ids);
        assert!(!out.contains("lspci") && !out.contains("NOT READ"), "{out}");
        let data = run(&out);
        let got: Vec<Vec<Value>> = parts(&data)
            .iter()
            .map(|p| {
                [
                    "slot",
                    "class",
                    "vendor",
                    "model",
                    "pci_id",
                    "subsystem_vendor",
                    "subsystem",
                ]
                .iter()
                .map(|k| p[*k].clone())
                .chain([p["revision"].clone(), p["driver"].clone()])
                .collect()
            })
            .collect();
        let row = |v: [Value; 9]| v.to_vec();
        assert_eq!(
            got,
            [
                row([
                    json!("00:02.0"),
                    json!("VGA compatible controller"),
                    json!("Red Hat, Inc."),
                    json!("Virtio 1.0 GPU"),
                    json!("1af4:1050"),
                    json!("Red Hat, Inc."),
                    Value::Null,
                    json!("01"),
                    Value::Null,
                ]),
                row([
                    json!("00:05.0"),
                    json!("Display controller"),
                    json!("Red Hat, Inc."),
                    json!("Virtio network device"),
                    json!("1af4:1000"),
                    json!("Oxide Computer Company"),
                    json!("Propolis Virtio network device"),
                    Value::Null,
                    Value::Null,
                ]),
                row([
                    json!("00:06.0"),
                    json!("VGA compatible controller"),
                    Value::Null,
                    Value::Null,
                    json!("1234:1111"),
                    json!("Red Hat, Inc."),
                    Value::Null,
                    json!("02"),
                    Value::Null,
                ]),
                row([
                    json!("00:07.0"),
                    json!("Display controller"),
                    Value::Null,
                    Value::Null,
                    json!("1e10:0001"),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ]),
                row([
                    json!("00:08.0"),
                    json!("VGA compatible controller"),
                    json!("Intel Corporation"),
                    json!("CoffeeLake-S GT2 [UHD Graphics 630]"),
                    json!("8086:3e92"),
                    json!("Intel Corporation"),
                    json!("CoffeeLake-S GT2 [UHD Graphics 630]"),
                    Value::Null,
                    Value::Null,
                ]),
                row([
                    json!("3b:00.0"),
                    json!("VGA compatible controller"),
                    json!("NVIDIA Corporation"),
                    json!("TU102GL [Quadro RTX 6000/8000]"),
                    json!("10de:1e30"),
                    json!("NVIDIA Corporation"),
                    json!("Quadro RTX 6000"),
                    json!("a1"),
                    json!("nvidia"),
                ]),
                row([
                    json!("af:00.0"),
                    json!("3D controller"),
                    json!("NVIDIA Corporation"),
                    json!("TU104GL [Tesla T4]"),
                    json!("10de:1eb8"),
                    json!("NVIDIA Corporation"),
                    Value::Null,
                    json!("a1"),
                    Value::Null,
                ]),
            ]
        );
        assert_eq!(data["reasons"].get("gpus.model"), None, "{data}");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-gpu -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(SCRIPT)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        // Fact parity with lspci's own class filter: `lspci -d ::0300` etc.
        let mut slots = Vec::new();
        for class in GPU_CLASSES {
            let out = std::process::Command::new("lspci")
                .args(["-d", &format!("::{class}")])
                .output()
                .expect("lspci");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                slots.extend(line.split_whitespace().next().map(str::to_string));
            }
        }
        slots.sort();
        let mut ours: Vec<String> = parts(&data)
            .iter()
            .filter_map(|p| p["slot"].as_str().map(str::to_string))
            .collect();
        ours.sort();
        assert_eq!(ours, slots);
    }

    /// The script's walk and pci.ids lookup name every PCI function of this machine as lspci does:
    /// the walk widened from the display classes to all (a machine without a GPU has functions
    /// enough), its output read as the collector reads it, then compared with `lspci -vmm -nn -k`
    /// field by field (ids, vendor, device, subsystem vendor and subsystem names, revision,
    /// driver).
    #[test]
    #[ignore = "reads this machine: cargo test -p collector-gpu -- --ignored"]
    fn live_walk_and_names_match_lspci() {
        let every_class = SCRIPT.replace("0x0300*|0x0302*|0x0380*", "*");
        assert_ne!(
            every_class, SCRIPT,
            "the class filter is where this test widens it"
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&every_class)
            .env("LC_ALL", "C")
            .output()
            .expect("sh");
        let sections = batch::parse_sections(&String::from_utf8_lossy(&out.stdout));
        let mut ours = lspci::parse(content(&sections, "pci").expect("a pci section"));
        lspci::apply_names(&mut ours, content(&sections, "names").unwrap_or(""));
        let theirs = std::process::Command::new("lspci")
            .args(["-vmm", "-nn", "-k"])
            .env("LC_ALL", "C")
            .output()
            .expect("lspci");
        let theirs = lspci::parse(&String::from_utf8_lossy(&theirs.stdout));
        assert!(!theirs.is_empty(), "lspci lists nothing");
        let key = |d: &PciDevice| {
            (
                d.short_slot(),
                d.class_id.clone(),
                d.vendor_id.clone(),
                d.device_id.clone(),
                d.vendor.clone(),
                d.device.clone(),
                d.subsystem_vendor_id.clone(),
                d.subsystem_device_id.clone(),
                d.subsystem_vendor.clone(),
                d.subsystem_device.clone(),
                d.revision.clone(),
                d.driver.clone(),
            )
        };
        let ours: Vec<_> = ours.iter().map(key).collect();
        let theirs: Vec<_> = theirs.iter().map(key).collect();
        assert_eq!(ours, theirs);
    }
}
