//! The guests of a hypervisor host: the virtual machines libvirt (QEMU/KVM) and Proxmox VE define
//! or run on it, each by its SMBIOS system UUID, the UUID the guest itself reads from
//! `/sys/class/dmi/id/product_uuid` (and `dmidecode` prints), so that the server can link a guest
//! to its host.
//!
//! Sources, in the collector's one script ([`script`]), without a daemon round trip where the files
//! can be read:
//! - libvirt's domain XML: `/run/libvirt/qemu/*.xml` (running domains: `<domstatus state=...>` around
//!   the live `<domain>`) and `/etc/libvirt/qemu/*.xml` (defined domains). Only the lines the parser
//!   needs are sent (name, uuid, memory, vcpu, the sysinfo `uuid` entry, the state), by one
//!   `grep -H` per directory: a status file is mostly QEMU capabilities and vCPU threads, and a
//!   shell `read` loop over them cost 131 ms for the three files of `fixtures/libvirt-host`
//!   against 17 ms for grep (medians of 3 × 50 runs, load average 17 on 2 cores).
//! - Proxmox VE: `/etc/pve/qemu-server/*.conf` up to the first section (`[snapshot]`,
//!   `[PENDING]`): `name`, `memory` (MiB), `cores`, `sockets`, `vcpus`, `smbios1: uuid=...`; running
//!   when `/run/qemu-server/VMID.pid` names a live process.
//! - where a libvirt directory or one of its files cannot be read (not root: `/run/libvirt/qemu`
//!   is root-only, Debian's `/etc/libvirt/qemu/*.xml` are 0600): `virsh -r -c qemu:///system list
//!   --all` (names and states) and `dumpxml` of each domain (libvirt's read-only socket).
//!
//! The UUID: the domain's `<uuid>`, or its `<sysinfo type='smbios'>` system `uuid` entry where there
//! is one (libvirt refuses a sysinfo UUID that differs from `<uuid>`, so the two agree). QEMU puts
//! that UUID in SMBIOS type 1 encoded as SMBIOS 2.6+ wants (the first three fields little-endian),
//! and the guest's kernel and dmidecode decode it back, so the guest's `product_uuid` is the same
//! text as libvirt's `<uuid>` and Proxmox's `smbios1: uuid=`. Ids are lower case, with dashes
//! (libvirt also accepts 32 hex digits without them).
//!
//! The list `guests` (key `system_uuid`): one part per guest, id = the UUID; `name`, `state`
//! (`running`, `paused`, `shut_off`, `shutting_down`, `crashed`, `pm_suspended`, `blocked`, `null`
//! unknown), `vcpu_count` (online at boot), `max_vcpu_count`, `memory_bytes` (the configured
//! maximum), `persistent` (libvirt: defined in `/etc`; `null` where not known), `source`
//! (`libvirt`, `proxmox`), `vmid` (Proxmox's id). A guest without a usable UUID (a Proxmox VM
//! without `smbios1`), or a second guest with a UUID already listed, is not a part: the fact
//! `unlisted_guests` names it and says why.
//!
//! Absent, unavailable and empty (report schema 2): a host with none of the three directories is not
//! a hypervisor and has **no** `guests` list (absent: a host that stops being a hypervisor loses its
//! guests, logged as removed; 10,000 ordinary hosts carry no "unavailable" list). A hypervisor whose
//! guests cannot all be read (a directory or a file not readable and no `virsh` answer) has the list
//! `unavailable` with the reason, so the server keeps what it knew. A readable hypervisor without
//! guests has an empty list.

use std::collections::BTreeMap;

use plugin_api::batch::{shell_word, Section};

/// libvirt's running domains.
pub const LIBVIRT_RUN: &str = "/run/libvirt/qemu";
/// libvirt's defined (persistent) domains.
pub const LIBVIRT_ETC: &str = "/etc/libvirt/qemu";
/// Proxmox VE's VM configurations (this node's, on pmxcfs).
pub const PVE: &str = "/etc/pve/qemu-server";
/// The section of `virsh list --all` (only where a libvirt directory is unreadable).
pub const VIRSH_LIST: &str = "virsh list";
/// The prefix of the section of one domain's `virsh dumpxml`.
pub const VIRSH_DUMPXML: &str = "virsh dumpxml ";

