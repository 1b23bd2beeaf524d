//! Reading `lspci`'s machine-readable output: the verbose form (`lspci -vmm -nn -k`, one
//! `Key:\tvalue` block per device, with `Driver:` and `Module:` lines) and the one-line form
//! (`lspci -mm -nn`: `SLOT "CLASS" "VENDOR" "DEVICE" [-rREV] [-pPROGIF] "SVENDOR" "SDEVICE"`).
//! With `-nn` a name ends in its id (`VGA compatible controller [0300]`); with `-n` alone the value
//! is the id. The same verbose form with ids only (class, vendor, device as hex; `Driver:` the
//! driver link's target) is what the collectors' sysfs walks print. Shared by the `gpu` and
//! `controller` collectors (`#[path]` include).

/// The collectors' name lookup, a piece of their `sh` scripts (`concat!`ed in): for the ids in
/// `$w` (`VENDOR:DEVICE` or `VENDOR:DEVICE:SVENDOR:SDEVICE`, blank-separated), one `awk` over the
/// first pci.ids found prints a `names` section of `VVVV\tVENDOR`, `VVVV:DDDD\tDEVICE` and
/// `VVVV:DDDD:SSSS:TTTT\tSUBSYSTEM` lines (read by [`apply_names`]). It stops after the last
/// wanted vendor's block, or at the first vendor above every wanted one (pci.ids is sorted by id;
/// ids compared as strings: `2e00` is not the number 2), so a wanted vendor pci.ids lacks (QEMU's
/// VGA `1234`) does not make it read to the end. No `awk`, no pci.ids, or nothing in `$w`: no
/// section. Lines outside the wanted vendors' blocks cost one test of `inv` each (a rule per line
/// kind tested it once per rule: 8 % more of the controller script's CPU).
macro_rules! pci_names {
    () => {
        "if [ -n \"$w\" ]; then for f in /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids /usr/share/pci.ids; do \
[ -r \"$f\" ] || continue; command -v awk >/dev/null 2>&1 || break; printf '==> names\\n'; \
awk -v want=\"$w \" \
'function addv(x) { if (x != \"\" && !(x in wv)) { wv[x] = 1; left++; if ((x \"\") > top) top = x \"\" } } \
BEGIN { n = split(want, a, \" \"); for (k = 1; k <= n; k++) { split(a[k], p, \":\"); \
wd[p[1] \":\" p[2]] = 1; addv(p[1]); if (p[3] != \"\") { ws[a[k]] = 1; addv(p[3]) } } } \
/^[0-9a-f][0-9a-f][0-9a-f][0-9a-f]  / { if (inv && --left == 0) exit; v = substr($0, 1, 4); \
if (v > top) exit; \
inv = (v in wv); dv = \"\"; if (inv) print v \"\\t\" substr($0, 7); next } \
inv { if (/^\\t[0-9a-f][0-9a-f][0-9a-f][0-9a-f]  /) { dv = v \":\" substr($0, 2, 4); \
if (dv in wd) print dv \"\\t\" substr($0, 8) } \
else if (dv != \"\" && /^\\t\\t[0-9a-f][0-9a-f][0-9a-f][0-9a-f] [0-9a-f][0-9a-f][0-9a-f][0-9a-f]  /) { \
k = dv \":\" substr($0, 3, 4) \":\" substr($0, 8, 4); if (k in ws) print k \"\\t\" substr($0, 14) } }' \"$f\"; \
break; done; fi; \
"
    };
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PciDevice {
    /// `01:00.0`, or `0000:01:00.0` where lspci prints the domain.
    pub slot: String,
    /// The class and subclass, 4 lower-case hex digits (`0300`).
    pub class_id: Option<String>,
    pub class: Option<String>,
    pub vendor: Option<String>,
    pub vendor_id: Option<String>,
    pub device: Option<String>,
    pub device_id: Option<String>,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    pub subsystem_vendor_id: Option<String>,
    pub subsystem_device_id: Option<String>,
    pub revision: Option<String>,
    pub driver: Option<String>,
}

impl PciDevice {
    /// `VENDOR:DEVICE` ids (`10de:27b0`).
    pub fn pci_id(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.vendor_id.as_deref()?,
            self.device_id.as_deref()?
        ))
    }

    /// `SVENDOR:SDEVICE` ids (`1028:06e4`).
    pub fn subsystem_id(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.subsystem_vendor_id.as_deref()?,
            self.subsystem_device_id.as_deref()?
        ))
    }

    /// The slot without the domain, lower case (`01:00.0`): what other tools' bus ids are
    /// compared by.
    pub fn short_slot(&self) -> String {
        short_slot(&self.slot)
    }
}

