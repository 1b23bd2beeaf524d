//! Reading `lspci`'s machine-readable output: the verbose form (`lspci -vmm -nn -k`, one
//! `Key:\tvalue` block per device, with `Driver:` and `Module:` lines) and the one-line form
//! (`lspci -mm -nn`: `SLOT "CLASS" "VENDOR" "DEVICE" [-rREV] [-pPROGIF] "SVENDOR" "SDEVICE"`).
//! With `-nn` a name ends in its id (`VGA compatible controller [0300]`); with `-n` alone the value
//! is the id. Shared by the `gpu` and `controller` collectors (`#[path]` include).

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
/// without id as (`Name`, None). Empty and placeholder names (`Device`, `Unknown device`) are
/// `None`.
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
        || name.eq_ignore_ascii_case("unknown device")
        || name.starts_with("Unassigned class");
    ((!placeholder).then(|| name.to_string()), id)
}

fn set(dev: &mut PciDevice, key: &str, value: &str) {
    let value = value.trim();
    match key {
        "Slot" => dev.slot = value.to_string(),
        "Class" => (dev.class, dev.class_id) = name_and_id(value, 4),
        "Vendor" => (dev.vendor, dev.vendor_id) = name_and_id(value, 4),
        "Device" => (dev.device, dev.device_id) = name_and_id(value, 4),
        "SVendor" => dev.subsystem_vendor = name_and_id(value, 4).0,
        "SDevice" => dev.subsystem_device = name_and_id(value, 4).0,
        "Rev" => dev.revision = Some(value.to_string()).filter(|v| !v.is_empty()),
        "Driver" => dev.driver = Some(value.to_string()).filter(|v| !v.is_empty()),
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