/// The shell text that prints the guest sections, reading the three directories under `root`
/// (`""` on a target; a fixture tree in tests). Section names never include `root`. Each readable
/// directory is one section of `NAME:LINE` lines (`NAME:#file` for every readable file, then
/// `grep -H`; Proxmox's `NAME:#state: running|stopped` from `/run/qemu-server/VMID.pid`); an
/// unreadable file is its own `=!> DIR/NAME` line. `virsh` runs only where a libvirt directory or
/// file is unreadable.
pub fn script(root: &str) -> String {
    format!(
        // The lines of a domain XML the parser reads; `[^/]*>[0-9]` leaves out a status file's
        // `<vcpu id=.. pid=../>` threads and `<numatune><memory mode=../>`.
        "_gpat='<domstatus |<domain[ >]|<name>|<uuid>|<memory[^/]*>[0-9]|<vcpu[^/]*>[0-9]|<entry name=.uuid.>'; \
         r={root}; u=; \
         for d in {LIBVIRT_RUN} {LIBVIRT_ETC} {PVE}; do p=\"$r$d\"; \
         if [ ! -d \"$p\" ]; then printf '=!> %s missing\\n' \"$d\"; \
         elif [ ! -r \"$p\" ] || [ ! -x \"$p\" ]; then printf '=!> %s permission denied\\n' \"$d\"; \
         case $d in *libvirt*) u=1;; esac; \
         else (cd \"$p\" || exit 0; set --; x=; for f in *.xml *.conf; do [ -e \"$f\" ] || continue; \
         if [ -r \"$f\" ]; then set -- \"$@\" \"$f\"; else printf '=!> %s/%s permission denied\\n' \"$d\" \"$f\"; x=1; fi; done; \
         printf '==> %s\\n' \"$d\"; if [ $# -gt 0 ]; then printf '%s:#file\\n' \"$@\"; case $d in \
         *pve*) q=\"$r/run/qemu-server\"; if [ -d \"$q\" ]; then for f in \"$@\"; do i=${{f%.conf}}; s=stopped; \
         if [ -r \"$q/$i.pid\" ] && read -r pid < \"$q/$i.pid\" && [ -n \"$pid\" ] && [ -d \"/proc/$pid\" ]; then s=running; fi; \
         printf '%s:#state: %s\\n' \"$f\" \"$s\"; done; fi; \
         grep -H -E '^(name|memory|cores|sockets|vcpus|smbios1):|^\\[' -- \"$@\";; \
         *) grep -H -E \"$_gpat\" -- \"$@\";; esac; fi; [ -z \"$x\" ]) || case $d in *libvirt*) u=1;; esac; fi; done; \
         if [ -n \"$u\" ]; then if command -v virsh >/dev/null 2>&1; then \
         printf '==> {VIRSH_LIST}\\n'; LC_ALL=C virsh -r -c qemu:///system list --all 2>&1; \
         for x in $(LC_ALL=C virsh -r -c qemu:///system list --all --uuid 2>/dev/null); do \
         printf '==> {VIRSH_DUMPXML}%s\\n' \"$x\"; LC_ALL=C virsh -r -c qemu:///system dumpxml \"$x\" 2>/dev/null | grep -E \"$_gpat\"; done; \
         else printf '=!> virsh missing\\n'; fi; fi",
        root = if root.is_empty() {
            "''".into()
        } else {
            shell_word(root)
        },
    )
}

/// One guest as a source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Guest {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub state: Option<String>,
    pub vcpu_count: Option<u64>,
    pub max_vcpu_count: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub persistent: Option<bool>,
    pub source: &'static str,
    pub vmid: Option<String>,
    /// libvirt: the domain XML has an `id` (the domain is active).
    pub active: bool,
}

/// The guest list as the collector reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guests {
    /// Not a hypervisor: no list.
    NotAHypervisor,
    /// A hypervisor whose guests could not all be read.
    Unavailable(String),
    /// The guests by UUID, and the guests that are not listed with why.
    Seen {
        guests: BTreeMap<String, Guest>,
        unlisted: Vec<String>,
    },
}

