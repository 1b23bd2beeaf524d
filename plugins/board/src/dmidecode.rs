//! dmidecode's text output read as SMBIOS records, and why dmidecode gave none.
//!
//! Shared by the `board`, `memory` and `cpu` collectors (the other two include this file with
//! `#[path]`), so that the three read dmidecode the same way.

use std::collections::BTreeMap;

/// Where non-root logins often lack the sbin directories on PATH.
pub const PATH_PREFIX: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"";

/// The command that prints the SMBIOS records of `types` (`"0,1,2,3"`): with `sudo`, through
/// `sudo -n` (a NOPASSWD rule for dmidecode is then needed; `-n` never waits for a password).
pub fn command(types: &str, sudo: bool) -> String {
    if sudo {
        format!("sudo -n dmidecode -t {types}")
    } else {
        format!("{PATH_PREFIX} dmidecode -t {types}")
    }
}

/// One SMBIOS structure as dmidecode prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// `0x1100`.
    pub handle: String,
    /// The DMI type number.
    pub kind: u8,
    /// The line under the handle: `Memory Device`, `Processor Information`, ...
    pub title: String,
    /// The one-tab-deep `Key: value` lines, values trimmed (list items two tabs deep are skipped).
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// The records of a dmidecode output, in its order (any types).
pub fn records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut current: Option<Record> = None;
    let mut title_next = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Handle ") {
            out.extend(current.take());
            // `Handle 0x1100, DMI type 17, 40 bytes`
            let mut parts = rest.split(',').map(str::trim);
            let handle = parts.next().unwrap_or("").to_string();
            let kind = parts
                .next()
                .and_then(|t| t.strip_prefix("DMI type "))
                .and_then(|t| t.trim().parse::<u8>().ok());
            match kind {
                Some(kind) => {
                    current = Some(Record {
                        handle,
                        kind,
                        ..Record::default()
                    });
                    title_next = true;
                }
                None => title_next = false,
            }
            continue;
        }
        let Some(record) = current.as_mut() else {
            continue;
        };
        if title_next {
            title_next = false;
            record.title = line.trim().to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            if rest.starts_with('\t') {
                continue;
            }
            if let Some((k, v)) = rest.split_once(':') {
                record
                    .fields
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        } else if line.trim().is_empty() {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// Why dmidecode gave no records, from its text (stdout and stderr together) and exit code;
/// `None` when it worked.
pub fn failure(text: &str, exit_code: Option<i32>) -> Option<String> {
    let first_error = text
        .lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with('#')
                && !l.starts_with("Scanning ")
                && !l.starts_with("Getting SMBIOS")
        })
        .unwrap_or("")
        .to_string();
    if exit_code == Some(127)
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
        || text.contains(NO_ENTRY_POINT)
    {
        return Some("no SMBIOS/DMI on this machine".into());
    }
    if exit_code != Some(0) {
        let status = exit_code.map_or("a signal".to_string(), |c| format!("exit code {c}"));
        return Some(format!("dmidecode failed with {status}: {first_error}"));
    }
    None
}

/// What dmidecode reads an SMBIOS entry point from: the kernel's copy (4.2 and later), the EFI
/// system table, or `/dev/mem`. Where none exists dmidecode can only say "no SMBIOS", so the
/// batch step does not start it (a process start saved on VMs without SMBIOS).
const ENTRY_POINTS: [&str; 4] = [
    "/sys/firmware/dmi/tables/smbios_entry_point",
    "/sys/firmware/efi/systab",
    "/proc/efi/systab",
    "/dev/mem",
];

/// What stands in for dmidecode's output where no entry point exists.
pub const NO_ENTRY_POINT: &str =
    "no SMBIOS entry point (no kernel DMI table, EFI systab or /dev/mem)";

/// `command` where an SMBIOS entry point exists; elsewhere [`NO_ENTRY_POINT`] on stdout and exit
/// code 1, without starting dmidecode (which would only say "no SMBIOS" after a process start).
/// [`failure`] reads that text as "no SMBIOS/DMI on this machine", as it reads dmidecode's own.
pub fn if_smbios(command: &str) -> String {
    let exists: Vec<String> = ENTRY_POINTS.iter().map(|p| format!("[ -e {p} ]")).collect();
    format!(
        "if {}; then {command}; else echo '{NO_ENTRY_POINT}'; exit 1; fi",
        exists.join(" || ")
    )
}

/// What a batch script prints for dmidecode: the command's output (stderr merged) under
/// `==> NAME`, then its exit code under `==> NAME exit`; where no SMBIOS entry point exists,
/// [`NO_ENTRY_POINT`] and exit code 1 without starting dmidecode.
pub fn batch_step(name: &str, command: &str) -> String {
    let exists: Vec<String> = ENTRY_POINTS.iter().map(|p| format!("[ -e {p} ]")).collect();
    format!(
        "printf '==> {name}\\n'; if {}; then {command} 2>&1; printf '==> {name} exit\\n%s\\n' $?; \
         else echo '{NO_ENTRY_POINT}'; printf '==> {name} exit\\n1\\n'; fi",
        exists.join(" || ")
    )
}

/// The output and exit code of a [`batch_step`] from the script's sections; `None` when the step
/// did not run.
pub fn from_sections(
    sections: &BTreeMap<String, plugin_api::batch::Section>,
    name: &str,
) -> Option<(String, Option<i32>)> {
    use plugin_api::batch::Section;
    let text = match sections.get(name)? {
        Section::Content(t) => t.clone(),
        Section::Unreadable(why) => why.clone(),
    };
    let exit = match sections.get(&format!("{name} exit")) {
        Some(Section::Content(c)) => c.trim().parse::<i32>().ok(),
        _ => None,
    };
    Some((text, exit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_a_full_dump_hp_m710x() {
        let recs = records(include_str!(
            "../../board/fixtures/hp-proliant-m710x/dmidecode.txt"
        ));
        let t1 = recs.iter().find(|r| r.kind == 1).expect("type 1");
        assert_eq!(t1.title, "System Information");
        assert_eq!(t1.get("Serial Number"), Some("CN66480BLA"));
        let t2 = recs.iter().find(|r| r.kind == 2).expect("type 2");
        // An empty value stays empty; list items below `Features:` are not fields.
        assert_eq!(t2.get("Asset Tag"), Some(""));
        assert!(!t2.fields.contains_key("Board is a hosting board"));
    }

    #[test]
    fn failures() {
        assert_eq!(
            failure("sh: 1: dmidecode: not found", Some(127)).as_deref(),
            Some("dmidecode not installed")
        );
        assert_eq!(
            failure(
                "# dmidecode 3.4\nScanning /dev/mem for entry point.\n/dev/mem: No such file or directory",
                Some(1)
            )
            .as_deref(),
            Some("no SMBIOS/DMI on this machine")
        );
        assert_eq!(failure("# dmidecode 3.4\nHandle 0x0000", Some(0)), None);
        assert_eq!(
            failure(NO_ENTRY_POINT, Some(1)).as_deref(),
            Some("no SMBIOS/DMI on this machine")
        );
        assert_eq!(
            failure("odd", Some(2)).as_deref(),
            Some("dmidecode failed with exit code 2: odd")
        );
    }
}