/// `0000:01:00.0`, `00000000:01:00.0` or `01:00.0` as `01:00.0`.
pub fn short_slot(slot: &str) -> String {
    let s = slot.trim().to_ascii_lowercase();
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() >= 2 {
        parts[parts.len() - 2..].join(":")
    } else {
        s
    }
}

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `Name [0300]` as (`Name`, `0300`); `0300` alone (lspci `-n`) as (None, `0300`); a name
/// without id as (`Name`, None). Empty and placeholder names (`Device`, `Vendor`, `Unknown
/// device`: what lspci prints for an id pci.ids does not have) are `None`.
pub fn name_and_id(value: &str, id_len: usize) -> (Option<String>, Option<String>) {
    let v = value.trim();
    if v.is_empty() {
        return (None, None);
    }
    if is_hex_id(v, id_len) {
        return (None, Some(v.to_ascii_lowercase()));
    }
    let (name, id) = match v.strip_suffix(']').and_then(|r| r.rsplit_once(" [")) {
        Some((name, id)) if is_hex_id(id, id_len) => (name.trim(), Some(id.to_ascii_lowercase())),
        _ => (v, None),
    };
    let placeholder = name.is_empty()
        || name == "Device"
        || name == "Vendor"
        || name.eq_ignore_ascii_case("unknown device")
        || name.starts_with("Unassigned class");
    ((!placeholder).then(|| name.to_string()), id)
}

fn set(dev: &mut PciDevice, key: &str, value: &str) {
    let value = value.trim();
    match key {
        // sysfs names the domain always; lspci only where there is more than one.
        "Slot" => dev.slot = value.strip_prefix("0000:").unwrap_or(value).to_string(),
        "Class" => (dev.class, dev.class_id) = name_and_id(value, 4),
        "Vendor" => (dev.vendor, dev.vendor_id) = name_and_id(value, 4),
        "Device" => (dev.device, dev.device_id) = name_and_id(value, 4),
        "SVendor" => (dev.subsystem_vendor, dev.subsystem_vendor_id) = name_and_id(value, 4),
        "SDevice" => (dev.subsystem_device, dev.subsystem_device_id) = name_and_id(value, 4),
        "Rev" => dev.revision = Some(value.to_string()).filter(|v| !v.is_empty()),
        // lspci prints the name; a sysfs walk prints the driver link's target path.
        "Driver" => {
            let name = value.rsplit('/').next().unwrap_or(value);
            dev.driver = Some(name.to_string()).filter(|v| !v.is_empty())
        }
        _ => {}
    }
}

/// The quoted fields and the `-r`/`-p` options of a one-line record.
fn split_quoted(line: &str) -> (Vec<String>, Option<String>) {
    let mut fields = Vec::new();
    let mut rev = None;
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            fields.push(r[..end].to_string());
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if let Some(r) = word.strip_prefix("-r") {
                rev = Some(r.to_string());
            }
            rest = &rest[end..];
        }
    }
    (fields, rev)
}

/// Every device of an `lspci -vmm` or `lspci -mm` output (the form is told by the first line).
pub fn parse(text: &str) -> Vec<PciDevice> {
    let verbose = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("Slot:"));
    if verbose {
        let mut out = Vec::new();
        let mut cur: Option<PciDevice> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                out.extend(cur.take());
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim();
            if k == "Slot" {
                out.extend(cur.take());
            }
            set(cur.get_or_insert_with(PciDevice::default), k, v);
        }
        out.extend(cur);
        out.retain(|d| !d.slot.is_empty());
        return out;
    }
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (slot, rest) = line.split_once(char::is_whitespace)?;
            if !slot.contains(':') {
                return None;
            }
            let (f, rev) = split_quoted(rest);
            let mut dev = PciDevice {
                slot: slot.to_string(),
                revision: rev,
                ..PciDevice::default()
            };
            for (key, value) in ["Class", "Vendor", "Device", "SVendor", "SDevice"]
                .iter()
                .zip(&f)
            {
                set(&mut dev, key, value);
            }
            Some(dev)
        })
        .collect()
}

/// The PCI class names (as pci.ids and lspci spell them) of the classes these collectors list,
/// for a sysfs walk that has ids only.
pub fn class_name(class_id: &str) -> Option<&'static str> {
    Some(match class_id {
        "0100" => "SCSI storage controller",
        "0101" => "IDE interface",
        "0102" => "Floppy disk controller",
        "0103" => "IPI bus controller",
        "0104" => "RAID bus controller",
        "0105" => "ATA controller",
        "0106" => "SATA controller",
        "0107" => "Serial Attached SCSI controller",
        "0108" => "Non-Volatile memory controller",
        "0109" => "Universal Flash Storage controller",
        "0180" => "Mass storage controller",
        "0200" => "Ethernet controller",
        "0201" => "Token ring network controller",
        "0202" => "FDDI network controller",
        "0203" => "ATM network controller",
        "0204" => "ISDN controller",
        "0205" => "WorldFip controller",
        "0206" => "PICMG controller",
        "0207" => "Infiniband controller",
        "0208" => "Fabric controller",
        "0280" => "Network controller",
        "0300" => "VGA compatible controller",
        "0301" => "XGA compatible controller",
        "0302" => "3D controller",
        "0380" => "Display controller",
        _ => return None,
    })
}