/// `text` as a UUID in lower case with dashes, if it is one (32 hex digits, with or without the
/// four dashes in their places).
pub fn normalize_uuid(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    let dashed = t.len() == 36 && [8, 13, 18, 23].iter().all(|&i| t.as_bytes()[i] == b'-');
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || !(dashed || t.len() == 32)
    {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The value of attribute `name` in a start tag's line (`unit='KiB'`, `unit="KiB"`).
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let pat = format!(" {name}={quote}");
        if let Some(at) = line.find(&pat) {
            let rest = &line[at + pat.len()..];
            return rest.split(quote).next();
        }
    }
    None
}

/// The text between a line's first `>` and the following `<`.
fn element_text(line: &str) -> Option<&str> {
    let start = line.find('>')? + 1;
    let rest = &line[start..];
    Some(rest[..rest.find('<').unwrap_or(rest.len())].trim())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// libvirt's memory `unit` as a factor of bytes (default KiB).
fn memory_unit(unit: Option<&str>) -> Option<u64> {
    Some(match unit.unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    })
}

/// libvirt's state names (status XML and `virsh list`) in the list's words.
pub fn libvirt_state(s: &str) -> Option<&'static str> {
    Some(match s.trim() {
        "running" => "running",
        "paused" => "paused",
        "shutoff" | "shut off" => "shut_off",
        "shutdown" | "in shutdown" => "shutting_down",
        "crashed" => "crashed",
        "pmsuspended" => "pm_suspended",
        "blocked" | "idle" => "blocked",
        _ => return None,
    })
}

/// One libvirt domain XML (a `/etc` definition, a `/run` status file, or `virsh dumpxml`; whole
/// or only the lines the script sends). `None` when it holds no `<domain>`.
pub fn parse_libvirt(xml: &str) -> Option<Guest> {
    let mut g = Guest {
        source: "libvirt",
        ..Guest::default()
    };
    let mut in_domain = false;
    let mut sysinfo_uuid = None;
    let mut uuid = None;
    for line in xml.lines() {
        let l = line.trim();
        if !in_domain {
            if l.starts_with("<domstatus ") {
                g.state = attr(l, "state").and_then(libvirt_state).map(str::to_string);
            } else if l.starts_with("<domain ") || l == "<domain>" {
                in_domain = true;
                g.active = attr(l, "id").is_some();
            }
            continue;
        }
        if l.starts_with("<name>") && g.name.is_none() {
            g.name = element_text(l).map(unescape);
        } else if l.starts_with("<uuid>") && uuid.is_none() {
            uuid = element_text(l).map(str::to_string);
        } else if (l.starts_with("<memory>") || l.starts_with("<memory "))
            && g.memory_bytes.is_none()
            && l.contains("</memory>")
        {
            let n: Option<u64> = element_text(l).and_then(|t| t.parse().ok());
            g.memory_bytes = n
                .zip(memory_unit(attr(l, "unit")))
                .and_then(|(n, f)| n.checked_mul(f));
        } else if (l.starts_with("<vcpu>") || l.starts_with("<vcpu ")) && g.max_vcpu_count.is_none()
        {
            g.max_vcpu_count = element_text(l).and_then(|t| t.parse().ok());
            g.vcpu_count = attr(l, "current")
                .and_then(|c| c.parse().ok())
                .or(g.max_vcpu_count);
        } else if (l.starts_with("<entry name='uuid'>") || l.starts_with("<entry name=\"uuid\">"))
            && sysinfo_uuid.is_none()
        {
            sysinfo_uuid = element_text(l).map(str::to_string);
        }
    }
    if !in_domain {
        return None;
    }
    g.uuid = sysinfo_uuid.or(uuid);
    Some(g)
}

/// One Proxmox VM configuration (its main section; the script adds `#state: running|stopped`).
pub fn parse_proxmox(vmid: &str, conf: &str) -> Guest {
    let mut g = Guest {
        source: "proxmox",
        vmid: Some(vmid.to_string()),
        persistent: Some(true),
        ..Guest::default()
    };
    let (mut cores, mut sockets, mut vcpus, mut memory_mib) = (1u64, 1u64, None, 512u64);
    for line in conf.lines() {
        if line.starts_with('[') {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "name" => g.name = Some(value.to_string()),
            "cores" => cores = value.parse().unwrap_or(cores),
            "sockets" => sockets = value.parse().unwrap_or(sockets),
            "vcpus" => vcpus = value.parse().ok(),
            // `memory: 2048` or, since PVE 8.1, `memory: current=2048`.
            "memory" => {
                let v = value.split(',').next().unwrap_or("");
                let v = v.strip_prefix("current=").unwrap_or(v);
                memory_mib = v.parse().unwrap_or(memory_mib);
            }
            "smbios1" => {
                g.uuid = value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("uuid="))
                    .map(str::to_string)
            }
            "#state" => {
                g.state = Some(if value == "running" {
                    "running".into()
                } else {
                    "shut_off".into()
                })
            }
            _ => {}
        }
    }
    let max = cores.saturating_mul(sockets);
    g.max_vcpu_count = Some(max);
    g.vcpu_count = Some(vcpus.unwrap_or(max));
    g.memory_bytes = memory_mib.checked_mul(1 << 20);
    g
}

/// `virsh list --all`: domain name → state. `None` when the text is not its table.
pub fn parse_virsh_list(text: &str) -> Option<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next()?;
    let h: Vec<&str> = header.split_whitespace().collect();
    if h != ["Id", "Name", "State"] {
        return None;
    }
    let states = [
        "running",
        "idle",
        "paused",
        "in shutdown",
        "shut off",
        "crashed",
        "pmsuspended",
        "blocked",
    ];
    let mut out = BTreeMap::new();
    for line in lines {
        let l = line.trim();
        if l.is_empty() || l.starts_with('-') && l.chars().all(|c| c == '-') {
            continue;
        }
        let Some((_, rest)) = l.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim();
        if let Some(state) = states.iter().find(|s| rest.ends_with(*s)) {
            let name = rest[..rest.len() - state.len()].trim();
            if let Some(s) = libvirt_state(state) {
                out.insert(name.to_string(), s.to_string());
            }
        }
    }
    Some(out)
}

fn content<'a>(sections: &'a BTreeMap<String, Section>, name: &str) -> Option<&'a str> {
    match sections.get(name) {
        Some(Section::Content(c)) => Some(c.as_str()),
        _ => None,
    }
}

/// How a directory read: `Ok(true)` readable, `Ok(false)` missing (or not in the recording),
/// `Err(why)` there but unreadable.
fn dir_state(sections: &BTreeMap<String, Section>, dir: &str) -> Result<bool, String> {
    match sections.get(dir) {
        Some(Section::Content(_)) => Ok(true),
        Some(Section::Unreadable(why)) if why == "missing" => Ok(false),
        Some(Section::Unreadable(why)) => Err(format!("{dir}: {why}")),
        None => Ok(false),
    }
}

/// The files of `dir` the script listed, as `(DIR/NAME, content or why not)`: the directory's
/// section holds `NAME:LINE` lines (`grep -H`; `NAME:#file` for every readable file), an unreadable
/// file is its own `=!> DIR/NAME` section.
fn files_in(sections: &BTreeMap<String, Section>, dir: &str) -> Vec<(String, Section)> {
    let mut files: BTreeMap<String, Section> = BTreeMap::new();
    if let Some(Section::Content(text)) = sections.get(dir) {
        for line in text.lines() {
            let split = [".xml:", ".conf:"]
                .iter()
                .find_map(|ext| line.find(ext).map(|at| at + ext.len() - 1));
            let Some(at) = split else { continue };
            let (name, rest) = (&line[..at], &line[at + 1..]);
            let entry = files
                .entry(format!("{dir}/{name}"))
                .or_insert_with(|| Section::Content(String::new()));
            if let Section::Content(c) = entry {
                c.push_str(rest);
                c.push('\n');
            }
        }
    }
    let prefix = format!("{dir}/");
    for (k, v) in sections.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        files.insert(k.clone(), v.clone());
    }
    files.into_iter().collect()
}