/// Names from the collectors' `awk` over pci.ids: `VVVV\tVENDOR`, `VVVV:DDDD\tDEVICE` and
/// `VVVV:DDDD:SSSS:TTTT\tSUBSYSTEM` lines. Fills what a device lacks (a sysfs walk has ids only;
/// lspci's names are kept), as lspci names them: the subsystem vendor by its vendor line, the
/// subsystem by its own line under the device, else, where the subsystem ids are the device's
/// own, by the device's name.
pub fn apply_names(devices: &mut [PciDevice], names: &str) {
    let mut vendors = std::collections::BTreeMap::new();
    let mut models = std::collections::BTreeMap::new();
    let mut subsystems = std::collections::BTreeMap::new();
    for line in names.lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        let id = id.trim().to_ascii_lowercase();
        let name = name.trim().to_string();
        match id.matches(':').count() {
            0 => vendors.insert(id, name),
            1 => models.insert(id, name),
            3 => subsystems.insert(id, name),
            _ => None,
        };
    }
    for d in devices {
        if d.vendor.is_none() {
            d.vendor = d.vendor_id.as_ref().and_then(|v| vendors.get(v).cloned());
        }
        if d.device.is_none() {
            d.device = d.pci_id().and_then(|i| models.get(&i).cloned());
        }
        if d.subsystem_vendor.is_none() {
            d.subsystem_vendor = d
                .subsystem_vendor_id
                .as_ref()
                .and_then(|v| vendors.get(v).cloned());
        }
        if d.subsystem_device.is_none() {
            // pciutils looks no subsystem up under a device id 0000
            let device_known = d.device_id.as_deref().is_some_and(|i| i != "0000");
            if let (Some(id), Some(sub), true) = (d.pci_id(), d.subsystem_id(), device_known) {
                d.subsystem_device = subsystems
                    .get(&format!("{id}:{sub}"))
                    .cloned()
                    .or_else(|| (id == sub).then(|| d.device.clone()).flatten());
            }
        }
        if d.class.is_none() {
            d.class = d
                .class_id
                .as_deref()
                .and_then(class_name)
                .map(str::to_string);
        }
    }
}

/// Test support for the collectors' scripts: runs `script` with `sh` on a made-up PCI bus and
/// pci.ids in a scratch directory (the script's paths to them replaced) and returns its stdout.
/// `functions` has a line per PCI function: its slot, then the values of `files` in that order;
/// `drivers` gives functions a `driver` link (slot, driver).
#[cfg(test)]
pub fn run_on_made_up_bus(
    script: &str,
    functions: &str,
    files: &[&str],
    drivers: &[(&str, &str)],
    pci_ids: &str,
) -> String {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root = std::env::temp_dir().join(format!("pci-bus-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let put = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    for line in functions.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (file, value) in files.iter().zip(&words[1..]) {
            put(&format!("pci/{}/{file}", words[0]), &format!("{value}\n"));
        }
    }
    for (slot, driver) in drivers {
        let target = root.join("drivers").join(driver);
        std::fs::create_dir_all(&target).expect("mkdir");
        std::os::unix::fs::symlink(target, root.join(format!("pci/{slot}/driver")))
            .expect("symlink");
    }
    put("pci.ids", pci_ids);
    let dir = |name: &str| root.join(name).display().to_string();
    let script = script.replace("/sys/bus/pci/devices", &dir("pci")).replace(
        "/usr/share/misc/pci.ids /usr/share/hwdata/pci.ids /usr/share/pci.ids",
        &dir("pci.ids"),
    );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("sh");
    let _ = std::fs::remove_dir_all(&root);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod lspci_tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(
            name_and_id("AD104GL [RTX 4000 SFF Ada Generation] [27b0]", 4),
            (
                Some("AD104GL [RTX 4000 SFF Ada Generation]".into()),
                Some("27b0".into())
            )
        );
        assert_eq!(name_and_id("0200", 4), (None, Some("0200".into())));
        assert_eq!(name_and_id("Device [0d57]", 4), (None, Some("0d57".into())));
        // pciutils 3.9's words for a vendor id pci.ids does not have (QEMU's VGA, 1234)
        assert_eq!(name_and_id("Vendor [1234]", 4), (None, Some("1234".into())));
        assert_eq!(short_slot("00000000:04:00.0"), "04:00.0");
        assert_eq!(short_slot("0000:82:00.0"), "82:00.0");
        assert_eq!(short_slot("01:00.0"), "01:00.0");
    }

    #[test]
    fn one_line_form_with_revision_and_empty_subsystem() {
        let d = parse("00:02.0 \"PCI bridge [0604]\" \"nVidia Corporation [10de]\" \"C51 PCI Express Bridge [02fc]\" -ra1 \"\" \"\"\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class_id.as_deref(), Some("0604"));
        assert_eq!(d[0].revision.as_deref(), Some("a1"));
        assert_eq!(d[0].subsystem_vendor, None);
    }
}