/// How `unlisted_guests` names a guest: `win (proxmox 101)`, `upstream (libvirt)`.
fn label(g: &Guest) -> String {
    match (&g.name, &g.vmid) {
        (Some(n), Some(id)) => format!("{n} ({} {id})", g.source),
        (Some(n), None) => format!("{n} ({})", g.source),
        (None, Some(id)) => format!("VM {id} ({})", g.source),
        (None, None) => format!("unnamed ({})", g.source),
    }
}

/// The guests from the script's sections.
pub fn decide(sections: &BTreeMap<String, Section>) -> Guests {
    let run = dir_state(sections, LIBVIRT_RUN);
    let etc = dir_state(sections, LIBVIRT_ETC);
    let pve = dir_state(sections, PVE);
    if [&run, &etc, &pve].iter().all(|s| matches!(s, Ok(false))) {
        return Guests::NotAHypervisor;
    }
    let mut found: Vec<Guest> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    // libvirt, from its files where both directories that exist are readable, else from virsh.
    // A directory or a file libvirt keeps root-only (Debian: /etc/libvirt/qemu is 0755, its files
    // 0600): then virsh's read-only socket tells.
    let mut libvirt_unreadable: Vec<String> = [&run, &etc]
        .iter()
        .filter_map(|s| s.as_ref().err().cloned())
        .collect();
    for dir in [LIBVIRT_RUN, LIBVIRT_ETC] {
        for (file, section) in files_in(sections, dir) {
            if let Section::Unreadable(why) = &section {
                libvirt_unreadable.push(format!("{file}: {why}"));
            }
        }
    }
    if libvirt_unreadable.is_empty() {
        let mut defined: BTreeMap<String, Guest> = BTreeMap::new();
        let mut running: Vec<Guest> = Vec::new();
        for (dir, into_running) in [(LIBVIRT_RUN, true), (LIBVIRT_ETC, false)] {
            for (file, section) in files_in(sections, dir) {
                match &section {
                    Section::Content(xml) => match parse_libvirt(xml) {
                        Some(g) if into_running => running.push(g),
                        Some(mut g) => {
                            g.state = Some("shut_off".into());
                            g.persistent = Some(true);
                            let key = g.uuid.clone().unwrap_or_else(|| file.clone());
                            defined.insert(key, g);
                        }
                        None => problems.push(format!("{file}: no <domain> in it")),
                    },
                    Section::Unreadable(why) => problems.push(format!("{file}: {why}")),
                }
            }
        }
        let etc_known = matches!(etc, Ok(true));
        for mut g in running {
            // The live definition wins; the persistent one says the domain is defined.
            let def = g.uuid.as_ref().and_then(|u| defined.remove(u));
            g.persistent = if def.is_some() {
                Some(true)
            } else if etc_known {
                Some(false)
            } else {
                None
            };
            if g.state.is_none() {
                g.state = Some("running".into());
            }
            found.push(g);
        }
        found.extend(defined.into_values());
    } else {
        match (
            sections.get(VIRSH_LIST),
            sections.get("virsh"),
            content(sections, VIRSH_LIST).and_then(parse_virsh_list),
        ) {
            (_, _, Some(states)) => {
                for (name, section) in sections
                    .iter()
                    .filter(|(k, _)| k.starts_with(VIRSH_DUMPXML))
                {
                    match section {
                        Section::Content(xml) => match parse_libvirt(xml) {
                            Some(mut g) => {
                                g.state = g
                                    .name
                                    .as_ref()
                                    .and_then(|n| states.get(n).cloned())
                                    .or_else(|| {
                                        Some(if g.active { "running" } else { "shut_off" }.into())
                                    });
                                found.push(g);
                            }
                            None => problems.push(format!("{name}: printed no domain")),
                        },
                        Section::Unreadable(why) => problems.push(format!("{name}: {why}")),
                    }
                }
            }
            (Some(Section::Content(text)), _, None) => problems.push(format!(
                "{} and virsh -r list failed: {}",
                libvirt_unreadable.join(", "),
                text.lines().next().unwrap_or("no output").trim()
            )),
            (_, Some(Section::Unreadable(_)), _) => problems.push(format!(
                "{} (needs root) and virsh is not installed",
                libvirt_unreadable.join(", ")
            )),
            _ => problems.push(format!("{} (needs root)", libvirt_unreadable.join(", "))),
        }
    }

    // Proxmox VE.
    match &pve {
        Err(why) => problems.push(format!("{why} (needs root)")),
        Ok(false) => {}
        Ok(true) => {
            for (file, section) in files_in(sections, PVE) {
                let vmid = file
                    .rsplit('/')
                    .next()
                    .unwrap_or(&file)
                    .trim_end_matches(".conf");
                match &section {
                    Section::Content(conf) => found.push(parse_proxmox(vmid, conf)),
                    Section::Unreadable(why) => problems.push(format!("{file}: {why}")),
                }
            }
        }
    }

    if !problems.is_empty() {
        return Guests::Unavailable(problems.join("; "));
    }
    let mut guests = BTreeMap::new();
    let mut unlisted = Vec::new();
    for g in found {
        let this = label(&g);
        let Some(raw) = g.uuid.clone() else {
            unlisted.push(format!("{this}: no system UUID in its configuration"));
            continue;
        };
        let Some(uuid) = normalize_uuid(&raw) else {
            unlisted.push(format!("{this}: {raw:?} is not a UUID"));
            continue;
        };
        if let Some(first) = guests.get(&uuid) {
            unlisted.push(format!("{this}: the same system UUID as {}", label(first)));
            continue;
        }
        guests.insert(
            uuid.clone(),
            Guest {
                uuid: Some(uuid),
                ..g
            },
        );
    }
    Guests::Seen { guests, unlisted }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn case_root(case: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
            .join("root")
    }

    /// The guest script run by `sh` on a fixture tree of real files.
    pub(crate) fn run_on_tree(case: &str) -> String {
        let root = case_root(case);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(&root.to_string_lossy()))
            .output()
            .expect("sh runs");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("text")
    }
}

#[cfg(test)]
mod parser_tests {
    use std::path::Path;

    use plugin_api::batch::parse_sections;

    use super::*;

    fn real(case: &str, path: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case)
                .join("root")
                .join(path),
        )
        .expect("fixture file")
    }

    #[test]
    fn libvirt_status_file_of_a_running_domain() {
        // libvirt's tests/qemustatusxml2xmldata/modern-in.xml: `current='2'` of 8 vCPUs, and a
        // `<numatune><memory mode=...>` after the domain's `<memory>`.
        let g =
            parse_libvirt(&real("libvirt-host", "run/libvirt/qemu/upstream.xml")).expect("domain");
        assert_eq!(g.name.as_deref(), Some("upstream"));
        assert_eq!(
            g.uuid.as_deref(),
            Some("dcf47dbd-46d1-4d5b-b442-262a806a333a")
        );
        assert_eq!(g.state.as_deref(), Some("running"));
        assert_eq!((g.vcpu_count, g.max_vcpu_count), (Some(2), Some(8)));
        assert_eq!(g.memory_bytes, Some(1_024_000 * 1024));
        assert!(g.active);
    }

    #[test]
    fn the_vcpu_threads_of_a_status_file_are_not_its_vcpu_count() {
        let g = parse_libvirt(&real("libvirt-host", "run/libvirt/qemu/QEMUGuest1.xml"))
            .expect("domain");
        assert_eq!((g.vcpu_count, g.max_vcpu_count), (Some(288), Some(288)));
    }

    #[test]
    fn a_defined_domain_with_sysinfo_is_not_active_and_has_its_smbios_uuid() {
        let g = parse_libvirt(&real("libvirt-host", "etc/libvirt/qemu/QEMUGuest1.xml"))
            .expect("domain");
        assert!(!g.active);
        assert_eq!(g.state, None);
        assert_eq!(
            g.uuid.as_deref(),
            Some("c7a5fdbd-edaf-9455-926a-d65c16db1809")
        );
        // The sysinfo entry wins over <uuid> (libvirt keeps them equal; the SMBIOS one is what the
        // guest reads).
        let edited = real("libvirt-host", "etc/libvirt/qemu/QEMUGuest1.xml")
            .replace("<entry name='uuid'>c7a5fdbd", "<entry name='uuid'>C7A5FDBD");
        assert_eq!(
            parse_libvirt(&edited).and_then(|g| g.uuid),
            Some("C7A5FDBD-edaf-9455-926a-d65c16db1809".into())
        );
        assert_eq!(
            parse_libvirt("<network>\n<name>default</name>\n</network>"),
            None
        );
    }

    #[test]
    fn the_scripts_line_filter_keeps_everything_the_parser_reads() {
        for (case, file) in [
            ("libvirt-host", "/run/libvirt/qemu/upstream.xml"),
            ("libvirt-host", "/run/libvirt/qemu/QEMUGuest1.xml"),
            ("libvirt-host", "/etc/libvirt/qemu/QEMUGuest1.xml"),
        ] {
            let sections = parse_sections(&super::tests::run_on_tree(case));
            let dir = &file[..file.rfind('/').expect("a path")];
            let files = files_in(&sections, dir);
            let Some((_, Section::Content(filtered))) = files.iter().find(|(f, _)| f == file)
            else {
                panic!("{file} not in the script's output");
            };
            assert!(filtered.lines().count() < 10, "{file}: {filtered}");
            let whole = parse_libvirt(&real(case, &file[1..]));
            assert_eq!(parse_libvirt(filtered), whole, "{file}");
        }
        let sections = parse_sections(&super::tests::run_on_tree("proxmox-host"));
        let files = files_in(&sections, PVE);
        let Some((_, Section::Content(conf))) = files
            .iter()
            .find(|(f, _)| f == "/etc/pve/qemu-server/101.conf")
        else {
            panic!("101.conf not in the script's output");
        };
        // The keys the parser reads, the snapshot's after its `[test]` line, and the state from
        // the pid file.
        assert!(conf.contains("#state: running\n"), "{conf}");
        assert!(!conf.contains("snapstate"), "{conf}");
        let g = parse_proxmox("101", conf);
        assert_eq!(
            g,
            parse_proxmox(
                "101",
                &format!(
                    "{}\n#state: running",
                    real("proxmox-host", "etc/pve/qemu-server/101.conf")
                        .split("\n[")
                        .next()
                        .unwrap_or("")
                )
            )
        );
    }

    #[test]
    fn proxmox_configurations() {
        let g = parse_proxmox(
            "8006",
            &real("proxmox-host", "etc/pve/qemu-server/8006.conf"),
        );
        assert_eq!(
            g.uuid.as_deref(),
            Some("7b10d7af-b932-4c66-b2c3-3996152ec465")
        );
        assert_eq!(g.name.as_deref(), Some("simple"));
        assert_eq!(g.memory_bytes, Some(768 << 20));
        assert_eq!(g.vcpu_count, Some(3));
        // Without a state line (no /run/qemu-server) the state is unknown.
        assert_eq!(g.state, None);
        let g = parse_proxmox(
            "8007",
            &real("proxmox-host", "etc/pve/qemu-server/8007.conf"),
        );
        assert_eq!((g.vcpu_count, g.max_vcpu_count), (Some(4), Some(4)));
        // Defaults: 512 MiB, one core; PVE 8.1's `memory: current=N`; hot-plugged `vcpus`.
        let g = parse_proxmox(
            "8010",
            &real("proxmox-host", "etc/pve/qemu-server/8010.conf"),
        );
        assert_eq!(
            (g.uuid, g.memory_bytes, g.vcpu_count),
            (None, Some(512 << 20), Some(1))
        );
        let g = parse_proxmox(
            "1",
            "memory: current=2048\ncores: 4\nsockets: 2\nvcpus: 6\nsmbios1: base64=1,uuid=ABC\n",
        );
        assert_eq!(g.memory_bytes, Some(2048 << 20));
        assert_eq!((g.vcpu_count, g.max_vcpu_count), (Some(6), Some(8)));
        assert_eq!(g.uuid.as_deref(), Some("ABC"));
    }

    #[test]
    fn virsh_list_of_the_manual() {
        // libvirt docs/manpages/virsh.rst, `list`, example 1 (section content is trimmed).
        let text = "Id    Name                           State\n\
                    ----------------------------------------------------\n  \
                    0     Domain-0                       running\n  \
                    2     fedora                         paused";
        let states = parse_virsh_list(text).expect("a table");
        assert_eq!(states["Domain-0"], "running");
        assert_eq!(states["fedora"], "paused");
        let states =
            parse_virsh_list("Id   Name   State\n---\n -    my vm   shut off").expect("table");
        assert_eq!(states["my vm"], "shut_off");
        assert_eq!(
            parse_virsh_list("error: failed to connect to the hypervisor"),
            None
        );
    }

    #[test]
    fn uuids_are_lower_case_with_dashes() {
        assert_eq!(
            normalize_uuid("4DEA22B31D52D8F32516782E98AB3FA0").as_deref(),
            Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
        );
        assert_eq!(
            normalize_uuid(" C7A5FDBD-EDAF-9455-926A-D65C16DB1809 ").as_deref(),
            Some("c7a5fdbd-edaf-9455-926a-d65c16db1809")
        );
        assert_eq!(normalize_uuid("c7a5fdbdedaf-9455-926a-d65c16db1809"), None);
        assert_eq!(normalize_uuid("not-a-uuid"), None);
        assert_eq!(normalize_uuid(""), None);
    }

    fn sections(text: &str) -> BTreeMap<String, Section> {
        parse_sections(text)
    }

    #[test]
    fn absent_unavailable_and_empty() {
        let none = "=!> /run/libvirt/qemu missing\n=!> /etc/libvirt/qemu missing\n=!> /etc/pve/qemu-server missing\n";
        assert_eq!(decide(&sections(none)), Guests::NotAHypervisor);
        // Recordings made before the collector read guests have no such sections.
        assert_eq!(
            decide(&sections("==> cpuinfo flags\n")),
            Guests::NotAHypervisor
        );
        let empty =
            "==> /run/libvirt/qemu\n==> /etc/libvirt/qemu\n=!> /etc/pve/qemu-server missing\n";
        assert_eq!(
            decide(&sections(empty)),
            Guests::Seen {
                guests: BTreeMap::new(),
                unlisted: vec![]
            }
        );
        // One unreadable file makes the whole list unknown: a guest is never dropped silently.
        let one_unreadable = "==> /run/libvirt/qemu\n==> /etc/libvirt/qemu\n\
            =!> /etc/libvirt/qemu/a.xml permission denied\n=!> /etc/pve/qemu-server missing\n";
        assert_eq!(
            decide(&sections(one_unreadable)),
            Guests::Unavailable("/etc/libvirt/qemu/a.xml: permission denied (needs root)".into())
        );
        // Readable directories of root-only files (Debian's modes), and virsh answers.
        let files_root_only = format!(
            "{one_unreadable}==> virsh list\n Id   Name    State\n---------------\n 3    a       paused\n\
             ==> virsh dumpxml 4dea22b31d52d8f32516782e98ab3fa0\n<domain type='kvm' id='3'>\n\
             <name>a</name>\n<uuid>4dea22b31d52d8f32516782e98ab3fa0</uuid>\n"
        );
        let Guests::Seen { guests, unlisted } = decide(&sections(&files_root_only)) else {
            panic!("seen through virsh");
        };
        assert!(unlisted.is_empty());
        let g = &guests["4dea22b3-1d52-d8f3-2516-782e98ab3fa0"];
        assert_eq!(
            (g.name.as_deref(), g.state.as_deref()),
            (Some("a"), Some("paused"))
        );
        let pve_root_only = "=!> /run/libvirt/qemu missing\n=!> /etc/libvirt/qemu missing\n\
            =!> /etc/pve/qemu-server permission denied\n";
        assert_eq!(
            decide(&sections(pve_root_only)),
            Guests::Unavailable("/etc/pve/qemu-server: permission denied (needs root)".into())
        );
        let virsh_fails = "=!> /run/libvirt/qemu permission denied\n==> /etc/libvirt/qemu\n\
            =!> /etc/pve/qemu-server missing\n==> virsh list\n\
            error: failed to connect to socket '/var/run/libvirt/libvirt-sock-ro': No such file or directory\n";
        let Guests::Unavailable(why) = decide(&sections(virsh_fails)) else {
            panic!("unavailable");
        };
        assert!(why.contains("libvirt-sock-ro"), "{why}");
    }
}
